"""Subcommands of `instructavatar` beyond render/info/demo/train, one module each.

Each module named in COMMANDS defines `register(sub)`, which adds its parser to the `instructavatar`
subparsers and sets `func` (a function of the parsed args returning an exit code). It may raise
`instructavatar.cli.UsageError` (exit 2) or `InputError` (exit 1) for a one-line error. A module is
imported only to build the parser, so it must not import torch (or anything heavy) at module level.
"""

COMMANDS: list[str] = ["bench", "export", "serve", "client"]
