"""Fixtures for the OAuth tests: a trustme CA, HTTPS and HTTP servers on loopback, keys.

Nothing is mocked: validators talk to a real asyncio HTTP/1.1 server over real TLS
(``loopback.LoopbackHttpServer``) through a real ``httpx`` client that trusts only the
test CA. Time is the one thing injected (``FakeClock``), as the validators allow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trustme

from oauth.loopback import LOOPBACK, FakeClock, LoopbackHttpServer, SigningKey, new_key
from postguard.tls import client_context, server_context


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oauth-ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def https_server(ca: trustme.CA) -> AsyncIterator[LoopbackHttpServer]:
    """An HTTPS server on 127.0.0.1 with a certificate from the test CA."""
    context = server_context()
    ca.issue_cert(LOOPBACK, "localhost").configure_cert(context)
    server = LoopbackHttpServer(context)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http_server() -> AsyncIterator[LoopbackHttpServer]:
    """A plain-HTTP server on 127.0.0.1 (for the insecure-URL opt-in)."""
    server = LoopbackHttpServer(None)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http_client(ca_file: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that trusts the test CA only, with postguard's client context."""
    async with httpx.AsyncClient(verify=client_context(ca_file), trust_env=False) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def rsa_key() -> SigningKey:
    return new_key("RS256", "rsa-1")


@pytest.fixture(scope="session")
def ec_key() -> SigningKey:
    return new_key("ES256", "ec-1")


@pytest.fixture(scope="session")
def ed_key() -> SigningKey:
    return new_key("EdDSA", "ed-1")


@pytest.fixture(scope="session")
def other_rsa_key() -> SigningKey:
    """A second RSA key, published later (rotation) or never (forgery)."""
    return new_key("RS256", "rsa-2")
