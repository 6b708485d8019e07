"""Flowmetal: a durable Lisp whose running programs live in a store."""

__version__ = "0.1.0"
