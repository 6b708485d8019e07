"""Durable tasks: records, effects, steps and workers over a store."""
