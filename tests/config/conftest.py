"""Fixtures for config tests: write a `postguard.toml` in a temporary directory and load it.

Tests run with the temporary directory as the working directory and load the file by its
relative name, so error messages read ``postguard.toml: <key>: <message>`` exactly as an
operator would see them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from postguard.config import Config, load_config

CONFIG_NAME = Path("postguard.toml")

Loader = Callable[..., Config]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (the temporary directory)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def load(workdir: Path) -> Loader:
    """Write TOML text to ``postguard.toml`` and load it.

    Unless the caller passes ``data_dir_override`` (``None`` to use the file's own
    ``server.data_dir``), the data directory is ``<workdir>/data``.
    """
    default_override = workdir / "data"

    def write_and_load(text: str, **kwargs: Path | None) -> Config:
        CONFIG_NAME.write_text(text, encoding="utf-8")
        kwargs.setdefault("data_dir_override", default_override)
        return load_config(CONFIG_NAME, **kwargs)

    return write_and_load
