"""curl's SMTP support against mx (``smtp://`` + ``--ssl-reqd``) and submissions (``smtps://``).

Covers: an upload over STARTTLS, required by the client and verified against
the development CA (curl checks the name too: the certificate covers
127.0.0.1), delivered over TLS 1.3; and ``smtps://`` to submissions without
credentials, where MAIL gets 530 and curl exits 55 (CURLE_SEND_ERROR, "MAIL
failed: 530") with nothing delivered.

curl runs as a child process of the test's event loop (see ``harness``). ``-q``
comes first so a developer's ``~/.curlrc`` cannot change what is tested.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from interop.harness import MarkedMessage, assert_delivered, assert_nothing_accepted, run_tool

pytestmark = pytest.mark.interop

CURLE_SEND_ERROR = 55  # curl(1), EXIT CODES


def curl_argv(curl: str, url: str, ca: Path, sent: MarkedMessage, upload: Path) -> list[str]:
    return [
        curl, "-q", "--silent", "--show-error", "--verbose",
        "--max-time", "20",
        "--url", url,
        "--cacert", str(ca),
        "--mail-from", sent.mail_from,
        "--mail-rcpt", sent.rcpt_to,
        "--upload-file", str(upload),
    ]  # fmt: skip


async def test_curl_smtp_with_ssl_reqd_is_delivered(curl, mail_server, tmp_path: Path) -> None:
    sent = MarkedMessage.new("curl")
    upload = sent.write(tmp_path / "message.eml")
    url = f"smtp://127.0.0.1:{mail_server.ports['mx']}/curl.client.test"
    result = await run_tool(*curl_argv(curl, url, mail_server.ca, sent, upload), "--ssl-reqd")
    assert result.returncode == 0, result.describe()
    assert "> STARTTLS" in result.stderr, result.describe()
    assert "SSL connection using TLSv1.3" in result.stderr, result.describe()
    assert "< 250 2.0.0 OK: queued as " in result.stderr, result.describe()
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")


async def test_curl_smtps_to_submissions_fails_with_530(curl, mail_server, tmp_path: Path) -> None:
    sent = MarkedMessage.new("curl")
    upload = sent.write(tmp_path / "message.eml")
    url = f"smtps://127.0.0.1:{mail_server.ports['submissions']}/curl.client.test"
    result = await run_tool(*curl_argv(curl, url, mail_server.ca, sent, upload))
    assert result.returncode == CURLE_SEND_ERROR, result.describe()
    assert "< 530 5.7.0 Authentication required" in result.stderr, result.describe()
    assert "MAIL failed: 530" in result.stderr, result.describe()
    assert "> RCPT TO" not in result.stderr, result.describe()
    assert_nothing_accepted(mail_server)
