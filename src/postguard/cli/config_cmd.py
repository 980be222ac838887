"""``postguard config check FILE``: validate a configuration without starting anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import ConfigError, find_weakenings, load_config
from .main import EX_CONFIG, EX_OK


def add_parser(sub: Any) -> None:
    """Register ``config check``."""
    parser = sub.add_parser("config", help="configuration tools")
    config_sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_sub.add_parser("check", help="validate a postguard.toml")
    check.add_argument("file", type=Path, help="the configuration file")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Load the file; print one line per problem or weakening."""
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"postguard: {exc}", file=sys.stderr)
        return EX_CONFIG
    for weakening in find_weakenings(config):
        print(f"warning: {weakening}", file=sys.stderr)
    enabled = [lst.name for lst in config.listeners if lst.enabled]
    print(f"{args.file}: OK (listeners: {', '.join(enabled) or 'none'})")
    return EX_OK
