"""SMTP AUTH (RFC 4954) end to end: in-process servers, real TLS, transcripts of every reply.

Covers what EHLO advertises where (submission after STARTTLS, submissions from the first
EHLO, mx never unless ``[listener.mx] auth = true``, CRAM-MD5 only with a CRAM secret,
OAuth mechanisms only with ``[auth.oauth]``); every mechanism's successful exchange (PLAIN
with and without initial response, LOGIN's two challenges, SCRAM-SHA-256 with postguard's
own client half checking the server signature, CRAM-MD5, OAUTHBEARER and XOAUTH2 with
ES256 tokens from a JWKS file); every refusal (530, 538, 535 alike for a wrong password and
an unknown user, 501 5.0.0 cancel, 501 5.5.2 bad base64, 504, 503 twice and in a
transaction, 553 unowned sender); what authentication changes afterwards (owned senders
and ``*@domain``, relay to remote domains into the queue, ``ESMTPSA`` in Received and the
account only with ``received_shows_identity``); the logs (mechanism, account, client,
outcome; never the password or its base64); accounts created with ``postguard user add``
while the server runs, and a broken accounts file refused on reload; and the brute-force
throttle (per client IP and per account: growing delay, then 421 4.7.0 and the connection
closed, also for new connections).

Accounts are written through the real store (``helpers.accounts``) with cheap argon2id
parameters, so PLAIN/LOGIN checks of existing accounts cost milliseconds; the two paths
that must pay the production argon2 cost (an unknown user's dummy hash, an account made by
the CLI) appear once each. Throttle delays are 10-50 ms except where a test measures them.

Not covered: ``454 4.7.0`` for a credential store that is down. ``FileCredentialStore``
never raises ``StoreUnavailable`` (it answers from memory; a broken file keeps the old
accounts, tested here), so only a future SQL store can produce it; the 454 mapping is unit
tested with the SASL layer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.utils
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.accounts import (
    OAuthIssuer,
    TestAccount,
    add_account,
    add_account_with_cli,
    auth_toml,
    wait_for_account,
)
from helpers.dialogue import Dialogue
from interop.harness import received_header
from postguard.sasl import (
    CramMd5Client,
    OAuthBearerClient,
    SaslAuthenticationError,
    ScramClient,
    XOAuth2Client,
)

EHLO = "EHLO client.test"
PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "incorrect horse battery staple"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
BLOCKED = "421 4.7.0 Too many failed authentications, try again later"
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
LOGIN_USERNAME = "334 VXNlcm5hbWU6"  # base64("Username:")
LOGIN_PASSWORD = "334 UGFzc3dvcmQ6"  # base64("Password:")
POLL_TIMEOUT_SECONDS = 15.0


# ------------------------------------------------------------------------------ helpers


def b64(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def plain(user: str, password: str, authzid: str = "") -> str:
    """The base64 PLAIN message (RFC 4616): authzid NUL authcid NUL password."""
    return b64(f"{authzid}\0{user}\0{password}")


def auth_line(lines: list[str]) -> str | None:
    """The EHLO keyword line starting with AUTH, without the "250-"/"250 " prefix."""
    found = [line[4:] for line in lines if line[4:].startswith("AUTH ")]
    return found[0] if found else None


async def over_starttls(srv, listener: str = "submission") -> tuple[Dialogue, list[str]]:
    """Connect, EHLO, STARTTLS, EHLO again; the dialogue and the second EHLO reply."""
    dlg = await Dialogue.connect(srv.ports[listener])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.starttls(srv.client_tls())
    return dlg, await dlg.cmd(EHLO, expect="250 ")


async def over_implicit_tls(srv) -> tuple[Dialogue, list[str]]:
    """Connect to submissions (TLS from the first byte) and EHLO."""
    dlg = await Dialogue.connect(
        srv.ports["submissions"], tls=srv.client_tls(), server_hostname="localhost"
    )
    await dlg.expect("220 ")
    return dlg, await dlg.cmd(EHLO, expect="250 ")


async def login_plain(srv, account: TestAccount) -> Dialogue:
    dlg, _ = await over_starttls(srv)
    await dlg.cmd(f"AUTH PLAIN {plain(account.name, account.password)}", expect=AUTH_OK)
    return dlg


async def scram_exchange(dlg: Dialogue, user: str, password: str) -> tuple[list[str], ScramClient]:
    """Run SCRAM-SHA-256 with postguard's client half; the last reply and the client.

    The exchange stops at the first reply that is not a 334 (a failure, or the 421 cut-off).
    """
    client = ScramClient(user, password, nonce="pgtest" + b64(str(time.monotonic_ns()))[:16])
    reply = await dlg.cmd(f"AUTH SCRAM-SHA-256 {b64(client.initial_response())}", expect="")
    while reply[-1].startswith("334 "):
        challenge = base64.b64decode(reply[-1][4:])
        reply = await dlg.cmd(b64(client.respond(challenge)), expect="")
    return reply, client


async def send_mail(
    dlg: Dialogue, mail_from: str, rcpts: list[str], body: bytes = b"Subject: t\r\n\r\nhi\r\n"
) -> list[str]:
    await dlg.cmd(f"MAIL FROM:<{mail_from}>", expect="250 2.1.0")
    for rcpt in rcpts:
        await dlg.cmd(f"RCPT TO:<{rcpt}>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="354")
    dlg.send_raw(body + b".\r\n")
    return await dlg.expect("250 2.0.0 OK: queued as ")


@contextlib.contextmanager
def postguard_records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    """caplog's records of the "postguard" logger at INFO, each once, propagating or not."""
    logger = logging.getLogger("postguard")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # else root's copy of caplog's handler sees each record twice
    caplog.handler.setLevel(logging.INFO)
    try:
        yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
        logger.propagate = propagate


