"""Nodemailer (Node.js) sending through mx, submission and submissions.

Covers: ``requireTLS`` STARTTLS to mx with the development CA as the only trust anchor
(by IP address, and with ``servername: "localhost"``), delivered over TLS 1.3, and
``ignoreTLS`` to mx, delivered as plain ESMTP; AUTH PLAIN, LOGIN, CRAM-MD5 and XOAUTH2
(an ES256 token from :class:`OAuthIssuer`), and with no ``authMethod`` (Nodemailer then
picks PLAIN: it has no SCRAM), on submission (STARTTLS) and submissions (``secure:
true``), delivered with ``ESMTPSA``; a wrong password and an expired token
fail with 535 5.7.8; ``ignoreTLS`` on submission gets 530 5.7.0 "Must issue a STARTTLS
command first" at MAIL (and at AUTH with ``forceAuth``); and Nodemailer refuses the
certificate without the development CA, or when it is asked for a name the certificate
does not cover, before any mail command. Every refusal leaves nothing delivered or queued.

Nodemailer runs as a child process of the test's event loop (see ``harness``): ``node
clients/nodemailer/send.mjs`` reads its whole job as JSON on stdin (a password or token
never is an argument) and prints one JSON result, including the SMTP dialogue from
Nodemailer's transaction log. The message goes through Nodemailer's ``raw`` option, so the
bytes :class:`MarkedMessage` made are the bytes delivered after our trace headers.

Nodemailer is pinned in ``clients/nodemailer/package-lock.json``; ``npm ci --prefix
tests/interop/clients/nodemailer`` installs it (``.ci/run`` does).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.accounts import OAuthIssuer, assert_authenticated_delivery, start_auth_server
from interop.conftest import missing, require_tool
from interop.harness import (
    MarkedMessage,
    ToolResult,
    assert_delivered,
    assert_nothing_accepted,
    run_tool,
)

pytestmark = pytest.mark.interop

CLIENT_DIR = Path(__file__).resolve().parent / "clients" / "nodemailer"
SEND_SCRIPT = CLIENT_DIR / "send.mjs"
HOST = "127.0.0.1"
OAUTH_USER = "alice@example.org"
# Below harness.TOOL_TIMEOUT_SECONDS, so a stuck session ends in Nodemailer's own error.
CLIENT_TIMEOUT_MS = 20_000
QUEUED = "250 2.0.0 OK: queued as "
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
CREDENTIALS_INVALID = "535 5.7.8 Authentication credentials invalid"


@pytest.fixture
def nodemailer() -> str:
    """``node``, once Nodemailer is installed beside ``send.mjs``; else the interop rule."""
    node = require_tool("node")
    if not (CLIENT_DIR / "node_modules" / "nodemailer" / "package.json").is_file():
        missing(
            f"Nodemailer is not installed in {CLIENT_DIR} "
            "(npm ci --prefix tests/interop/clients/nodemailer)"
        )
    return node


@pytest.fixture
async def auth_server(server_factory, tmp_path: Path, issuer: OAuthIssuer):
    return await start_auth_server(
        server_factory, tmp_path / "accounts", cram_md5=True, oauth=issuer
    )


@dataclass(frozen=True)
class Outcome:
    """What ``send.mjs`` reported, and the process that reported it."""

    tool: ToolResult
    report: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.report["ok"])

    @property
    def error(self) -> dict[str, Any]:
        assert not self.ok, self.describe()
        error: dict[str, Any] = self.report["error"]
        return error

    @property
    def transcript(self) -> list[str]:
        lines: list[str] = self.report.get("transcript", [])
        return lines

    def sent(self, prefix: str) -> bool:
        """Whether the client sent a command line starting with ``prefix``."""
        return any(line.startswith(f"C: {prefix}") for line in self.transcript)

    def describe(self) -> str:
        return self.tool.describe()


async def send(node: str, sent: MarkedMessage, **job: Any) -> Outcome:
    """Run ``send.mjs`` with ``job`` (plus the envelope and raw message of ``sent``) on stdin.

    Asserts the exit status agrees with the printed result (0 when sent, 1 when not).
    """
    job = {
        "host": HOST,
        "envelope": {"from": sent.mail_from, "to": [sent.rcpt_to]},
        "raw": sent.as_bytes().decode("utf-8"),
        "timeoutMs": CLIENT_TIMEOUT_MS,
        **job,
    }
    tool = await run_tool(node, str(SEND_SCRIPT), stdin=json.dumps(job).encode("utf-8"))
    lines = tool.stdout.strip().splitlines()
    assert lines, tool.describe()
    report = json.loads(lines[-1])
    outcome = Outcome(tool, report)
    assert tool.returncode == (0 if outcome.ok else 1), outcome.describe()
    return outcome


def assert_sent(outcome: Outcome, sent: MarkedMessage) -> None:
    """Nodemailer's own account of a successful send."""
    assert outcome.ok, outcome.describe()
    assert outcome.report["accepted"] == [sent.rcpt_to], outcome.describe()
    assert outcome.report["rejected"] == [], outcome.describe()
    assert outcome.report["response"].startswith(QUEUED), outcome.describe()


