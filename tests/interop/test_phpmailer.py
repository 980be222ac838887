"""PHPMailer (Debian 12's 6.6.3 on PHP 8.2) sending through mx, submission and submissions.

Covers: ``SMTPSecure = 'tls'`` (STARTTLS) to mx with the development CA as the only trust
anchor and ``peer_name`` localhost, delivered over TLS 1.3 with PHPMailer's own MIME
(Subject and Message-ID intact); AUTH PLAIN, LOGIN and CRAM-MD5 with a password, and
XOAUTH2 with an ES256 token from :class:`OAuthIssuer`, on submission (STARTTLS) and
submissions (``SMTPSecure = 'ssl'``), each delivered with ``ESMTPSA`` in Received.

Refusals, each with nothing accepted: a wrong password (535 5.7.8); an expired token (the
334 JSON error challenge, then 535 5.7.8: PHPMailer does not expect the challenge and sends
``QUIT``, which the server reads as the client's dummy response); plaintext on submission,
where the EHLO offers no AUTH so PHPMailer gives up before sending any credentials, and
MAIL without AUTH gets 530 5.7.0; and a PHPMailer trusting only the system CAs, or
expecting another name, which aborts the handshake itself (the client verifies) and never
falls back to plaintext.

PHPMailer is a library, so ``clients/phpmailer/send.php`` drives it: the whole job,
password or token included, goes in as JSON on standard input (never on the command line),
the dialogue comes out on stderr and a JSON result on stdout. It runs as a child process of
the test's event loop (see ``harness``), as ``php -n`` so no php.ini (an ``openssl.cafile``
of a developer's, say) can change what is trusted.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers.accounts import (
    OAuthIssuer,
    TestAccount,
    assert_authenticated_delivery,
    start_auth_server,
)
from helpers.servers import InProcessServer, ServerInfo
from interop.conftest import missing
from interop.harness import (
    MarkedMessage,
    ToolResult,
    assert_delivered,
    assert_nothing_accepted,
    run_tool,
    split_message,
)

pytestmark = pytest.mark.interop

SEND_SCRIPT = Path(__file__).resolve().parent / "clients" / "phpmailer" / "send.php"
# Where Debian's libphp-phpmailer puts its autoloader (dpkg -L libphp-phpmailer).
AUTOLOAD = Path("/usr/share/php/libphp-phpmailer/autoload.php")
OAUTH_USER = "alice@example.org"
# send.php's exit status when PHPMailer reported a failure (2: the job itself was unusable).
PHPMAILER_FAILED = 1
# PHPMailer's implicit TLS is SMTPSecure 'ssl'; its STARTTLS is 'tls'.
AuthServer = tuple[InProcessServer, TestAccount]
SECURE = {"mx": "tls", "submission": "tls", "submissions": "ssl"}


@dataclass(frozen=True)
class PhpMailer:
    """``php`` and the script that drives PHPMailer."""

    php: str

    async def send(self, job: dict[str, Any]) -> tuple[ToolResult, dict[str, Any]]:
        """Run ``send.php`` with ``job`` on stdin; its exit status, output and JSON result."""
        result = await run_tool(
            # display_errors=stderr: a PHP warning must never land in the JSON on stdout.
            self.php, "-n", "-d", "display_errors=stderr", str(SEND_SCRIPT),
            stdin=json.dumps({"autoload": str(AUTOLOAD), **job}).encode(),
        )  # fmt: skip
        try:
            outcome = json.loads(result.stdout)
        except ValueError:
            raise AssertionError(f"send.php printed no JSON result\n{result.describe()}") from None
        assert isinstance(outcome, dict), result.describe()
        return result, outcome


@pytest.fixture
def phpmailer() -> PhpMailer:
    """php with its openssl extension, and Debian's PHPMailer."""
    php = shutil.which("php")
    if php is None:
        missing("'php' is not on PATH (Debian: apt-get install php-cli)")
    assert php is not None
    if not AUTOLOAD.is_file():
        missing(f"PHPMailer's autoloader {AUTOLOAD} is missing (Debian: libphp-phpmailer)")
    # Blocking is fine: tool fixtures are requested before any server is talked to.
    probe = subprocess.run(
        [php, "-n", "-r", "exit(defined('OPENSSL_ALGO_SHA256') ? 0 : 1);"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        missing("php has no openssl extension (Debian's php-cli builds it in)")
    return PhpMailer(php)


@pytest.fixture
async def auth_server(
    server_factory: Callable[..., Awaitable[InProcessServer]], tmp_path: Path, issuer: OAuthIssuer
) -> AuthServer:
    return await start_auth_server(
        server_factory, tmp_path / "accounts", cram_md5=True, oauth=issuer
    )


def make_job(
    server: ServerInfo, listener: str, sent: MarkedMessage, **overrides: Any
) -> dict[str, Any]:
    """A job for ``send.php`` (its header lists the keys): ``sent`` to ``listener``."""
    return {
        "host": "127.0.0.1",
        "port": server.ports[listener],
        "secure": SECURE[listener],
        "cafile": str(server.ca),
        "peer_name": "localhost",  # the development certificate covers localhost and 127.0.0.1
        "helo": "phpmailer.client.test",
        "mail_from": sent.mail_from,
        "rcpt_to": sent.rcpt_to,
        "subject": sent.subject,
        "body": sent.body_text,
        "timeout": 20,
        **overrides,
    }


def password_auth(mechanism: str, user: str, password: str) -> dict[str, str]:
    return {"type": mechanism, "user": user, "password": password}


def assert_sent(result: ToolResult, outcome: dict[str, Any]) -> None:
    assert result.returncode == 0, result.describe()
    assert outcome["ok"] is True, result.describe()
    assert "SERVER -> CLIENT: 250 2.0.0 OK: queued as " in result.stderr, result.describe()


def assert_failed(result: ToolResult, outcome: dict[str, Any], error: str) -> None:
    """PHPMailer failed with ``error`` in ErrorInfo, and never began a transaction."""
    assert result.returncode == PHPMAILER_FAILED, result.describe()
    assert outcome["ok"] is False, result.describe()
    assert error in outcome["error"], result.describe()
    assert "CLIENT -> SERVER: MAIL FROM" not in result.stderr, result.describe()


async def test_phpmailer_starttls_to_mx_is_delivered(
    phpmailer: PhpMailer, mail_server: InProcessServer
) -> None:
    sent = MarkedMessage.new("phpmailer")
    result, outcome = await phpmailer.send(make_job(mail_server, "mx", sent))
    assert_sent(result, outcome)
    assert "SERVER -> CLIENT: 220 2.0.0 Ready to start TLS" in result.stderr, result.describe()
    message = assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")
    # PHPMailer builds its own MIME from the fields; they arrive as it wrote them.
    header, _ = split_message(message)
    assert f"\r\nSubject: {sent.subject}\r\n".encode() in header, header
    assert f"\r\nMessage-ID: {outcome['message_id']}\r\n".encode() in header, header
    assert b"\r\nX-Mailer: PHPMailer 6." in header, header


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_phpmailer_password_auth_is_delivered(
    phpmailer: PhpMailer, auth_server: AuthServer, listener: str, mechanism: str
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("phpmailer-auth")
    auth = password_auth(mechanism, alice.name, alice.password)
    result, outcome = await phpmailer.send(make_job(server, listener, sent, auth=auth))
    assert_sent(result, outcome)
    # PHPMailer quietly picks another mechanism when the requested one is not offered.
    assert f"CLIENT -> SERVER: AUTH {mechanism}\n" in result.stderr, result.describe()
    assert "SERVER -> CLIENT: 235 2.7.0 Authentication successful" in result.stderr, (
        result.describe()
    )
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


@pytest.mark.parametrize("listener", ["submission", "submissions"])
async def test_phpmailer_xoauth2_is_delivered(
    phpmailer: PhpMailer, auth_server: AuthServer, issuer: OAuthIssuer, listener: str
) -> None:
    server, _ = auth_server
    sent = MarkedMessage.new("phpmailer-oauth")
    auth = {"type": "XOAUTH2", "user": OAUTH_USER, "token": issuer.token(OAUTH_USER)}
    result, outcome = await phpmailer.send(make_job(server, listener, sent, auth=auth))
    assert_sent(result, outcome)
    # The initial response (RFC 4954 §4) carries the token; send.php hides it in the log.
    assert "CLIENT -> SERVER: AUTH XOAUTH2 [credentials hidden]" in result.stderr, result.describe()
    assert "SERVER -> CLIENT: 235 2.7.0 Authentication successful" in result.stderr, (
        result.describe()
    )
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


@pytest.mark.parametrize("listener", ["submission", "submissions"])
async def test_phpmailer_with_a_wrong_password_fails_with_535(
    phpmailer: PhpMailer, auth_server: AuthServer, listener: str
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("phpmailer-auth")
    auth = password_auth("PLAIN", alice.name, "not-the-password")
    result, outcome = await phpmailer.send(make_job(server, listener, sent, auth=auth))
    assert_failed(result, outcome, "SMTP Error: Could not authenticate.")
    assert "SERVER -> CLIENT: 535 5.7.8 Authentication credentials invalid" in result.stderr, (
        result.describe()
    )
    assert_nothing_accepted(server)


async def test_phpmailer_xoauth2_with_an_expired_token_fails_with_535(
    phpmailer: PhpMailer, auth_server: AuthServer, issuer: OAuthIssuer
) -> None:
    server, _ = auth_server
    sent = MarkedMessage.new("phpmailer-oauth")
    token = issuer.token(OAUTH_USER, expires_in=-3600)
    auth = {"type": "XOAUTH2", "user": OAUTH_USER, "token": token}
    result, outcome = await phpmailer.send(make_job(server, "submissions", sent, auth=auth))
    assert_failed(result, outcome, "SMTP Error: Could not authenticate.")
    # The error challenge (RFC 7628 §3.2.2 style JSON, base64), which PHPMailer does not
    # expect: it sends QUIT, the server reads that as the (dummy) response and fails AUTH.
    challenge = re.search(r"^SERVER -> CLIENT: 334 (\S+)$", result.stderr, re.MULTILINE)
    assert challenge is not None, result.describe()
    error = json.loads(base64.b64decode(challenge[1], validate=True))
    assert error["status"] == "invalid_token", error
    assert "SERVER -> CLIENT: 535 5.7.8 Authentication credentials invalid" in result.stderr, (
        result.describe()
    )
    assert_nothing_accepted(server)


async def test_phpmailer_without_tls_is_offered_no_auth_on_submission(
    phpmailer: PhpMailer, auth_server: AuthServer
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("phpmailer-auth")
    auth = password_auth("PLAIN", alice.name, alice.password)
    result, outcome = await phpmailer.send(
        make_job(server, "submission", sent, secure="", auth=auth)
    )
    assert_failed(result, outcome, "SMTP Error: Could not authenticate.")
    # SECURITY (RFC 4954 §4, RFC 8314): no AUTH before TLS, so PHPMailer never sends the
    # password; the EHLO reply offers STARTTLS and nothing to log in with.
    ehlo = result.stderr.partition("CLIENT -> SERVER: EHLO phpmailer.client.test\n")[2]
    assert "\n250 STARTTLS\n" in ehlo, result.describe()
    assert "AUTH" not in ehlo, result.describe()
    assert "CLIENT -> SERVER: STARTTLS" not in result.stderr, result.describe()
    assert_nothing_accepted(server)


async def test_phpmailer_without_tls_mail_on_submission_is_530(
    phpmailer: PhpMailer, auth_server: AuthServer
) -> None:
    server, _ = auth_server
    sent = MarkedMessage.new("phpmailer")
    result, outcome = await phpmailer.send(make_job(server, "submission", sent, secure=""))
    assert result.returncode == PHPMAILER_FAILED, result.describe()
    assert "MAIL FROM command failed" in outcome["error"], result.describe()
    assert "SERVER -> CLIENT: 530 5.7.0 Must issue a STARTTLS command first" in result.stderr, (
        result.describe()
    )
    assert "CLIENT -> SERVER: RCPT TO" not in result.stderr, result.describe()
    assert_nothing_accepted(server)


@pytest.mark.parametrize(
    ("trust", "openssl_error"),
    [
        ({"cafile": None}, "certificate verify failed"),
        (
            {"peer_name": "mail.example.net"},
            "Peer certificate subjectAltName did not match expected name `mail.example.net'",
        ),
    ],
    ids=["system-cas-only", "other-peer-name"],
)
@pytest.mark.parametrize("listener", ["mx", "submissions"])
async def test_phpmailer_refuses_a_certificate_it_cannot_verify(
    phpmailer: PhpMailer,
    auth_server: AuthServer,
    listener: str,
    trust: dict[str, Any],
    openssl_error: str,
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("phpmailer")
    # With AUTH on submissions: were the handshake to succeed, the message would arrive.
    auth = password_auth("PLAIN", alice.name, alice.password) if listener != "mx" else None
    result, outcome = await phpmailer.send(make_job(server, listener, sent, auth=auth, **trust))
    assert_failed(result, outcome, "SMTP Error: Could not connect to SMTP host.")
    assert openssl_error in result.stderr, result.describe()
    assert "CLIENT -> SERVER: AUTH" not in result.stderr, result.describe()
    assert_nothing_accepted(server)