def fields(record: logging.LogRecord) -> dict[str, object]:
    return dict(getattr(record, "pg_fields", {}))


def events(records: list[logging.LogRecord], name: str) -> list[dict[str, object]]:
    return [fields(r) for r in records if getattr(r, "pg_event", None) == name]


async def wait_for_record(records: list[logging.LogRecord], text: str) -> logging.LogRecord:
    """Bounded poll until a record's message contains ``text``."""
    deadline = time.monotonic() + POLL_TIMEOUT_SECONDS
    while True:
        found = [r for r in records if text in r.getMessage()]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no log record containing {text!r}"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def accounts_file(tmp_path: Path) -> Path:
    return tmp_path / "accounts" / "accounts.toml"


@pytest.fixture
def alice(accounts_file: Path) -> TestAccount:
    return add_account(
        accounts_file, "alice", PASSWORD, addresses=["alice@localhost", "*@example.org"]
    )


@pytest.fixture
async def auth_server(server_factory, accounts_file: Path, alice: TestAccount):
    """A server whose accounts file holds ``alice`` (PLAIN, LOGIN, SCRAM; no CRAM secret)."""
    return await server_factory(auth_toml(accounts_file))


# ---------------------------------------------------------------------- advertisement


async def test_submission_offers_auth_only_after_starttls(auth_server) -> None:
    dlg = await Dialogue.connect(auth_server.ports["submission"])
    await dlg.expect("220 ")
    before = await dlg.cmd(EHLO, expect="250 ")
    assert auth_line(before) is None, before
    await dlg.starttls(auth_server.client_tls())
    after = await dlg.cmd(EHLO, expect="250 ")
    # No CRAM-MD5 (no account has a secret), no OAuth ([auth.oauth] not set), no -PLUS
    # (Python's ssl has no tls-exporter).
    assert auth_line(after) == "AUTH SCRAM-SHA-256 PLAIN LOGIN", after
    await dlg.close()


async def test_submissions_offers_auth_in_its_first_ehlo(auth_server) -> None:
    dlg, ehlo = await over_implicit_tls(auth_server)
    assert auth_line(ehlo) == "AUTH SCRAM-SHA-256 PLAIN LOGIN", ehlo
    await dlg.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}", expect=AUTH_OK)
    await dlg.close()


async def test_auth_before_starttls_is_530_on_submission(auth_server) -> None:
    dlg = await Dialogue.connect(auth_server.ports["submission"])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}", expect=STARTTLS_FIRST)
    await dlg.cmd("AUTH LOGIN", expect=STARTTLS_FIRST)
    await dlg.close()


async def test_mx_never_offers_auth_by_default(auth_server) -> None:
    dlg = await Dialogue.connect(auth_server.ports["mx"])
    await dlg.expect("220 ")
    assert auth_line(await dlg.cmd(EHLO, expect="250 ")) is None
    await dlg.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}", expect="502 5.5.1")
    await dlg.starttls(auth_server.client_tls())
    assert auth_line(await dlg.cmd(EHLO, expect="250 ")) is None
    await dlg.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}", expect="502 5.5.1")
    await dlg.close()