def assert_raw_bytes_kept(message: bytes, sent: MarkedMessage) -> None:
    """What we stored after our Return-Path and Received is exactly what the test made."""
    assert message.endswith(sent.as_bytes()), message[-600:]


@pytest.mark.parametrize(
    ("tls_options", "tls"),
    [
        ({"requireTLS": True}, "TLSv1.3"),
        ({"requireTLS": True, "servername": "localhost"}, "TLSv1.3"),
        ({"ignoreTLS": True}, None),
    ],
    ids=["require-tls", "require-tls-sni-localhost", "ignore-tls"],
)
async def test_nodemailer_to_mx_is_delivered(
    nodemailer, mail_server, tls_options: dict[str, Any], tls: str | None
) -> None:
    sent = MarkedMessage.new("nodemailer")
    outcome = await send(
        nodemailer, sent, port=mail_server.ports["mx"], ca=str(mail_server.ca), **tls_options
    )
    assert_sent(outcome, sent)
    assert outcome.sent("STARTTLS") == (tls is not None), outcome.describe()
    message = assert_delivered(await mail_server.wait_for_messages(1), sent, tls=tls)
    assert_raw_bytes_kept(message, sent)


def auth_job(
    mechanism: str, alice, issuer: OAuthIssuer, *, password: str | None = None, **token: Any
) -> dict[str, Any]:
    """Nodemailer's ``auth`` and ``authMethod`` for ``mechanism`` ("default": Nodemailer picks).

    Args:
        mechanism: PLAIN, LOGIN, CRAM-MD5, XOAUTH2 (a token for alice@example.org), or default.
        alice: The account from :func:`start_auth_server`.
        issuer: Signs XOAUTH2 tokens.
        password: Instead of alice's (a wrong one).
        token: Keywords for :meth:`OAuthIssuer.token` (``expires_in``).
    """
    if mechanism == "XOAUTH2":
        access_token = issuer.token(OAUTH_USER, **token)
        return {"auth": {"type": "OAuth2", "user": OAUTH_USER, "accessToken": access_token}}
    job: dict[str, Any] = {"auth": {"user": alice.name, "pass": password or alice.password}}
    if mechanism != "default":
        job["authMethod"] = mechanism
    return job


def listener_job(server, listener: str) -> dict[str, Any]:
    """Where to connect and how to reach TLS: STARTTLS on submission, implicit on submissions."""
    tls = {"secure": True} if listener == "submissions" else {"requireTLS": True}
    return {"port": server.ports[listener], "ca": str(server.ca), **tls}


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize(
    ("mechanism", "command"),
    [
        ("PLAIN", "AUTH PLAIN "),  # with the initial response (RFC 4954 §4)
        ("LOGIN", "AUTH LOGIN"),
        ("CRAM-MD5", "AUTH CRAM-MD5"),
        ("XOAUTH2", "AUTH XOAUTH2 "),
        # Nodemailer's first choice among the advertised mechanisms it knows (it has no SCRAM).
        ("default", "AUTH PLAIN "),
    ],
    ids=["plain", "login", "cram-md5", "xoauth2", "default"],
)
async def test_nodemailer_auth_is_delivered(
    nodemailer, auth_server, issuer: OAuthIssuer, listener: str, mechanism: str, command: str
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("nodemailer-auth")
    job = {**listener_job(server, listener), **auth_job(mechanism, alice, issuer)}
    outcome = await send(nodemailer, sent, **job)
    assert_sent(outcome, sent)
    assert outcome.sent(command), outcome.describe()
    assert outcome.sent("STARTTLS") == (listener == "submission"), outcome.describe()
    assert "S: 235 2.7.0 Authentication successful" in outcome.transcript, outcome.describe()
    message = assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)
    assert_raw_bytes_kept(message, sent)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"], ids=str.lower)
