"""The ``postguard`` command: argument parsing and dispatch to one module per subcommand.

Exit statuses follow sysexits(3), as Postfix's pipe(8) uses them: 0 ok,
64 usage, 69 unavailable (cannot bind), 75 temporary failure, 78 configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__

EX_OK = 0
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    from . import config_cmd, queue_cmd, serve, user

    parser = argparse.ArgumentParser(
        prog="postguard", description="A secure-by-default mail server and SMTP toolkit."
    )
    parser.add_argument("--version", action="version", version=f"postguard {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_parser(sub)
    config_cmd.add_parser(sub)
    user.add_parser(sub)
    queue_cmd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EX_USAGE if exc.code not in (0, None) else EX_OK
    if args.command is None:
        parser.print_help(sys.stderr)
        return EX_USAGE
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
