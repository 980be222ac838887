"""A real Postfix relaying through postguard's submission port with SASL over STARTTLS.

Covers: a private Postfix instance (``helpers.postfix``) with ``relayhost`` = postguard's
submission listener, ``smtp_sasl_auth_enable`` and a texthash password map; a message
submitted to Postfix's own smtpd (plain SMTP on loopback, with ``smtplib``) reaches
postguard's Maildir with postguard's Received header saying ``with ESMTPSA`` from
``postfix.client.test`` over TLS 1.3, above Postfix's own Received. Postfix's Cyrus SASL
client is steered with ``smtp_sasl_mechanism_filter`` to each mechanism it can use
(SCRAM-SHA-256, PLAIN, LOGIN), and postguard's ``auth.succeeded`` log record proves which
one ran. ``smtp_tls_security_level = encrypt`` (TLS without a name check) and ``secure``
(``relayhost = [localhost]:port``, the certificate must match the next hop; the
development certificate names localhost) both work.

Postfix runs as its own daemons (as root, then the ``postfix`` user); the test waits on
postguard's Maildir (bounded) and stops Postfix by its own ``postfix stop``, checking its
master process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.accounts import assert_authenticated_delivery, start_auth_server
from helpers.postfix import MYHOSTNAME, PostfixInstance, require_postfix
from interop.harness import MarkedMessage, received_header

pytestmark = pytest.mark.interop

RELAY_TIMEOUT_SECONDS = 60.0


@contextlib.contextmanager
def auth_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """caplog's records of the "postguard" logger at INFO, each once."""
    logger = logging.getLogger("postguard")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    caplog.handler.setLevel(logging.INFO)
    try:
        yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
async def postfix_relay(server_factory, tmp_path: Path, traversable_dir: Path):
    """postguard with alice, and a factory for Postfix instances relaying through it."""
    require_postfix()
    server, alice = await start_auth_server(server_factory, tmp_path / "accounts")
    started: list[PostfixInstance] = []

    def make(*, mechanism: str, secure: bool = False) -> PostfixInstance:
        host = "localhost" if secure else "127.0.0.1"
        extra = {"smtp_sasl_mechanism_filter": mechanism.lower()}
        if secure:
            extra["smtp_tls_secure_cert_match"] = "nexthop"
        instance = PostfixInstance.create(
            traversable_dir / f"postfix{len(started) + 1}",
            relayhost=f"[{host}]:{server.ports['submission']}",
            ca_file=server.ca,
            sasl_user=alice.name,
            sasl_password=alice.password,
            tls_level="secure" if secure else "encrypt",
            extra=extra,
        )
        started.append(instance)
        instance.start()
        return instance

    yield server, make
    for instance in started:
        # Off the event loop: Postfix's smtp processes may still be talking to postguard.
        await asyncio.to_thread(instance.stop)
        assert instance.master_pid() is None


async def relay_one_message(server, instance: PostfixInstance, client: str) -> bytes:
    """Submit a marked message to Postfix's smtpd; return it as postguard delivered it."""
    sent = MarkedMessage.new(client)

    def submit() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as smtp:
            smtp.ehlo("submitter.client.test")
            return smtp.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes())

    assert await asyncio.to_thread(submit) == {}
    messages = await server.wait_for_messages(1, timeout=RELAY_TIMEOUT_SECONDS)
    assert messages, f"nothing relayed; Postfix maillog:\n{instance.log()[-4000:]}"
    message = assert_authenticated_delivery(messages, sent.marker)
    received = received_header(message)
    assert received.startswith(f"Received: from {MYHOSTNAME} ([127.0.0.1])"), received
    # Postfix's own trace header comes next (RFC 5321 §4.4: each hop prepends one).
    assert f"by {MYHOSTNAME} (Postfix) with ESMTP".encode() in message, message[:1200]
    return message


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN", "LOGIN"])
async def test_postfix_relays_through_submission_with_sasl(
    postfix_relay, caplog: pytest.LogCaptureFixture, mechanism: str
) -> None:
    server, make = postfix_relay
    with auth_records(caplog) as records:
        instance = await asyncio.to_thread(make, mechanism=mechanism)
        await relay_one_message(server, instance, f"postfix-{mechanism.lower()}")
        succeeded = [
            getattr(r, "pg_fields", {})
            for r in records
            if getattr(r, "pg_event", None) == "auth.succeeded"
        ]
    assert [(s["mechanism"], s["account"]) for s in succeeded] == [(mechanism, "alice")]
    [sent_line] = instance.log_lines(r"postfix/smtp\[\d+\]: .* status=sent ")
    assert "250 2.0.0 OK: queued as " in sent_line, sent_line
    [tls_line] = instance.log_lines(r"TLS connection established to ")
    assert "TLSv1.3" in tls_line, tls_line


async def test_postfix_with_tls_level_secure_verifies_the_certificate_and_relays(
    postfix_relay,
) -> None:
    server, make = postfix_relay
    instance = await asyncio.to_thread(make, mechanism="PLAIN", secure=True)
    await relay_one_message(server, instance, "postfix-secure")
    # "Verified": chain and name checked ("Trusted" would be the chain only).
    [tls_line] = instance.log_lines(r"TLS connection established to ")
    assert re.search(
        r"postfix/smtp\[\d+\]: Verified TLS connection established to localhost\[", tls_line
    ), tls_line
