"""The sans-IO rule (STYLE.md §2), enforced: pure modules import no I/O, clock or randomness.

`protocol/`, `sasl/`, `tls/{levels,mta_sts,dane}.py` and `queue/schedule.py` must stay
fuzzable and deterministic, so they may not import asyncio, socket, ssl, selectors,
time, random, os or logging (directly or as ``from x import y``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "postguard"
FORBIDDEN = frozenset({"asyncio", "socket", "ssl", "selectors", "time", "random", "os", "logging"})
PURE_DIRS = ("protocol", "sasl")
PURE_FILES = ("tls/levels.py", "tls/mta_sts.py", "tls/dane.py", "queue/schedule.py")


def pure_modules() -> list[Path]:
    files = [p for d in PURE_DIRS if (SRC / d).is_dir() for p in sorted((SRC / d).rglob("*.py"))]
    files += [SRC / f for f in PURE_FILES if (SRC / f).exists()]
    return files


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_there_are_pure_modules_to_check() -> None:
    assert len(pure_modules()) >= 8


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = imported_roots(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
