"""Tests for ``postguard.tls.contexts``: versions, ciphers and options, on real handshakes.

Covers the strict defaults (TLS 1.2 minimum, TLS 1.3 negotiated, no compression,
Mozilla intermediate suites for TLS 1.2), the explicit legacy opt-in for TLS 1.0/1.1,
and client verification on and off.
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme

from postguard.tls import (
    MOZILLA_INTERMEDIATE_CIPHERS,
    CertificateStore,
    client_context,
    resolve_tls_version,
    server_context,
)

if TYPE_CHECKING:
    from conftest import CertFactory, LoopbackTlsServer


def tls11_only_client(ca_file: Path) -> ssl.SSLContext:
    """A client that can *only* speak TLS 1.0/1.1, as an old MTA would.

    OpenSSL 3 needs security level 0 and CBC suites for that, otherwise the client
    gives up before sending anything and the test would prove nothing about the server.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca_file))
    context.check_hostname = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0")
    return context


def test_server_context_accepts_tls12_and_up_by_default() -> None:
    context = server_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.MAXIMUM_SUPPORTED
    assert context.security_level >= 2


def test_server_context_turns_off_compression_renegotiation_and_tickets() -> None:
    options = server_context().options
    for flag in (
        ssl.OP_NO_COMPRESSION,
        ssl.OP_NO_RENEGOTIATION,
        ssl.OP_SINGLE_ECDH_USE,
        ssl.OP_SINGLE_DH_USE,
        ssl.OP_NO_TICKET,
    ):
        assert options & flag == flag, flag


def test_server_context_offers_exactly_mozilla_intermediate_suites_for_tls12() -> None:
    tls12 = [c["name"] for c in server_context().get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == MOZILLA_INTERMEDIATE_CIPHERS.split(":")


def test_legacy_min_version_lowers_security_level_only_when_asked() -> None:
    assert server_context("1.1").security_level == 0
    assert server_context("1.1").minimum_version == ssl.TLSVersion.TLSv1_1
    assert server_context("1.2").security_level >= 2
    assert server_context("1.3").minimum_version == ssl.TLSVersion.TLSv1_3


def test_unknown_tls_version_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"unknown TLS version '1\.4'"):
        resolve_tls_version("1.4")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        server_context("SSLv3")  # type: ignore[arg-type]


def test_client_context_verifies_chain_and_host_name_by_default(ca_file: Path) -> None:
    context = client_context(cafile=ca_file)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_client_context_verify_false_turns_off_both_checks(ca_file: Path) -> None:
    context = client_context(cafile=ca_file, verify=False)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


@pytest.fixture
def store(certs: CertFactory) -> CertificateStore:
    return CertificateStore([certs.pair("mx", "mx.example")])


async def test_default_server_negotiates_tls13_without_compression(
    store: CertificateStore, loopback: type[LoopbackTlsServer], ca_file: Path
) -> None:
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(client_context(cafile=ca_file), "mx.example")
    assert result.version == "TLSv1.3"
    assert result.server.version == "TLSv1.3"
    assert result.compression is None
    assert result.server.compression is None


async def test_tls12_client_gets_an_intermediate_suite(
    store: CertificateStore, loopback: type[LoopbackTlsServer], ca_file: Path
) -> None:
    client = client_context(cafile=ca_file)
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(client, "mx.example")
    assert result.version == "TLSv1.2"
    assert result.cipher in MOZILLA_INTERMEDIATE_CIPHERS.split(":")


async def test_client_capped_at_tls11_cannot_connect_to_default_server(
    store: CertificateStore, loopback: type[LoopbackTlsServer], ca_file: Path
) -> None:
    # asyncio's server aborts the transport without flushing its alert, so the client
    # sees a reset rather than a protocol_version alert; the next test shows the reason.
    async with loopback(store.ssl_context) as server:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await server.connect(tls11_only_client(ca_file))


def test_default_server_refuses_tls11_as_unsupported_protocol(
    store: CertificateStore,
    memory_handshake: Callable[..., tuple[ssl.SSLObject, ssl.SSLObject]],
    ca_file: Path,
) -> None:
    with pytest.raises(ssl.SSLError) as refused:
        memory_handshake(store.ssl_context, tls11_only_client(ca_file))
    assert refused.value.reason == "UNSUPPORTED_PROTOCOL"


async def test_explicit_tls11_server_accepts_tls11_client(
    certs: CertFactory, loopback: type[LoopbackTlsServer], ca_file: Path
) -> None:
    # The positive control for the test above: the same client does work once the
    # server has been given "1.1" explicitly, so the refusal really is the version.
    store = CertificateStore(
        [
            certs.pair("ec", "mx.example"),
            certs.pair("rsa", "mx.example", key_type=trustme.KeyType.RSA),
        ],
        min_version="1.1",
    )
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(tls11_only_client(ca_file))
    assert result.version == "TLSv1.1"


async def test_client_context_rejects_a_certificate_from_another_ca(
    store: CertificateStore, loopback: type[LoopbackTlsServer], tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    async with loopback(store.ssl_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await server.connect(client_context(cafile=stranger), "mx.example")


async def test_client_context_rejects_a_host_name_the_certificate_lacks(
    store: CertificateStore, loopback: type[LoopbackTlsServer], ca_file: Path
) -> None:
    async with loopback(store.ssl_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            await server.connect(client_context(cafile=ca_file), "other.example")


async def test_client_context_without_verification_accepts_any_certificate(
    store: CertificateStore, loopback: type[LoopbackTlsServer], tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(client_context(cafile=stranger, verify=False))
    assert result.version == "TLSv1.3"
