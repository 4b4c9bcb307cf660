"""One module per ``magi`` subcommand, each with ``register(subparsers)``."""
