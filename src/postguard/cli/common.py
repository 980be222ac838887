"""What every subcommand shares: finding the configuration and data directory.

The rule, the same for ``serve``, ``user`` and ``queue``: ``--config FILE`` if
given (with ``--data-dir`` overriding its ``server.data_dir``), else the
embedded defaults in ``--data-dir``, else ``$POSTGUARD_DATA_DIR``, else
``./postguard-data``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import default_config, load_config
from ..config.schema import Config

DATA_DIR_ENV = "POSTGUARD_DATA_DIR"
DEFAULT_DATA_DIR = Path("postguard-data")


def describe_error(exc: BaseException) -> str:
    """One line for an error at the command line: ``<file>: <what went wrong>`` for an
    OSError naming a file, its message alone otherwise (never a traceback)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc)


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--data-dir``."""
    parser.add_argument("--config", type=Path, help="configuration file (TOML)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"data directory (default: ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})",
    )


def data_dir_argument(args: argparse.Namespace) -> Path | None:
    """The data directory given on the command line or in the environment, if any."""
    if getattr(args, "data_dir", None) is not None:
        return Path(args.data_dir).absolute()
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).absolute() if env else None


def resolve_config(args: argparse.Namespace) -> Config:
    """The configuration a command acts on (no side effects).

    Raises:
        ConfigError: the file is missing or invalid.
    """
    data_dir = data_dir_argument(args)
    if getattr(args, "config", None) is not None:
        return load_config(args.config, data_dir_override=data_dir)
    return default_config(data_dir or DEFAULT_DATA_DIR.absolute())
