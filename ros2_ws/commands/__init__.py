"""Subcommands of the `polytask` command, one module each.

A module here provides `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; `polytask.cli` finds
them by listing this package, so adding a command is adding a file.
"""
