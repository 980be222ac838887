"""aiosmtplib authenticating with PLAIN (``login``) and XOAUTH2 (its ``auth_xoauth2``).

Covers: ``SMTP.auth_plain`` over STARTTLS to submission (after checking the advertised
mechanisms), and ``send(username=, password=, use_tls=True)`` to submissions, where
aiosmtplib's ``login`` takes PLAIN, the first offered one it implements; XOAUTH2 with an
ES256 token through ``send(oauth_token_generator=...)`` and through ``SMTP.auth_xoauth2``
(the JSON error challenge for an expired token, answered with an empty line, then 535
5.7.8); each successful session delivers to test@localhost with ``ESMTPSA`` in Received.

aiosmtplib is asyncio-native, so it runs in the test's own event loop beside the in-process
server (see ``harness``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.accounts import OAuthIssuer, assert_authenticated_delivery, start_auth_server
from interop.harness import MarkedMessage, assert_nothing_accepted

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
CLIENT_TIMEOUT_SECONDS = 20.0
OAUTH_USER = "alice@example.org"


@pytest.fixture
async def auth_server(server_factory, tmp_path: Path, issuer: OAuthIssuer):
    return await start_auth_server(server_factory, tmp_path / "accounts", oauth=issuer)


async def test_aiosmtplib_plain_login_over_starttls_is_delivered(aiosmtplib, auth_server) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("aiosmtplib-plain")
    client = aiosmtplib.SMTP(
        hostname=HOST,
        port=server.ports["submission"],
        local_hostname="aiosmtplib.client.test",
        start_tls=True,
        tls_context=server.client_tls(),
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    async with client:
        await client.ehlo()  # aiosmtplib forgets the extensions at STARTTLS (RFC 3207 §4.2)
        assert client.supports_extension("auth")
        assert client.server_auth_methods == [
            "scram-sha-256", "oauthbearer", "xoauth2", "plain", "login"
        ]  # fmt: skip
        response = await client.auth_plain(alice.name, alice.password)
        assert (response.code, response.message) == (235, "2.7.0 Authentication successful")
        errors, last = await client.sendmail(sent.mail_from, [sent.rcpt_to], sent.as_bytes())
    assert errors == {}
    assert last.startswith("2.0.0 OK: queued as "), last
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_aiosmtplib_send_with_credentials_over_implicit_tls_is_delivered(
    aiosmtplib, auth_server
) -> None:
    server, alice = auth_server
    sent = MarkedMessage.new("aiosmtplib-send")
    # ``login`` tries each offered mechanism it implements (CRAM-MD5, PLAIN, LOGIN): PLAIN.
    errors, last = await aiosmtplib.send(
        sent.as_bytes(),
        sender=sent.mail_from,
        recipients=[sent.rcpt_to],
        hostname=HOST,
        port=server.ports["submissions"],
        local_hostname="aiosmtplib.client.test",
        use_tls=True,
        tls_context=server.client_tls(),
        username=alice.name,
        password=alice.password,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    assert errors == {}
    assert last.startswith("2.0.0 OK: queued as "), last
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_aiosmtplib_xoauth2_token_generator_is_delivered(
    aiosmtplib, auth_server, issuer: OAuthIssuer
) -> None:
    server, _ = auth_server
    sent = MarkedMessage.new("aiosmtplib-xoauth2")

    async def token() -> str:
        return issuer.token(OAUTH_USER)

    errors, last = await aiosmtplib.send(
        sent.as_bytes(),
        sender=OAUTH_USER,
        recipients=[sent.rcpt_to],
        hostname=HOST,
        port=server.ports["submission"],
        local_hostname="aiosmtplib.client.test",
        start_tls=True,
        tls_context=server.client_tls(),
        username=OAUTH_USER,
        oauth_token_generator=token,
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    assert errors == {}
    assert last.startswith("2.0.0 OK: queued as "), last
    assert_authenticated_delivery(await server.wait_for_messages(1), sent.marker)


async def test_aiosmtplib_xoauth2_with_an_expired_token_is_535(
    aiosmtplib, auth_server, issuer: OAuthIssuer
) -> None:
    server, _ = auth_server
    client = aiosmtplib.SMTP(
        hostname=HOST,
        port=server.ports["submissions"],
        use_tls=True,
        tls_context=server.client_tls(),
        timeout=CLIENT_TIMEOUT_SECONDS,
    )
    async with client:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failed:
            await client.auth_xoauth2(OAUTH_USER, issuer.token(OAUTH_USER, expires_in=-3600))
        assert failed.value.code == 535
        assert failed.value.message == "5.7.8 Authentication credentials invalid"
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail(OAUTH_USER)
        assert refused.value.code == 530
    assert_nothing_accepted(server)
