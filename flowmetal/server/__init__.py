"""The control plane: Flowmetal's HTTP API for tasks, and the callback URLs tasks make
(``flowmetal serve``)."""
