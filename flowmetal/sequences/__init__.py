"""Sequences in Keptn's model: shipyards of stages and sequences, runs as durable tasks,
task events handed to workers in any language, and the evaluation of objectives."""
