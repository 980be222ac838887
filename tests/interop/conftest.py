"""Fixtures for the interop suite: one per real client, and the missing-tool rule.

Owns :func:`require_tool` (and :func:`require_module` for Python clients, :func:`missing` for
checks of their own in client modules: jars, node_modules, a PHP autoloader): a
client that is not installed is a loud ``pytest.skip`` on a developer machine,
and a test *failure* when the ``CI`` environment variable is set, because
``.ci/run`` installs every tool and a silent skip there would hide a broken suite
(STYLE.md §5).

Must not: start servers (``mail_server`` from ``tests/conftest.py`` does that),
or install anything.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from helpers.accounts import OAuthIssuer

# Where each tool comes from, so the skip/fail message says how to fix it.
DEBIAN_PACKAGES = {
    "swaks": "swaks",
    "openssl": "openssl",
    "curl": "curl",
    "msmtp": "msmtp",
    "node": "nodejs (Node.js 20 or later: Nodemailer 10 needs it)",
    "php": "php-cli",
    "java": "openjdk-17-jre-headless",
}
PIP_PACKAGES = {"aiosmtplib": "aiosmtplib (pip install -e '.[test]')"}


def missing(what: str) -> None:
    """Fail under CI, skip (loudly) elsewhere; ``what`` says what is missing and how to
    install it. For client-specific checks in test modules too."""
    if os.environ.get("CI"):
        pytest.fail(f"CI: {what}; .ci/run must install it", pytrace=False)
    pytest.skip(f"INTEROP TOOL MISSING - {what}; these interop tests did NOT run")


def require_tool(name: str) -> str:
    """The absolute path of executable ``name``, or skip/fail the test.

    Args:
        name: The executable to look up on ``PATH``.

    Returns:
        Its absolute path.

    Raises:
        pytest.skip.Exception: missing, and ``CI`` is not set.
        pytest.fail.Exception: missing, and ``CI`` is set.
    """
    path = shutil.which(name)
    if path is None:
        package = DEBIAN_PACKAGES.get(name, name)
        missing(f"{name!r} is not on PATH (Debian: apt-get install {package})")
    assert path is not None
    return path


def require_module(name: str) -> ModuleType:
    """Import Python client library ``name``, or skip/fail the test like :func:`require_tool`."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python module {name!r} is not importable ({PIP_PACKAGES.get(name, name)})")
        raise  # unreachable: missing always raises


@pytest.fixture
def swaks() -> str:
    """swaks, with its TLS support checked: Debian's swaks only *recommends* Net::SSLeay."""
    path = require_tool("swaks")
    # Blocking is fine here: tool fixtures are requested before ``mail_server``, and no
    # server is being talked to yet.
    support = subprocess.run(
        [path, "--support"], capture_output=True, text=True, timeout=30, check=False
    )
    if "=== TLS supported" not in support.stdout + support.stderr:
        missing(
            "swaks has no TLS support: Perl module Net::SSLeay is missing "
            "(Debian: apt-get install libnet-ssleay-perl; swaks only recommends it)"
        )
    return path


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


@pytest.fixture
def curl() -> str:
    return require_tool("curl")


@pytest.fixture
def msmtp() -> str:
    return require_tool("msmtp")


@pytest.fixture
def aiosmtplib() -> ModuleType:
    return require_module("aiosmtplib")


@pytest.fixture
def issuer(tmp_path: Path) -> OAuthIssuer:
    """An identity provider for XOAUTH2 and OAUTHBEARER (a P-256 key and its JWKS file)."""
    return OAuthIssuer.create(tmp_path / "idp")