async def test_nodemailer_with_bad_credentials_fails_with_535(
    nodemailer, auth_server, issuer: OAuthIssuer, mechanism: str
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("nodemailer-auth")
    # A wrong password; for XOAUTH2, a token that expired an hour ago.
    bad = auth_job(mechanism, alice, issuer, password="not-the-password", expires_in=-3600)
    outcome = await send(nodemailer, sent, **listener_job(server, "submissions"), **bad)
    error = outcome.error
    assert error["code"] == "EAUTH", outcome.describe()
    assert error["command"] == f"AUTH {mechanism}", outcome.describe()
    assert error["responseCode"] == 535, outcome.describe()
    assert error["response"] == CREDENTIALS_INVALID, outcome.describe()
    if mechanism == "XOAUTH2":
        # First the error challenge, a base64 JSON status, which the client answers with an
        # empty line; then 535.
        challenges = [line[len("S: 334 ") :] for line in outcome.transcript if "S: 334 " in line]
        assert challenges, outcome.describe()
        status = json.loads(base64.b64decode(challenges[0]))
        assert status["status"] == "invalid_token", status
    assert not outcome.sent("MAIL FROM"), outcome.describe()
    assert_nothing_accepted(server)


@pytest.mark.parametrize(
    ("force_auth", "command", "code"),
    [(False, "MAIL FROM", "EENVELOPE"), (True, "AUTH PLAIN", "EAUTH")],
    ids=["mail", "force-auth"],
)
async def test_nodemailer_ignore_tls_on_submission_is_530_starttls_first(
    nodemailer, auth_server, force_auth: bool, command: str, code: str
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("nodemailer-auth")
    outcome = await send(
        nodemailer,
        sent,
        port=server.ports["submission"],
        ignoreTLS=True,
        forceAuth=force_auth,
        auth={"user": alice.name, "pass": alice.password},
        authMethod="PLAIN",
    )
    error = outcome.error
    assert error["code"] == code, outcome.describe()
    assert error["command"] == command, outcome.describe()
    assert error["responseCode"] == 530, outcome.describe()
    assert error["response"] == STARTTLS_FIRST, outcome.describe()
    assert not outcome.sent("STARTTLS"), outcome.describe()
    # Without forceAuth Nodemailer only logs in when AUTH is advertised: it was not, in plaintext.
    assert outcome.sent("AUTH") == force_auth, outcome.describe()
    # PIPELINING was advertised, so Nodemailer sends MAIL, RCPT and DATA at once: every
    # reply after EHLO's is the refusal, and the message itself is never sent.
    replies = [line for line in outcome.transcript if line.startswith("S: ")][2:]
    assert replies and set(replies) == {f"S: {STARTTLS_FIRST}"}, outcome.describe()
    assert_nothing_accepted(server)


# The server sends its certificate alone (the development CA is a trust anchor, not part
# of the chain), so without that CA Node cannot find the issuer of the first certificate.
@pytest.mark.parametrize(
    ("listener", "trust", "tls_error"),
    [
        ("mx", {}, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
        ("submissions", {}, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
        ("mx", {"servername": "mail.example.org"}, "ERR_TLS_CERT_ALTNAME_INVALID"),
    ],
    ids=["mx-without-dev-ca", "submissions-without-dev-ca", "mx-dev-ca-wrong-name"],
)
async def test_nodemailer_refuses_an_unverified_certificate(
    nodemailer, mail_server, listener: str, trust: dict[str, Any], tls_error: str
) -> None:
    sent = MarkedMessage.new("nodemailer")
    job: dict[str, Any] = {"port": mail_server.ports[listener], "ca": None}
    if "servername" in trust:
        # The chain verifies against the development CA; only the name is wrong.
        job.update(ca=str(mail_server.ca), servername=trust["servername"])
    if listener == "submissions":
        job["secure"] = True
        commands: list[str] = []  # the handshake comes before the greeting
    else:
        job["requireTLS"] = True
        commands = ["C: EHLO nodemailer.client.test", "C: STARTTLS"]
    outcome = await send(nodemailer, sent, **job)
    error = outcome.error
    assert error["code"] == "ESOCKET", outcome.describe()
    assert error["originalCode"] == tls_error, outcome.describe()
    assert error["responseCode"] is None, outcome.describe()
    # Nothing is said over a session whose certificate failed: no EHLO, AUTH or MAIL.
    assert [line for line in outcome.transcript if line.startswith("C: ")] == commands, (
        outcome.describe()
    )
    assert_nothing_accepted(mail_server)
