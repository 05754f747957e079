"""The command line: `python -m gradviz` (or `gradviz`) and its subcommands."""
