"""msmtp (a sendmail-compatible client on GnuTLS) against mx and submissions.

Covers: ``msmtp -t`` over STARTTLS with the development CA as its only trust
anchor (GnuTLS checks the chain and that the certificate covers 127.0.0.1),
delivered over TLS 1.3; and implicit TLS (``tls_starttls off``) to submissions
with ``auth off``, where MAIL gets 530 5.7.0 "Authentication required" and
msmtp exits non-zero (65, EX_DATAERR: envelope-from refused) with nothing
delivered.

msmtp runs as a child process of the test's event loop (see ``harness``). Each
test writes its own configuration file, mode 0600 as msmtp expects, and passes
it with ``-C`` so no system or user configuration is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from interop.harness import MarkedMessage, assert_delivered, assert_nothing_accepted, run_tool

pytestmark = pytest.mark.interop


def write_config(path: Path, *, port: int, ca: Path, starttls: bool, mail_from: str) -> Path:
    path.write_text(
        "defaults\n"
        "syslog off\n"
        "account default\n"
        "host 127.0.0.1\n"
        f"port {port}\n"
        "domain msmtp.client.test\n"
        "tls on\n"
        f"tls_starttls {'on' if starttls else 'off'}\n"
        f"tls_trust_file {ca}\n"
        "auth off\n"
        f"from {mail_from}\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


async def test_msmtp_starttls_is_delivered(msmtp, mail_server, tmp_path: Path) -> None:
    sent = MarkedMessage.new("msmtp")
    config = write_config(
        tmp_path / "msmtprc",
        port=mail_server.ports["mx"],
        ca=mail_server.ca,
        starttls=True,
        mail_from=sent.mail_from,
    )
    # msmtp -t reads a local-format message: LF line ends, recipients from To:.
    result = await run_tool(msmtp, "-C", str(config), "-t", stdin=sent.as_bytes(b"\n"))
    assert result.returncode == 0, result.describe()
    assert result.transcript == "", result.describe()
    assert_delivered(await mail_server.wait_for_messages(1), sent, tls="TLSv1.3")


async def test_msmtp_implicit_tls_to_submissions_fails_with_530(
    msmtp, mail_server, tmp_path: Path
) -> None:
    sent = MarkedMessage.new("msmtp")
    config = write_config(
        tmp_path / "msmtprc",
        port=mail_server.ports["submissions"],
        ca=mail_server.ca,
        starttls=False,
        mail_from=sent.mail_from,
    )
    result = await run_tool(msmtp, "-C", str(config), "-t", stdin=sent.as_bytes(b"\n"))
    assert result.returncode == os.EX_DATAERR, result.describe()
    envelope_refused = f"envelope from address {sent.mail_from} not accepted"
    assert envelope_refused in result.stderr, result.describe()
    assert "server message: 530 5.7.0 Authentication required" in result.stderr, result.describe()
    assert_nothing_accepted(mail_server)
