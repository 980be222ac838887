"""Shared fixtures: postguard servers on loopback (in-process or as a subprocess).

Every server listens on 127.0.0.1 port 0 with its own data directory, its
own development CA, and is stopped at the end of the test. See
``helpers/servers.py`` for what a running server exposes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

# tests/ on sys.path so any test module can import the shared helpers
# (``from helpers.engine_pair import run``), whichever pytest import mode is used.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from helpers.servers import (  # noqa: E402 - needs the sys.path entry above
    InProcessServer,
    SubprocessServer,
    start_in_process,
    start_subprocess,
)


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A fresh directory every user can traverse.

    Needed when the server runs as a subprocess started by root: it drops to
    ``nobody``, which cannot enter pytest's 0700 tmp_path.
    """
    path = Path(tempfile.mkdtemp(prefix="pg-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def server_factory(
    tmp_path: Path,
) -> AsyncIterator[Callable[..., object]]:
    """Start in-process servers: ``srv = await server_factory(extra_toml="...")``."""
    started: list[InProcessServer] = []
    counter = 0

    async def factory(extra_toml: str = "", **kwargs: object) -> InProcessServer:
        nonlocal counter
        counter += 1
        srv = await start_in_process(tmp_path / f"server{counter}", extra_toml, **kwargs)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        await srv.stop()


@pytest.fixture
async def mail_server(server_factory: Callable[..., object]) -> InProcessServer:
    """An in-process server on its embedded defaults (ports 0)."""
    srv = await server_factory()  # type: ignore[misc]
    assert isinstance(srv, InProcessServer)
    return srv


@pytest.fixture
def subprocess_factory(traversable_dir: Path) -> Iterator[Callable[..., SubprocessServer]]:
    """Start ``postguard serve`` subprocesses: ``srv = subprocess_factory(extra_toml=...)``."""
    started: list[SubprocessServer] = []
    counter = 0

    def factory(extra_toml: str = "", **kwargs: object) -> SubprocessServer:
        nonlocal counter
        counter += 1
        srv = start_subprocess(traversable_dir / f"server{counter}", extra_toml, **kwargs)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


def pytest_report_header() -> str:
    return f"postguard tests; running as uid {os.getuid()}"
