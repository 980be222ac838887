"""Configuration shared by the whole test tree.

NOTE FOR THE OWNER OF THIS FILE: another engineer created ``tests/conftest.py``
at 11:41:56, and the protocol-test helper overwrote it by mistake at 11:42:43,
before it had been read. The original text could not be recovered. The two
fixtures below (``mail_server``, ``subprocess_factory``) were rebuilt from how
``tests/integration/*`` and ``tests/helpers/servers.py`` use them. Please
replace them with the original version, and keep the ``sys.path`` lines at the
end, which ``tests/protocol`` and ``tests/regress`` need.

Owns: putting ``tests/`` on ``sys.path`` so any test module can import the
shared helpers (``from helpers.engine_pair import run``), whichever pytest
import mode is used; fixtures shared across directories (STYLE.md §5).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

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
async def mail_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    """RECONSTRUCTED (see module docstring): a server running in the test's event loop."""
    srv = await start_in_process(tmp_path / "data")
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
def subprocess_factory(tmp_path: Path) -> Iterator[Callable[..., SubprocessServer]]:
    """RECONSTRUCTED (see module docstring): start ``postguard serve`` children; stop them."""
    started: list[SubprocessServer] = []

    def factory(extra_toml: str = "", **kwargs: str) -> SubprocessServer:
        srv = start_subprocess(tmp_path / f"data{len(started)}", extra_toml, **kwargs)
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
