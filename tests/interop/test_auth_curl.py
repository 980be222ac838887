"""curl's SMTP client authenticating with ``--user`` and ``--login-options AUTH=...``.

Covers: ``AUTH=PLAIN`` and ``AUTH=LOGIN`` on submission (``smtp://`` with ``--ssl-reqd``,
so STARTTLS) and on submissions (``smtps://``), with and without ``--sasl-ir`` (initial
response); each delivers to test@localhost with ``ESMTPSA`` in Received. A wrong password
makes curl exit 67 (CURLE_LOGIN_DENIED) after 535 5.7.8. ``--mail-auth`` (MAIL's RFC 4954
§5 ``AUTH=`` parameter) is an expected failure: see the server bug in its reason.

curl runs as a child process of the test's event loop (see ``harness``). ``-q`` comes first
so a developer's ``~/.curlrc`` cannot change what is tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.accounts import assert_authenticated_delivery, start_auth_server
from interop.harness import MarkedMessage, assert_nothing_accepted, run_tool

pytestmark = pytest.mark.interop

CURLE_LOGIN_DENIED = 67  # curl(1), EXIT CODES


@pytest.fixture
async def auth_server(server_factory, tmp_path: Path):
    return await start_auth_server(server_factory, tmp_path / "accounts")


def curl_argv(
    curl: str, server, listener: str, sent: MarkedMessage, upload: Path, *options: str
) -> list[str]:
    port = server.ports[listener]
    if listener == "submissions":
        url = f"smtps://127.0.0.1:{port}/curl.client.test"
        tls: list[str] = []
    else:
        url = f"smtp://127.0.0.1:{port}/curl.client.test"
        tls = ["--ssl-reqd"]
    return [
        curl, "-q", "--silent", "--show-error", "--verbose",
        "--max-time", "20",
        "--url", url, *tls,
        "--cacert", str(server.ca),
        "--mail-from", sent.mail_from,
        "--mail-rcpt", sent.rcpt_to,
        "--upload-file", str(upload),
        *options,
    ]  # fmt: skip


@pytest.mark.parametrize("listener", ["submission", "submissions"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
@pytest.mark.parametrize("sasl_ir", [False, True], ids=["no-ir", "sasl-ir"])
async def test_curl_login_options_auth_is_delivered(
    curl, auth_server, tmp_path: Path, listener: str, mechanism: str, sasl_ir: bool
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("curl-auth")
    upload = sent.write(tmp_path / "message.eml")
    options = ["--user", f"{alice.name}:{alice.password}", "--login-options", f"AUTH={mechanism}"]
    if sasl_ir:
        options.append("--sasl-ir")
    result = await run_tool(*curl_argv(curl, server, listener, sent, upload, *options))
    assert result.returncode == 0, result.describe()
    assert "SSL connection using TLSv1.3" in result.stderr, result.describe()
    assert f"> AUTH {mechanism}" in result.stderr, result.describe()
    assert "< 235 2.7.0 Authentication successful" in result.stderr, result.describe()
    assert "< 250 2.0.0 OK: queued as " in result.stderr, result.describe()
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_curl_with_a_wrong_password_is_login_denied(
    curl, auth_server, tmp_path: Path
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("curl-auth")
    upload = sent.write(tmp_path / "message.eml")
    options = ["--user", f"{alice.name}:not-the-password", "--login-options", "AUTH=PLAIN"]
    result = await run_tool(*curl_argv(curl, server, "submissions", sent, upload, *options))
    assert result.returncode == CURLE_LOGIN_DENIED, result.describe()
    assert "< 535 5.7.8 Authentication credentials invalid" in result.stderr, result.describe()
    assert "> MAIL FROM" not in result.stderr, result.describe()
    assert_nothing_accepted(server)


async def test_curl_mail_auth_parameter_is_accepted(curl, auth_server, tmp_path: Path) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("curl-auth")
    upload = sent.write(tmp_path / "message.eml")
    options = ["--user", f"{alice.name}:{alice.password}", "--mail-auth", ""]
    result = await run_tool(*curl_argv(curl, server, "submissions", sent, upload, *options))
    assert "> MAIL FROM:<sender@example.org> AUTH=<>" in result.stderr, result.describe()
    assert result.returncode == 0, result.describe()
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)