async def test_mx_with_auth_enabled_offers_it_after_starttls_only(
    server_factory, accounts_file: Path, alice: TestAccount
) -> None:
    srv = await server_factory(auth_toml(accounts_file), listener_toml={"mx": "auth = true"})
    dlg = await Dialogue.connect(srv.ports["mx"])
    await dlg.expect("220 ")
    assert auth_line(await dlg.cmd(EHLO, expect="250 ")) is None
    # RFC 4954 §4 / §6: a mechanism that needs encryption, asked for in plaintext.
    await dlg.cmd(
        f"AUTH PLAIN {plain('alice', PASSWORD)}",
        expect="538 5.7.11 Encryption required for requested authentication mechanism",
    )
    await dlg.starttls(srv.client_tls())
    ehlo = await dlg.cmd(EHLO, expect="250 ")
    assert auth_line(ehlo) == "AUTH SCRAM-SHA-256 PLAIN LOGIN", ehlo
    await dlg.cmd(f"AUTH PLAIN {plain('alice', PASSWORD)}", expect=AUTH_OK)
    await dlg.close()


# -------------------------------------------------------------------------- mechanisms


async def test_auth_plain_with_initial_response_is_235(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=AUTH_OK)
    await dlg.close()


async def test_auth_plain_without_initial_response_gets_an_empty_challenge(
    auth_server, alice
) -> None:
    dlg, _ = await over_starttls(auth_server)
    challenge = await dlg.cmd("AUTH PLAIN", expect="334")
    assert challenge == ["334 "]  # RFC 4954 §4: an empty challenge
    await dlg.cmd(plain(alice.name, alice.password), expect=AUTH_OK)
    await dlg.close()


async def test_auth_plain_with_authzid_equal_to_the_user_is_235(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password, alice.name)}", expect=AUTH_OK)
    await dlg.close()


