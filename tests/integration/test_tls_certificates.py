"""Server certificates end to end: SNI selection, hot reload (SIGHUP and file watch), TLS records.

Certificates come from a trustme CA the client trusts. Which certificate a
server presented is told by its serial number, read from the peer certificate
of a real handshake (implicit TLS on submissions, STARTTLS on mx).

Covers: SNI picks among two ``[[tls.certificate]]`` entries (no or unknown SNI
gets the first); SIGHUP in a ``postguard serve`` process and a file change
under ``watch_interval = "100ms"`` switch new connections to a replacement
certificate while a session opened before keeps working; a broken replacement
leaves the old certificate serving and logs one error naming the file; the
Received header and the JSON log record the TLS version, cipher and SNI.

Waiting for a reload is a bounded poll (of the log, or of new handshakes),
never a sleep of a guessed length.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from helpers.dialogue import Dialogue

EHLO = "EHLO client.test"
POLL_TIMEOUT_SECONDS = 15.0
POLL_INTERVAL_SECONDS = 0.05


def write_pair(leaf: trustme.LeafCert, cert: Path, key: Path) -> None:
    """Replace both files the way certbot does: write aside, then rename over."""
    for data, path in (
        (leaf.private_key_pem.bytes(), key),
        (leaf.cert_chain_pems[0].bytes(), cert),
    ):
        aside = path.with_name(path.name + ".new")
        aside.write_bytes(data)
        os.replace(aside, path)


def replace_file(path: Path, data: bytes) -> None:
    aside = path.with_name(path.name + ".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def tls_toml(pairs: list[tuple[Path, Path]], *, watch_interval: str = "1h") -> str:
    text = f'[tls]\nwatch_interval = "{watch_interval}"\n'
    for cert, key in pairs:
        text += f'\n[[tls.certificate]]\ncert = "{cert}"\nkey = "{key}"\n'
    return text


def install(leaf: trustme.LeafCert, directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    write_pair(leaf, cert, key)
    return cert, key


def serial_of_leaf(leaf: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number


def presented_serial(dlg: Dialogue) -> int:
    der = dlg.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).serial_number


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def implicit_tls(port: int, context: ssl.SSLContext, name: str | None) -> Dialogue:
    """A submissions connection; ``name`` None sends no SNI (the host is an IP literal)."""
    dlg = await Dialogue.connect(port, tls=context, server_hostname=name)
    await dlg.expect("220 ")
    return dlg


async def starttls(port: int, context: ssl.SSLContext, name: str) -> Dialogue:
    """An mx session after STARTTLS with SNI ``name`` and EHLO again."""
    dlg = await Dialogue.connect(port)
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(context, server_hostname=name)
    await dlg.cmd(EHLO, expect="250 ")
    return dlg


async def wait_for_log(srv, text: str) -> str:
    """Bounded poll of a subprocess server's stderr for a line containing ``text``."""
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for line in srv.stderr().splitlines():
            if text in line:
                return line
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    raise AssertionError(f"no log line with {text!r}; stderr:\n{srv.stderr()}")


async def test_sni_selects_among_configured_certificates(server_factory, tmp_path) -> None:
    ca = trustme.CA()
    one, two = ca.issue_cert("mx1.test"), ca.issue_cert("mx2.test")
    pairs = [install(one, tmp_path / "certs", "one"), install(two, tmp_path / "certs", "two")]
    srv = await server_factory(tls_toml(pairs))
    context = trusting(ca)
    for name, leaf in (("mx1.test", one), ("mx2.test", two), ("MX2.Test", two)):
        dlg = await implicit_tls(srv.ports["submissions"], context, name)
        assert presented_serial(dlg) == serial_of_leaf(leaf), name
        await dlg.cmd("QUIT", expect="221 2.0.0")
        dlg = await starttls(srv.ports["mx"], context, name)
        assert presented_serial(dlg) == serial_of_leaf(leaf), name
        await dlg.cmd("QUIT", expect="221 2.0.0")


@pytest.mark.parametrize("name", [None, "unknown.test"], ids=["no-sni", "unknown-sni"])
async def test_no_or_unknown_sni_gets_the_first_certificate(server_factory, tmp_path, name) -> None:
    ca = trustme.CA()
    one, two = ca.issue_cert("mx1.test"), ca.issue_cert("mx2.test")
    pairs = [install(one, tmp_path / "certs", "one"), install(two, tmp_path / "certs", "two")]
    srv = await server_factory(tls_toml(pairs))
    context = trusting(ca)
    context.check_hostname = False  # the name does not match; we only look at the serial
    dlg = await implicit_tls(srv.ports["submissions"], context, name)
    assert presented_serial(dlg) == serial_of_leaf(one)
    await dlg.cmd("QUIT", expect="221 2.0.0")


