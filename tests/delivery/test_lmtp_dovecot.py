"""LmtpAgent against a real Dovecot, read back over IMAPS: the bytes stored are the bytes sent.

A private Dovecot (``helpers/dovecot.py``) listens on loopback for LMTP (TCP
with STARTTLS, and a Unix socket) and IMAPS. Each test delivers a message with
a unique marker through :class:`~postguard.delivery.lmtp.LmtpAgent`, then logs
in over IMAPS (verifying the test CA) and compares the fetched ``RFC822`` bytes
with ``Return-Path: <reverse path>`` + the delivered content, exactly.

Covers: two recipients plus an unknown one (Dovecot's ``550 5.1.1`` at RCPT)
over STARTTLS with ``tls = "required"``; the Unix socket; the null reverse
path; dot lines, 8-bit text and a long line; bare LF normalised to CRLF; and a
certificate the agent does not trust: a temporary failure, nothing stored, and
no plaintext fallback even in opportunistic mode.

Dovecot missing: a loud skip locally, a failure when ``CI`` is set (Debian
packages: dovecot-core dovecot-lmtpd dovecot-imapd).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import trustme

from helpers.dovecot import MAIL_DOMAIN, DovecotServer, running_dovecot
from postguard.delivery.base import Delivered, PermanentFailure, TemporaryFailure
from postguard.delivery.lmtp import LmtpAgent
from postguard.tls.contexts import client_context

SENDER = "sender@example.org"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with running_dovecot() as server:
        yield server


def message(marker: str, body: bytes = b"Hello from postguard.\r\n") -> bytes:
    return (
        f"From: Sender <{SENDER}>\r\n"
        f"To: alice@{MAIL_DOMAIN}\r\n"
        f"Subject: LMTP test {marker}\r\n"
        f"Message-ID: <{marker}@postguard.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
    ).encode() + body


def stored(server: DovecotServer, user: str, marker: str) -> list[bytes]:
    """The messages in ``user``'s INBOX that carry ``marker``."""
    needle = marker.encode()
    return [m for m in server.fetch_inbox(user) if needle in m]


def tcp_agent(server: DovecotServer, **options: object) -> LmtpAgent:
    defaults: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.lmtp_port,
        "tls": "required",
        "ssl_context": server.client_ssl_context(),
        "server_hostname": "localhost",
        "lhlo_domain": "mx.postguard.test",
        "command_timeout": 30.0,
        "data_timeout": 60.0,
    }
    return LmtpAgent(**{**defaults, **options})  # type: ignore[arg-type]


def test_two_recipients_over_starttls_and_an_unknown_one(dovecot: DovecotServer) -> None:
    marker = uuid.uuid4().hex
    body = (
        b"First line.\r\n"
        b".A line that starts with a dot.\r\n"
        b".\r\n"
        b"..\r\n"
        + "Grüße, 8-bit: ä ö ü ß €\r\n".encode()
        + b"x" * 990
        + b"\r\n"
        + b"Last line without trouble.\r\n"
    )
    content = message(marker, body)
    unknown = f"nobody-{marker[:8]}@{MAIL_DOMAIN}"
    mailboxes = [f"alice@{MAIL_DOMAIN}", f"bob@{MAIL_DOMAIN}", unknown]

    outcomes = tcp_agent(dovecot).deliver(content, mailboxes, reverse_path=SENDER)

    assert outcomes[f"alice@{MAIL_DOMAIN}"] == Delivered(), dovecot.log()
    assert outcomes[f"bob@{MAIL_DOMAIN}"] == Delivered()
    refused = outcomes[unknown]
    assert isinstance(refused, PermanentFailure), refused
    assert (refused.reply.code, refused.reply.enhanced) == (550, "5.1.1")
    for user in ("alice", "bob"):
        assert stored(dovecot, user, marker) == [f"Return-Path: <{SENDER}>\r\n".encode() + content]


def test_unix_socket_and_null_reverse_path(dovecot: DovecotServer) -> None:
    marker = uuid.uuid4().hex
    content = message(marker)
    agent = LmtpAgent(path=dovecot.lmtp_socket, command_timeout=30.0, data_timeout=60.0)
    outcomes = agent.deliver(content, [f"alice@{MAIL_DOMAIN}"], reverse_path="")
    assert outcomes == {f"alice@{MAIL_DOMAIN}": Delivered()}, dovecot.log()
    assert stored(dovecot, "alice", marker) == [b"Return-Path: <>\r\n" + content]


def test_bare_lf_content_is_stored_with_crlf(dovecot: DovecotServer) -> None:
    marker = uuid.uuid4().hex
    content = message(marker, b"one\ntwo\n.\nthree\r\n")
    outcomes = tcp_agent(dovecot).deliver(content, [f"bob@{MAIL_DOMAIN}"], reverse_path=SENDER)
    assert outcomes == {f"bob@{MAIL_DOMAIN}": Delivered()}
    expected = content.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert stored(dovecot, "bob", marker) == [f"Return-Path: <{SENDER}>\r\n".encode() + expected]


@pytest.mark.parametrize("mode", ["required", "opportunistic"])
def test_untrusted_certificate_defers_without_plaintext_fallback(
    dovecot: DovecotServer, mode: str, tmp_path: object
) -> None:
    other_ca = trustme.CA()
    ca_file = f"{tmp_path}/other-ca.pem"
    other_ca.cert_pem.write_to_path(ca_file)
    agent = tcp_agent(dovecot, tls=mode, ssl_context=client_context(ca_file))  # type: ignore[arg-type]
    marker = uuid.uuid4().hex
    outcomes = agent.deliver(message(marker), [f"alice@{MAIL_DOMAIN}"], reverse_path=SENDER)
    outcome = outcomes[f"alice@{MAIL_DOMAIN}"]
    assert isinstance(outcome, TemporaryFailure), outcome
    assert (outcome.reply.code, outcome.reply.enhanced) == (451, "4.7.0")
    assert stored(dovecot, "alice", marker) == []


def test_wrong_server_name_defers(dovecot: DovecotServer) -> None:
    agent = tcp_agent(dovecot, server_hostname="lmtp.elsewhere.test")
    marker = uuid.uuid4().hex
    outcomes = agent.deliver(message(marker), [f"alice@{MAIL_DOMAIN}"], reverse_path=SENDER)
    assert isinstance(outcomes[f"alice@{MAIL_DOMAIN}"], TemporaryFailure)
    assert stored(dovecot, "alice", marker) == []