async def test_auth_login_asks_username_then_password(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd("AUTH LOGIN", expect=LOGIN_USERNAME)
    await dlg.cmd(b64(alice.name), expect=LOGIN_PASSWORD)
    await dlg.cmd(b64(alice.password), expect=AUTH_OK)
    await dlg.close()


async def test_auth_login_with_the_username_as_initial_response(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd(f"AUTH LOGIN {b64(alice.name)}", expect=LOGIN_PASSWORD)
    await dlg.cmd(b64(alice.password), expect=AUTH_OK)
    await dlg.close()


async def test_scram_sha_256_succeeds_and_the_server_signature_verifies(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    reply, client = await scram_exchange(dlg, alice.name, alice.password)
    assert reply == [AUTH_OK]
    client.verify_final()  # raises unless the server's v= proved it holds ServerKey
    await dlg.close()


async def test_scram_sha_256_with_a_wrong_password_is_535(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    reply, client = await scram_exchange(dlg, alice.name, WRONG_PASSWORD)
    assert reply == [AUTH_FAILED]
    with pytest.raises(SaslAuthenticationError):
        client.verify_final()
    await dlg.close()


async def test_cram_md5_is_offered_only_once_an_account_has_a_secret(
    auth_server, accounts_file: Path
) -> None:
    dlg, ehlo = await over_starttls(auth_server)
    assert "CRAM-MD5" not in (auth_line(ehlo) or "")
    await dlg.cmd("AUTH CRAM-MD5", expect="504 5.5.4 Unrecognized authentication type")
    await dlg.close()

    # Added while the server runs: the store reloads the file by itself.
    bob = add_account(
        accounts_file, "bob", "bob's cram secret", addresses=["bob@localhost"], cram_md5=True
    )
    await wait_for_account(auth_server, "bob")

    dlg, ehlo = await over_starttls(auth_server)
    assert auth_line(ehlo) == "AUTH SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN", ehlo
    challenge = await dlg.cmd("AUTH CRAM-MD5", expect="334 ")
    client = CramMd5Client(bob.name, bob.password)
    assert client.initial_response() is None
    nonce = base64.b64decode(challenge[-1][4:])
    assert nonce.startswith(b"<") and nonce.endswith(b">")  # RFC 2195: a msg-id
    await dlg.cmd(b64(client.respond(nonce)), expect=AUTH_OK)
    await dlg.close()


async def test_account_added_with_the_cli_while_running_can_log_in(server_factory) -> None:
    srv = await server_factory(auth_toml())  # accounts file: <data_dir>/accounts.toml
    dlg, ehlo = await over_starttls(srv)
    assert auth_line(ehlo) is None  # no accounts: no mechanism can work
    await dlg.close()

    carol = await asyncio.to_thread(
        add_account_with_cli,
        srv.data_dir,
        "carol",
        PASSWORD,
        addresses=["carol@localhost"],
    )
    account = await wait_for_account(srv, "carol")
    assert account is not None
    assert account.password_hash is not None and account.password_hash.startswith("$argon2id$")

    dlg, ehlo = await over_starttls(srv)
    assert auth_line(ehlo) == "AUTH SCRAM-SHA-256 PLAIN LOGIN", ehlo
    # Production argon2 parameters here (about a second on the 2-core VM).
    await dlg.cmd(f"AUTH PLAIN {plain(carol.name, carol.password)}", expect=AUTH_OK)
    await dlg.cmd("MAIL FROM:<carol@localhost>", expect="250 2.1.0")
    await dlg.close()


# ----------------------------------------------------------------------------- refusals


async def test_wrong_password_and_unknown_user_get_the_same_535(auth_server, alice) -> None:
    dlg, _ = await over_starttls(auth_server)
    wrong = await dlg.cmd(f"AUTH PLAIN {plain(alice.name, WRONG_PASSWORD)}", expect="535 ")
    # The unknown name costs a full argon2 run against the dummy hash (user enumeration).
    unknown = await dlg.cmd(f"AUTH PLAIN {plain('mallory', WRONG_PASSWORD)}", expect="535 ")
    assert wrong == unknown == [AUTH_FAILED]
    await dlg.close()


async def test_star_cancels_the_exchange_with_501_and_auth_can_start_again(
    auth_server, alice
) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd("AUTH LOGIN", expect=LOGIN_USERNAME)
    await dlg.cmd(b64(alice.name), expect=LOGIN_PASSWORD)
    await dlg.cmd("*", expect="501 5.0.0 Authentication cancelled")
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=AUTH_OK)
    await dlg.close()


async def test_bad_base64_is_501_in_the_initial_response_and_in_a_response_line(
    auth_server,
) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd("AUTH PLAIN not*base64", expect="501 5.5.2 Invalid base64 data")
    await dlg.cmd("AUTH PLAIN dGVzdA", expect="501 5.5.2 Invalid base64 data")  # no padding
    await dlg.cmd("AUTH LOGIN", expect=LOGIN_USERNAME)
    await dlg.cmd("%%%%", expect="501 5.5.2 Invalid base64 data")
    await dlg.cmd("NOOP", expect="250 2.0.0")  # the exchange is over, the session is not
    await dlg.close()


@pytest.mark.parametrize(
    "mechanism",
    ["FOOBAR", "XOAUTH2", "OAUTHBEARER", "SCRAM-SHA-256-PLUS", "CRAM-MD5", "GSSAPI"],
    ids=str.lower,
)
async def test_mechanism_not_offered_is_504(auth_server, mechanism: str) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd(f"AUTH {mechanism}", expect="504 5.5.4 Unrecognized authentication type")
    await dlg.close()


async def test_second_auth_after_success_is_503(auth_server, alice) -> None:
    dlg = await login_plain(auth_server, alice)
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect="503 5.5.1")
    await dlg.cmd("AUTH LOGIN", expect="503 5.5.1")
    await dlg.close()


async def test_auth_during_a_mail_transaction_is_503(
    server_factory, accounts_file: Path, alice: TestAccount
) -> None:
    # On mx (auth = true) a transaction can begin unauthenticated; on submission it cannot.
    srv = await server_factory(auth_toml(accounts_file), listener_toml={"mx": "auth = true"})
    dlg, _ = await over_starttls(srv, "mx")
    await dlg.cmd("MAIL FROM:<someone@example.net>", expect="250 2.1.0")
    await dlg.cmd(
        f"AUTH PLAIN {plain(alice.name, alice.password)}",
        expect="503 5.5.1 Bad sequence of commands",
    )
    await dlg.cmd("RSET", expect="250 2.0.0")
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=AUTH_OK)
    await dlg.close()


async def test_mail_before_auth_is_530_on_submission_and_submissions(auth_server) -> None:
    dlg, _ = await over_starttls(auth_server)
    await dlg.cmd("MAIL FROM:<alice@localhost>", expect=AUTH_REQUIRED)
    await dlg.close()
    dlg, _ = await over_implicit_tls(auth_server)
    await dlg.cmd("MAIL FROM:<alice@localhost>", expect=AUTH_REQUIRED)
    await dlg.close()


async def test_disabled_account_cannot_log_in(auth_server, accounts_file: Path) -> None:
    add_account(accounts_file, "dave", PASSWORD, addresses=["dave@localhost"], disabled=True)
    await wait_for_account(auth_server, "dave")
    dlg, _ = await over_starttls(auth_server)
    reply, _ = await scram_exchange(dlg, "dave", PASSWORD)
    assert reply == [AUTH_FAILED]
    await dlg.close()


# ------------------------------------------------------------------ after authentication


async def test_mail_from_must_be_owned_by_the_account(auth_server, alice) -> None:
    dlg = await login_plain(auth_server, alice)
    await dlg.cmd(
        "MAIL FROM:<bob@localhost>",
        expect="553 5.7.1 Sender address not owned by authenticated user",
    )
    await dlg.cmd("MAIL FROM:<alice@sub.example.org>", expect="553 5.7.1")  # not a subdomain
    await dlg.cmd("MAIL FROM:<alice@localhost>", expect="250 2.1.0")  # listed address
    await dlg.cmd("RSET", expect="250 2.0.0")
    await dlg.cmd("MAIL FROM:<Anyone@EXAMPLE.org>", expect="250 2.1.0")  # *@example.org
    await dlg.cmd("RSET", expect="250 2.0.0")
    await dlg.cmd("MAIL FROM:<>", expect="250 2.1.0")  # the null sender
    await dlg.close()


async def test_mail_auth_parameter_is_accepted_when_auth_is_advertised(auth_server, alice) -> None:
    dlg = await login_plain(auth_server, alice)
    try:
        await dlg.cmd("MAIL FROM:<alice@localhost> AUTH=<>", expect="250 2.1.0")
    finally:
        await dlg.close()


async def test_authenticated_mail_to_a_remote_domain_is_queued_for_the_relay(
    auth_server, alice
) -> None:
    dlg = await login_plain(auth_server, alice)
    await dlg.cmd("MAIL FROM:<alice@example.org>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<friend@remote.example>", expect="250 2.1.5")
    await dlg.cmd("DATA", expect="354")
    dlg.send_raw(b"Subject: relayed\r\n\r\nto a remote domain\r\n.\r\n")
    queued = await dlg.expect("250 2.0.0 OK: queued as ")
    queue_id = queued[-1].rsplit(" ", 1)[1]
    await dlg.cmd("QUIT", expect="221")

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "postguard", "queue", "list", "--json",
        "--config", str(auth_server.data_dir / "postguard.toml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    [message] = [m for m in json.loads(out) if m["queue_id"] == queue_id]
    assert message["reverse_path"] == "alice@example.org"
    [rcpt] = message["recipients"]
    assert (rcpt["address"], rcpt["route"]) == ("friend@remote.example", "relay")
    assert rcpt["state"] not in ("delivered", "bounced")  # the relay does not exist yet


async def test_unauthenticated_mail_to_a_remote_domain_is_still_refused_on_mx(auth_server) -> None:
    dlg, _ = await over_starttls(auth_server, "mx")
    await dlg.cmd("MAIL FROM:<someone@example.net>", expect="250 2.1.0")
    await dlg.cmd("RCPT TO:<friend@remote.example>", expect="550 5.7.1 Relay access denied")
    await dlg.close()


async def test_received_says_esmtpsa_and_hides_the_account(auth_server, alice) -> None:
    dlg = await login_plain(auth_server, alice)
    await send_mail(dlg, "alice@localhost", ["test@localhost"])
    await dlg.close()
    [message] = await auth_server.wait_for_messages(1)
    received = received_header(message)
    assert " with ESMTPSA id " in received, received  # RFC 3848: ESMTP + TLS + AUTH
    assert "(using TLSv1.3 with cipher " in received, received
    assert "authenticated" not in received and "alice" not in received, received


async def test_a_submission_without_message_id_and_date_gets_both(auth_server, alice) -> None:
    """RFC 6409 §8.2, §8.3: the submission server completes what the client left out."""
    dlg = await login_plain(auth_server, alice)
    reply = await send_mail(
        dlg, "alice@localhost", ["test@localhost"], b"Subject: bare\r\n\r\nhi\r\n"
    )
    await dlg.close()
    queue_id = reply[-1].rsplit(" ", 1)[1]
    [message] = await auth_server.wait_for_messages(1)
    parsed = email.message_from_bytes(message)
    assert parsed.get_all("Message-ID") == [f"<{queue_id}@localhost>"], message[:600]
    [date] = parsed.get_all("Date")
    sent_at = email.utils.parsedate_to_datetime(date)
    assert sent_at.tzinfo is not None and abs(time.time() - sent_at.timestamp()) < 300, date
    assert message.endswith(b"Subject: bare\r\n\r\nhi\r\n")


async def test_a_submission_keeps_its_own_message_id_and_date(auth_server, alice) -> None:
    head = b"Date: Mon, 2 Nov 2026 10:00:00 +0100\r\nmessage-id: <own@client.test>\r\n"
    body = head + b"Subject: complete\r\n\r\nDate: not a header\r\n"
    dlg = await login_plain(auth_server, alice)
    await send_mail(dlg, "alice@localhost", ["test@localhost"], body)
    await dlg.close()
    [message] = await auth_server.wait_for_messages(1)
    parsed = email.message_from_bytes(message)
    assert parsed.get_all("Message-ID") == ["<own@client.test>"], message[:600]
    assert parsed.get_all("Date") == ["Mon, 2 Nov 2026 10:00:00 +0100"], message[:600]
    assert message.endswith(body)


async def test_mail_from_another_server_gets_no_message_id_or_date(auth_server) -> None:
    """RFC 5321 §6.4: only an originating or submission server may add them; on mx the
    message is passed on with just our Received header in front."""
    dlg, _ = await over_starttls(auth_server, "mx")
    await send_mail(dlg, "someone@example.net", ["test@localhost"], b"Subject: bare\r\n\r\nhi\r\n")
    await dlg.close()
    [message] = await auth_server.wait_for_messages(1)
    parsed = email.message_from_bytes(message)
    assert parsed.get_all("Message-ID") is None and parsed.get_all("Date") is None, message
    assert message.endswith(b"Subject: bare\r\n\r\nhi\r\n")


async def test_received_names_the_account_with_received_shows_identity(
    server_factory, accounts_file: Path, alice: TestAccount
) -> None:
    srv = await server_factory(auth_toml(accounts_file, received_shows_identity=True))
    dlg = await login_plain(srv, alice)
    await send_mail(dlg, "alice@localhost", ["test@localhost"])
    await dlg.close()
    [message] = await srv.wait_for_messages(1)
    received = received_header(message)
    assert "(authenticated sender: alice)" in received, received
    assert " with ESMTPSA id " in received, received


async def test_starttls_forgets_a_plaintext_authentication(
    server_factory, accounts_file: Path, alice: TestAccount
) -> None:
    srv = await server_factory(
        auth_toml(accounts_file), listener_toml={"submission": "allow_plaintext = true"}
    )
    dlg = await Dialogue.connect(srv.ports["submission"])
    await dlg.expect("220 ")
    await dlg.cmd(EHLO, expect="250 ")
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=AUTH_OK)
    await dlg.starttls(srv.client_tls())
    await dlg.cmd(EHLO, expect="250 ")
    try:
        await dlg.cmd("MAIL FROM:<alice@localhost>", expect=AUTH_REQUIRED)
    finally:
        await dlg.close()


# --------------------------------------------------------------------------------- logs


async def test_auth_logs_mechanism_account_client_and_outcome_but_never_the_password(
    auth_server, alice, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = [
        alice.password,
        WRONG_PASSWORD,
        plain(alice.name, alice.password),
        b64(alice.password),
        b64(WRONG_PASSWORD),
    ]
    with postguard_records(caplog) as records:
        dlg, _ = await over_starttls(auth_server)
        await dlg.cmd("AUTH LOGIN", expect=LOGIN_USERNAME)
        await dlg.cmd(b64(alice.name), expect=LOGIN_PASSWORD)
        await dlg.cmd(b64(WRONG_PASSWORD), expect=AUTH_FAILED)
        await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=AUTH_OK)
        await dlg.cmd("QUIT", expect="221")
        assert await dlg.is_closed()
        await dlg.close()
        captured = list(records)

    [failed] = events(captured, "auth.failed")
    assert failed["mechanism"] == "LOGIN"
    assert failed["account"] == "alice"
    assert failed["client"] == "127.0.0.1"
    assert failed["kind"] == "AUTH_FAILED"
    [succeeded] = events(captured, "auth.succeeded")
    assert (succeeded["mechanism"], succeeded["account"], succeeded["client"]) == (
        "PLAIN",
        "alice",
        "127.0.0.1",
    )
    assert failed["session"] == succeeded["session"]

    for record in captured:
        texts = [record.getMessage(), repr(record.args), repr(fields(record))]
        texts += [str(value) for value in fields(record).values()]
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"{secret!r} leaked in {record.getMessage()}: {text}"


# -------------------------------------------------------------------- accounts reloading


async def test_broken_accounts_file_on_reload_keeps_the_old_accounts(
    auth_server, alice, accounts_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with postguard_records(caplog) as records:
        # Replaced in one rename, as editors and `postguard user` do: the watcher must never
        # see a half-written (say, empty, hence valid) file.
        broken = accounts_file.with_name("broken.toml")
        broken.write_text('[account.alice\npassword = "oops', encoding="utf-8")
        broken.replace(accounts_file)
        refused = await wait_for_record(records, "accounts file not reloaded")
    assert refused.levelno == logging.ERROR
    assert "still using the previous 1 accounts" in refused.getMessage()
    dlg, ehlo = await over_starttls(auth_server)
    assert auth_line(ehlo) == "AUTH SCRAM-SHA-256 PLAIN LOGIN", ehlo
    await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=AUTH_OK)
    await dlg.close()


# ------------------------------------------------------------------------ brute force


async def test_each_failure_is_answered_after_a_growing_delay(
    server_factory, accounts_file: Path, alice: TestAccount
) -> None:
    # Lower bounds only: asyncio.sleep never returns early, so these cannot flake; no
    # upper bound is asserted (a loaded machine may be slower).
    srv = await server_factory(auth_toml(accounts_file, base_delay="200ms", max_delay="300ms"))
    dlg, _ = await over_starttls(srv)
    elapsed = []
    for _ in range(2):
        start = time.monotonic()
        await dlg.cmd(f"AUTH PLAIN {plain(alice.name, WRONG_PASSWORD)}", expect=AUTH_FAILED)
        elapsed.append(time.monotonic() - start)
    assert elapsed[0] >= 0.2 * 0.95, elapsed  # base_delay
    assert elapsed[1] >= 0.3 * 0.95, elapsed  # 2 * base_delay, capped at max_delay
    await dlg.close()


async def test_failures_from_one_ip_lock_it_out_with_421_even_on_new_connections(
    server_factory, accounts_file: Path, alice: TestAccount, caplog: pytest.LogCaptureFixture
) -> None:
    srv = await server_factory(
        auth_toml(accounts_file, max_failures_per_ip=3, max_failures_per_account=100)
    )
    with postguard_records(caplog) as records:
        dlg, _ = await over_starttls(srv)
        await dlg.cmd(f"AUTH PLAIN {plain(alice.name, WRONG_PASSWORD)}", expect=AUTH_FAILED)
        reply, _ = await scram_exchange(dlg, "nobody", WRONG_PASSWORD)  # another name
        assert reply == [AUTH_FAILED]
        await dlg.close()

        dlg, _ = await over_starttls(srv)
        # The third failure reaches the limit: answered with the cut-off, then closed.
        await dlg.cmd(f"AUTH PLAIN {plain(alice.name, WRONG_PASSWORD)}", expect=BLOCKED)
        assert await dlg.is_closed()
        await dlg.close()

        # A new connection from the same address: refused before any exchange, even with
        # the right password.
        dlg, _ = await over_starttls(srv)
        await dlg.cmd(f"AUTH PLAIN {plain(alice.name, alice.password)}", expect=BLOCKED)
        assert await dlg.is_closed()
        await dlg.close()
        captured = list(records)

    assert len(events(captured, "auth.failed")) == 3
    # One at the cut-off, one when the blocked address tried again on a new connection.
    at_cutoff, on_retry = events(captured, "auth.blocked")
    assert at_cutoff["client"] == on_retry["client"] == "127.0.0.1"
    assert on_retry["mechanism"] == "PLAIN"
    assert events(captured, "auth.succeeded") == []


async def scram_session(srv, user: str, password: str) -> list[str]:
    """One connection, one SCRAM attempt; the final reply. Cheap: no argon2."""
    dlg, _ = await over_starttls(srv)
    reply, _ = await scram_exchange(dlg, user, password)
    await dlg.close()
    return reply


@pytest.fixture
async def account_lock_server(server_factory, accounts_file: Path, alice: TestAccount):
    """Two failures lock an account; the client address limit is out of reach."""
    add_account(accounts_file, "bob", PASSWORD, addresses=["bob@localhost"])
    return await server_factory(
        auth_toml(accounts_file, max_failures_per_ip=100, max_failures_per_account=2)
    )


async def test_failures_for_one_account_across_sessions_lock_that_account(
    account_lock_server, alice
) -> None:
    srv = account_lock_server
    assert await scram_session(srv, alice.name, WRONG_PASSWORD) == [AUTH_FAILED]
    assert await scram_session(srv, alice.name, WRONG_PASSWORD) == [BLOCKED]
    assert await scram_session(srv, alice.name, "yet another wrong one") == [BLOCKED]
    # Only alice is locked: the address and other accounts are not.
    assert await scram_session(srv, "bob", PASSWORD) == [AUTH_OK]


async def test_a_locked_account_is_refused_even_with_the_right_password(
    account_lock_server, alice
) -> None:
    srv = account_lock_server
    assert await scram_session(srv, alice.name, WRONG_PASSWORD) == [AUTH_FAILED]
    assert await scram_session(srv, alice.name, WRONG_PASSWORD) == [BLOCKED]
    assert await scram_session(srv, alice.name, alice.password) == [BLOCKED]


# ------------------------------------------------------------------------------- OAuth


@pytest.fixture
def issuer(tmp_path: Path) -> OAuthIssuer:
    return OAuthIssuer.create(tmp_path / "idp")


@pytest.fixture
async def oauth_server(server_factory, accounts_file: Path, issuer: OAuthIssuer):
    """A server with [auth.oauth] (JWKS file) and an account owning the token's address."""
    add_account(accounts_file, "erin", PASSWORD, addresses=["erin@example.org"])
    return await server_factory(auth_toml(accounts_file, oauth=issuer.oauth_toml_keys()))


async def test_oauth_mechanisms_are_offered_with_auth_oauth(oauth_server) -> None:
    dlg, ehlo = await over_starttls(oauth_server)
    assert auth_line(ehlo) == "AUTH SCRAM-SHA-256 OAUTHBEARER XOAUTH2 PLAIN LOGIN", ehlo
    await dlg.close()


async def test_oauthbearer_with_a_valid_token_is_235(oauth_server, issuer: OAuthIssuer) -> None:
    token = issuer.token("erin@example.org")
    port = oauth_server.ports["submission"]
    client = OAuthBearerClient(None, token, host="localhost", port=port)
    dlg, _ = await over_starttls(oauth_server)
    await dlg.cmd(f"AUTH OAUTHBEARER {b64(client.initial_response())}", expect=AUTH_OK)
    await dlg.cmd("MAIL FROM:<erin@example.org>", expect="250 2.1.0")  # logged in as erin
    await dlg.close()


async def test_xoauth2_with_a_valid_token_is_235(oauth_server, issuer: OAuthIssuer) -> None:
    client = XOAuth2Client("erin@example.org", issuer.token("erin@example.org"))
    dlg, _ = await over_starttls(oauth_server)
    # Without an initial response: an empty challenge first, as XOAUTH2 clients expect.
    await dlg.cmd("AUTH XOAUTH2", expect="334")
    await dlg.cmd(b64(client.initial_response()), expect=AUTH_OK)
    await dlg.cmd("MAIL FROM:<bob@localhost>", expect="553 5.7.1")
    await dlg.close()


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
async def test_expired_token_gets_the_json_error_challenge_then_535(
    oauth_server, issuer: OAuthIssuer, mechanism: str
) -> None:
    token = issuer.token("erin@example.org", expires_in=-3600)
    client: OAuthBearerClient | XOAuth2Client
    if mechanism == "OAUTHBEARER":
        client = OAuthBearerClient("erin@example.org", token)
    else:
        client = XOAuth2Client("erin@example.org", token)
    dlg, _ = await over_starttls(oauth_server)
    challenge = await dlg.cmd(f"AUTH {mechanism} {b64(client.initial_response())}", expect="334 ")
    error = json.loads(base64.b64decode(challenge[-1][4:]))
    assert error == {"status": "invalid_token", "schemes": "bearer"}  # RFC 7628 §3.2.2
    dummy = client.respond(base64.b64decode(challenge[-1][4:]))  # %x01, or empty for XOAUTH2
    assert client.server_error == error
    await dlg.cmd(b64(dummy) if dummy else "", expect=AUTH_FAILED)
    await dlg.cmd("MAIL FROM:<erin@example.org>", expect=AUTH_REQUIRED)
    await dlg.close()


async def test_token_for_an_address_no_account_owns_is_refused(
    oauth_server, issuer: OAuthIssuer
) -> None:
    client = OAuthBearerClient(None, issuer.token("stranger@example.org"))
    dlg, _ = await over_starttls(oauth_server)
    challenge = await dlg.cmd(f"AUTH OAUTHBEARER {b64(client.initial_response())}", expect="334 ")
    assert json.loads(base64.b64decode(challenge[-1][4:]))["status"] == "invalid_token"
    await dlg.cmd(b64(b"\x01"), expect=AUTH_FAILED)
    await dlg.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_mechanism_switched_off_by_policy_is_534_too_weak(
    server_factory, accounts_file: Path, alice: TestAccount, mechanism: str
) -> None:
    """RFC 4954 §6: 534 5.7.9 when the mechanism is weaker than policy permits."""
    srv = await server_factory(auth_toml(accounts_file, mechanisms=["SCRAM-SHA-256"]))
    dlg, ehlo = await over_starttls(srv)
    assert auth_line(ehlo) is not None and "PLAIN" not in auth_line(ehlo)
    await dlg.cmd(f"AUTH {mechanism}", expect="534 5.7.9")
    await dlg.close()
