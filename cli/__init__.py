"""The `pixcap` command: registers the pipeline's, the analyst tools' and the trainer's subcommands."""
