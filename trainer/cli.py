"""The trainer's subcommands of `pixcap` (train, encode, convert-dit, sample)."""


def register(subparsers) -> None:
    """Add the trainer's subcommands; each sets func(args) -> exit code."""
