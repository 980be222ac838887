"""Tests for ``postguard.tls.certstore``: loading, SNI selection and hot reload.

Every selection test is a real handshake on loopback through ``store.ssl_context``;
the certificate the client received is compared with the file that should have
served it. Reload tests replace files by rename and never sleep on a fixed delay:
they wait, with a bound, for the store's generation counter to move.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from postguard.tls import CertificateError, CertificatePair, CertificateStore, client_context
from postguard.tls.certstore import server_name_of

if TYPE_CHECKING:
    from conftest import CertFactory, LoopbackTlsServer

WAIT_BOUND_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.01


def tls12_client(base: ssl.SSLContext, ciphers: str) -> ssl.SSLContext:
    """Restrict ``base`` to TLS 1.2 and ``ciphers``, which pins the certificate type."""
    base.maximum_version = ssl.TLSVersion.TLSv1_2
    base.set_ciphers(ciphers)
    return base


async def wait_for_generation(store: CertificateStore, above: int) -> None:
    """Wait (bounded) until ``store`` has completed a reload after generation ``above``."""

    async def changed() -> None:
        while store.generation <= above:
            await asyncio.sleep(POLL_INTERVAL_SECONDS)

    await asyncio.wait_for(changed(), WAIT_BOUND_SECONDS)


def reload_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "postguard.tls" and record.levelno == logging.ERROR
    ]


# --- loading ----------------------------------------------------------------------


def test_empty_certificate_list_is_refused() -> None:
    with pytest.raises(CertificateError, match="no TLS certificate"):
        CertificateStore([])


def test_missing_file_error_names_the_file(certs: CertFactory) -> None:
    pair = certs.pair("mx", "mx.example")
    missing = CertificatePair(pair.cert, pair.key.with_name("absent.key"))
    with pytest.raises(CertificateError) as error:
        CertificateStore([missing])
    assert error.value.path == missing.key
    assert "absent.key" in str(error.value)


def test_garbage_certificate_error_names_the_file(certs: CertFactory) -> None:
    pair = certs.pair("mx", "mx.example")
    pair.cert.write_bytes(b"garbage\n")
    with pytest.raises(CertificateError, match="not a PEM certificate") as error:
        CertificateStore([pair])
    assert error.value.path == pair.cert


def test_key_that_does_not_match_its_certificate_is_refused(certs: CertFactory) -> None:
    a = certs.pair("a", "a.example")
    b = certs.pair("b", "b.example")
    with pytest.raises(CertificateError, match="does not match certificate") as error:
        CertificateStore([CertificatePair(a.cert, b.key)])
    assert error.value.path == b.key


def test_encrypted_key_is_refused_without_prompting(certs: CertFactory) -> None:
    pair = certs.pair("mx", "mx.example")
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateError, match="encrypted"):
        CertificateStore([pair])


def test_rsa_key_below_2048_bits_is_refused(certs: CertFactory) -> None:
    weak = certs.self_signed("weak", "weak.example", san=["weak.example"], rsa_bits=1024)
    with pytest.raises(CertificateError, match="too small"):
        CertificateStore([weak], min_version="1.0")


def test_two_certificates_with_same_names_and_key_type_are_ambiguous(
    certs: CertFactory,
) -> None:
    with pytest.raises(CertificateError, match="same names and key type"):
        CertificateStore([certs.pair("one", "mx.example"), certs.pair("two", "mx.example")])


def test_names_fall_back_to_the_common_name_without_a_san(certs: CertFactory) -> None:
    legacy = certs.self_signed("legacy", "Legacy.Example", san=None)
    store = CertificateStore([legacy])
    assert "names=legacy.example " in store.describe()[0]


def test_describe_gives_one_line_per_certificate(certs: CertFactory) -> None:
    store = CertificateStore(
        [
            certs.pair("ec", "mx.example", "*.mx.example"),
            certs.pair("rsa", "mx.example", "*.mx.example", key_type=trustme.KeyType.RSA),
            certs.pair("ip", "127.0.0.1"),
        ]
    )
    lines = store.describe()
    assert len(lines) == 3
    assert "names=mx.example,*.mx.example key=ECDSA-secp256r1 not_after=" in lines[0]
    assert "key=RSA-2048" in lines[1]
    assert "names=127.0.0.1 " in lines[2]
    assert all("EXPIRED" not in line for line in lines)


# --- SNI selection ----------------------------------------------------------------


@pytest.fixture
def multi_store(certs: CertFactory) -> tuple[CertificateStore, dict[str, CertificatePair]]:
    pairs = {
        "a": certs.pair("a", "a.example"),
        "b": certs.pair("b", "b.example"),
        "wild": certs.pair("wild", "*.wild.example"),
    }
    return CertificateStore(list(pairs.values())), pairs


@pytest.mark.parametrize(
    ("server_hostname", "expected"),
    [
        ("a.example", "a"),
        ("b.example", "b"),
        ("B.Example", "b"),
        ("mx.wild.example", "wild"),
        ("deep.mx.wild.example", "a"),  # a wildcard covers one label only
        ("wild.example", "a"),  # ...and at least one
        ("unknown.example", "a"),
        (None, "a"),  # no SNI at all
    ],
    ids=lambda value: str(value),
)
async def test_sni_chooses_the_certificate_for_the_name(
    multi_store: tuple[CertificateStore, dict[str, CertificatePair]],
    certs: CertFactory,
    loopback: type[LoopbackTlsServer],
    observing_client: ssl.SSLContext,
    server_hostname: str | None,
    expected: str,
) -> None:
    store, pairs = multi_store
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(observing_client, server_hostname)
    assert certs.der(result.peer_cert) == certs.der(pairs[expected].cert)


async def test_sni_selection_passes_full_verification_for_each_name(
    multi_store: tuple[CertificateStore, dict[str, CertificatePair]],
    loopback: type[LoopbackTlsServer],
    ca_file: Path,
) -> None:
    store, _ = multi_store
    async with loopback(store.ssl_context) as server:
        for name in ("a.example", "b.example", "smtp.wild.example"):
            result = await server.handshake(client_context(cafile=ca_file), name)
            assert result.version == "TLSv1.3"


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit-tls", "starttls"])
async def test_server_name_of_reports_the_sni_the_client_sent(
    multi_store: tuple[CertificateStore, dict[str, CertificatePair]],
    loopback: type[LoopbackTlsServer],
    observing_client: ssl.SSLContext,
    starttls: bool,
) -> None:
    store, _ = multi_store
    async with loopback(store.ssl_context, starttls=starttls) as server:
        with_sni = await server.handshake(observing_client, "Mx.Wild.Example.")
        without_sni = await server.handshake(observing_client, None)
    assert with_sni.server.server_name == "mx.wild.example"
    assert without_sni.server.server_name is None


def test_server_name_of_works_for_memory_bio_handshakes(
    multi_store: tuple[CertificateStore, dict[str, CertificatePair]],
    memory_handshake: Callable[..., tuple[ssl.SSLObject, ssl.SSLObject]],
    observing_client: ssl.SSLContext,
) -> None:
    store, _ = multi_store
    server_side, _ = memory_handshake(store.ssl_context, observing_client, "b.example")
    assert server_name_of(server_side) == "b.example"


def test_server_name_of_an_unknown_object_is_none() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ssl_object = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    assert server_name_of(ssl_object) is None


@pytest.mark.parametrize(
    ("cipher", "expected_key"),
    [("ECDHE-RSA-AES128-GCM-SHA256", "rsa"), ("ECDHE-ECDSA-AES128-GCM-SHA256", "ec")],
)
@pytest.mark.parametrize("server_hostname", ["mx.example", None], ids=["sni", "no-sni"])
async def test_dual_certificate_serves_the_key_type_the_client_supports(
    certs: CertFactory,
    loopback: type[LoopbackTlsServer],
    observing_client: ssl.SSLContext,
    cipher: str,
    expected_key: str,
    server_hostname: str | None,
) -> None:
    pairs = {
        "ec": certs.pair("ec", "mx.example"),
        "rsa": certs.pair("rsa", "mx.example", key_type=trustme.KeyType.RSA),
    }
    store = CertificateStore([pairs["ec"], pairs["rsa"]])
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(tls12_client(observing_client, cipher), server_hostname)
    assert result.cipher == cipher
    assert certs.der(result.peer_cert) == certs.der(pairs[expected_key].cert)


# --- reload -----------------------------------------------------------------------


@pytest.mark.parametrize("server_hostname", ["mx.example", None], ids=["sni", "no-sni"])
async def test_new_connection_after_reload_gets_the_new_certificate(
    certs: CertFactory,
    loopback: type[LoopbackTlsServer],
    observing_client: ssl.SSLContext,
    server_hostname: str | None,
) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    front = store.ssl_context
    old = certs.der(pair.cert)
    async with loopback(front) as server:
        before = await server.handshake(observing_client, server_hostname)
        certs.reissue(pair, "mx.example")
        assert store.reload() is True
        after = await server.handshake(observing_client, server_hostname)
    assert store.ssl_context is front
    assert certs.der(before.peer_cert) == old
    assert certs.der(after.peer_cert) == certs.der(pair.cert) != old


async def test_reload_that_changes_the_key_type_never_serves_the_old_key(
    certs: CertFactory, loopback: type[LoopbackTlsServer], observing_client: ssl.SSLContext
) -> None:
    # The front context keeps one certificate slot per key type, so reloading an RSA
    # certificate onto it leaves the old ECDSA one in place; only the sni_callback,
    # which switches every handshake (SNI or not) to the current set, keeps it unused.
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    certs.reissue(pair, "mx.example", key_type=trustme.KeyType.RSA)
    assert store.reload() is True
    async with loopback(store.ssl_context) as server:
        for sni in ("mx.example", None):
            result = await server.handshake(observing_client, sni)
            assert certs.der(result.peer_cert) == certs.der(pair.cert)


async def test_reload_can_change_the_names_served(
    certs: CertFactory, loopback: type[LoopbackTlsServer], observing_client: ssl.SSLContext
) -> None:
    default = certs.pair("default", "mx.example")
    extra = certs.pair("extra", "old.example")
    store = CertificateStore([default, extra])
    certs.reissue(extra, "new.example")
    assert store.reload() is True
    async with loopback(store.ssl_context) as server:
        new = await server.handshake(observing_client, "new.example")
        old = await server.handshake(observing_client, "old.example")
    assert certs.der(new.peer_cert) == certs.der(extra.cert)
    assert certs.der(old.peer_cert) == certs.der(default.cert)


@pytest.mark.parametrize("breakage", ["garbage-cert", "mismatched-key", "missing-key"])
async def test_broken_files_keep_the_old_certificate_and_log_one_error(
    certs: CertFactory,
    loopback: type[LoopbackTlsServer],
    observing_client: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    breakage: str,
) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    old = certs.der(pair.cert)
    if breakage == "garbage-cert":
        certs.replace(pair.cert, b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        culprit = pair.cert
    elif breakage == "mismatched-key":
        certs.replace(pair.key, certs.pair("other", "mx.example").key.read_bytes())
        culprit = pair.key
    else:
        pair.key.unlink()
        culprit = pair.key

    with caplog.at_level(logging.INFO, logger="postguard.tls"):
        assert store.reload() is False
    errors = reload_errors(caplog)
    assert len(errors) == 1
    assert str(culprit) in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage()
    assert store.generation == 0

    async with loopback(store.ssl_context) as server:
        for sni in ("mx.example", None):
            result = await server.handshake(observing_client, sni)
            assert certs.der(result.peer_cert) == old


async def test_one_broken_pair_blocks_the_whole_reload(
    certs: CertFactory, loopback: type[LoopbackTlsServer], observing_client: ssl.SSLContext
) -> None:
    good = certs.pair("good", "good.example")
    bad = certs.pair("bad", "bad.example")
    store = CertificateStore([good, bad])
    old_good = certs.der(good.cert)
    certs.reissue(good, "good.example")
    certs.replace(bad.cert, b"garbage")
    assert store.reload() is False
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(observing_client, "good.example")
    assert certs.der(result.peer_cert) == old_good


async def test_live_connection_keeps_working_across_a_reload(
    certs: CertFactory, loopback: type[LoopbackTlsServer], observing_client: ssl.SSLContext
) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    old = certs.der(pair.cert)
    async with loopback(store.ssl_context) as server:
        live = await server.connect(observing_client, "mx.example")
        try:
            assert await live.echo(b"before") == b"before"
            certs.reissue(pair, "mx.example")
            assert store.reload() is True
            fresh = await server.handshake(observing_client, "mx.example")
            assert certs.der(fresh.peer_cert) != old
            assert await live.echo(b"after") == b"after"
            assert certs.der(live.peer_cert) == old
        finally:
            await live.close()


async def test_watch_reloads_when_files_are_replaced(
    certs: CertFactory, loopback: type[LoopbackTlsServer], observing_client: ssl.SSLContext
) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    watcher = asyncio.create_task(store.watch(interval=POLL_INTERVAL_SECONDS))
    try:
        certs.reissue(pair, "mx.example")
        await wait_for_generation(store, above=0)
        async with loopback(store.ssl_context) as server:
            result = await server.handshake(observing_client)
        assert certs.der(result.peer_cert) == certs.der(pair.cert)
    finally:
        watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher


async def test_watch_recovers_after_a_broken_file_is_fixed(
    certs: CertFactory, caplog: pytest.LogCaptureFixture
) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    good_cert = pair.cert.read_bytes()
    with caplog.at_level(logging.ERROR, logger="postguard.tls"):
        watcher = asyncio.create_task(store.watch(interval=POLL_INTERVAL_SECONDS))
        try:
            certs.replace(pair.cert, b"garbage")

            async def error_logged() -> None:
                while not reload_errors(caplog):
                    await asyncio.sleep(POLL_INTERVAL_SECONDS)

            await asyncio.wait_for(error_logged(), WAIT_BOUND_SECONDS)
            certs.replace(pair.cert, good_cert)
            await wait_for_generation(store, above=0)
        finally:
            watcher.cancel()
    assert len(reload_errors(caplog)) == 1


async def test_watch_rejects_a_non_positive_interval(certs: CertFactory) -> None:
    store = CertificateStore([certs.pair("mx", "mx.example")])
    with pytest.raises(ValueError):
        await store.watch(interval=0)


def test_generation_counts_successful_reloads(certs: CertFactory) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    assert store.reload() is True
    pair.cert.write_bytes(b"garbage")
    assert store.reload() is False
    assert store.generation == 1


def test_reload_errors_never_include_key_material(
    certs: CertFactory, caplog: pytest.LogCaptureFixture
) -> None:
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    key_pem = pair.key.read_bytes()
    certs.replace(pair.key, certs.pair("other", "mx.example").key.read_bytes())
    with caplog.at_level(logging.ERROR, logger="postguard.tls"):
        store.reload()
    body = key_pem.decode().splitlines()[1]
    assert body not in caplog.text


async def test_catch_up_serves_files_rotated_since_the_first_load(
    certs: CertFactory, loopback: type[LoopbackTlsServer], observing_client: ssl.SSLContext
) -> None:
    # A replacement worker starts from the state forked at boot: if the files were
    # replaced since, it must load them rather than mark them as seen.
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    certs.reissue(pair, "mx.example")
    assert store.catch_up() is True
    async with loopback(store.ssl_context) as server:
        result = await server.handshake(observing_client)
    assert certs.der(result.peer_cert) == certs.der(pair.cert)
    assert store.generation == 1


def test_catch_up_ignores_a_change_of_owner_or_mode(certs: CertFactory) -> None:
    # Dropping privileges hands the files to the service user: only their ctime moves.
    pair = certs.pair("mx", "mx.example")
    store = CertificateStore([pair])
    pair.key.chmod(0o640)
    pair.key.chmod(0o600)
    assert store.catch_up() is False
    assert store.generation == 0
