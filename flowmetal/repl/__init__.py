"""The interactive side of Flowmetal: the REPL, its meta-commands, the task inspector and
the pygments lexer that highlights Flowmetal source."""