async def test_sighup_reloads_certificates_and_open_sessions_keep_working(
    subprocess_factory, traversable_dir
) -> None:
    ca = trustme.CA()
    old, new = ca.issue_cert("mail.test"), ca.issue_cert("mail.test")
    cert, key = install(old, traversable_dir / "certs", "mail")
    srv = subprocess_factory(tls_toml([(cert, key)]))
    context = trusting(ca)
    early = await starttls(srv.ports["mx"], context, "mail.test")
    assert presented_serial(early) == serial_of_leaf(old)

    write_pair(new, cert, key)
    os.kill(srv.pid, signal.SIGHUP)
    await wait_for_log(srv, "tls.certificates_reloaded")

    late = await implicit_tls(srv.ports["submissions"], context, "mail.test")
    assert presented_serial(late) == serial_of_leaf(new)
    await late.cmd("QUIT", expect="221 2.0.0")
    # The session from before the reload still carries mail.
    reply = await early.send_message(b"Subject: across a reload\r\n\r\nstill here\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await early.cmd("QUIT", expect="221 2.0.0")
    [message] = await srv.wait_for_messages(1)
    assert message.endswith(b"Subject: across a reload\r\n\r\nstill here\r\n")


async def test_changed_certificate_files_are_picked_up_by_the_watcher(
    server_factory, tmp_path
) -> None:
    ca = trustme.CA()
    old, new = ca.issue_cert("mail.test"), ca.issue_cert("mail.test")
    cert, key = install(old, tmp_path / "certs", "mail")
    srv = await server_factory(tls_toml([(cert, key)], watch_interval="100ms"))
    context = trusting(ca)
    early = await starttls(srv.ports["mx"], context, "mail.test")
    assert presented_serial(early) == serial_of_leaf(old)

    write_pair(new, cert, key)
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while True:
        probe = await implicit_tls(srv.ports["submissions"], context, "mail.test")
        serial = presented_serial(probe)
        await probe.cmd("QUIT", expect="221 2.0.0")
        if serial == serial_of_leaf(new) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    assert serial == serial_of_leaf(new)

    reply = await early.send_message(b"Subject: across a watch reload\r\n\r\nok\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await early.cmd("QUIT", expect="221 2.0.0")
    assert len(await srv.delivered(1)) == 1


@pytest.mark.parametrize("broken", ["cert", "key"])
async def test_broken_replacement_keeps_the_old_certificate_and_logs_the_file(
    subprocess_factory, traversable_dir, broken: str
) -> None:
    ca = trustme.CA()
    old = ca.issue_cert("mail.test")
    cert, key = install(old, traversable_dir / "certs", "mail")
    srv = subprocess_factory(tls_toml([(cert, key)]))
    context = trusting(ca)

    bad = cert if broken == "cert" else key
    replace_file(bad, b"-----BEGIN GARBAGE-----\nnot base64 at all\n-----END GARBAGE-----\n")
    os.kill(srv.pid, signal.SIGHUP)
    await wait_for_log(srv, "tls.certificate_reload_failed")

    errors = [line for line in srv.stderr().splitlines() if str(bad) in line]
    assert len(errors) == 1, srv.stderr()
    assert " error " in errors[0]
    assert "Traceback" not in srv.stderr()
    dlg = await implicit_tls(srv.ports["submissions"], context, "mail.test")
    assert presented_serial(dlg) == serial_of_leaf(old)
    await dlg.cmd("QUIT", expect="221 2.0.0")
    dlg = await starttls(srv.ports["mx"], context, "mail.test")
    assert presented_serial(dlg) == serial_of_leaf(old)
    await dlg.cmd("QUIT", expect="221 2.0.0")

    # Once the files are fixed, the next SIGHUP loads them.
    new = ca.issue_cert("mail.test")
    write_pair(new, cert, key)
    os.kill(srv.pid, signal.SIGHUP)
    await wait_for_log(srv, "tls.certificates_reloaded")
    dlg = await implicit_tls(srv.ports["submissions"], context, "mail.test")
    assert presented_serial(dlg) == serial_of_leaf(new)
    await dlg.cmd("QUIT", expect="221 2.0.0")


@pytest.mark.parametrize("maximum", ["TLSv1_2", "TLSv1_3"])
async def test_received_header_records_tls_version_and_cipher(mail_server, maximum) -> None:
    context = mail_server.client_tls()
    context.maximum_version = getattr(ssl.TLSVersion, maximum)
    dlg = await Dialogue.connect(mail_server.ports["mx"])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(context)
    await dlg.cmd(EHLO, expect="250 ")
    ssl_object = dlg.writer.get_extra_info("ssl_object")
    version = ssl_object.version()
    cipher, _, bits = ssl_object.cipher()
    assert version == maximum.replace("_", ".")
    reply = await dlg.send_message(b"Subject: trace\r\n\r\nhi\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    [message] = await mail_server.delivered(1)
    assert f"(using {version} with cipher {cipher} ({bits} bits))".encode() in message
    assert b"with ESMTPS id" in message


async def test_json_log_records_tls_version_cipher_and_sni(
    subprocess_factory, traversable_dir
) -> None:
    ca = trustme.CA()
    one, two = ca.issue_cert("mx1.test"), ca.issue_cert("mx2.test")
    certs = traversable_dir / "certs"
    pairs = [install(one, certs, "one"), install(two, certs, "two")]
    srv = subprocess_factory(tls_toml(pairs) + '\n[log]\nformat = "json"\n')
    dlg = await starttls(srv.ports["mx"], trusting(ca), "mx2.test")
    ssl_object = dlg.writer.get_extra_info("ssl_object")
    version, cipher = ssl_object.version(), ssl_object.cipher()[0]
    reply = await dlg.send_message(b"Subject: logged\r\n\r\nhi\r\n")
    assert reply[-1].startswith("250 2.0.0")
    await dlg.cmd("QUIT", expect="221 2.0.0")
    await srv.wait_for_messages(1)
    await wait_for_log(srv, '"smtp.disconnected"')

    # The server may be writing a line right now: only complete lines are parsed.
    records = [json.loads(line) for line in srv.stderr().split("\n")[:-1]]
    [handshake] = [r for r in records if r["event"] == "tls.handshake_done"]
    assert handshake["tls_version"] == version
    assert handshake["cipher"] == cipher
    assert handshake["sni"] == "mx2.test"
    [connected] = [r for r in records if r["event"] == "smtp.connected"]
    assert connected["session"] == handshake["session"]
    assert connected["listener"] == "mx"
