"""The mechanism registry: names, their strength order, and one factory per half.

Strength order (:data:`STRENGTH_ORDER`, strongest first) and why:

1. ``SCRAM-SHA-256-PLUS`` — the server never sees the password (only a salted verifier), the
   server proves itself too, and the exchange is bound to this TLS channel (RFC 9266), so a
   man in the middle with a mis-issued certificate still cannot relay it.
2. ``SCRAM-SHA-256`` — the same without the channel binding.
3. ``OAUTHBEARER`` / 4. ``XOAUTH2`` — no password at all; a scoped, expiring token, which is
   still a bearer secret the server sees (XOAUTH2 is the non-standard predecessor).
5. ``CRAM-MD5`` — the password does not cross the wire, but the server must store a
   plaintext-equivalent secret and an eavesdropper can brute-force one exchange offline.
6. ``PLAIN`` / 7. ``LOGIN`` — fine on the wire under TLS, but they hand the password itself
   to the server (and to anyone who controls it). LOGIN is non-standard; PLAIN wins a tie.

Factories take one context object so a caller can build any mechanism the same way. A fresh
mechanism is needed for every AUTH command; the contexts carry per-exchange nonces.

Must not: do I/O or make randomness; decide policy (which mechanisms a listener offers is
configuration, whether TLS is required is the session's job).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .base import SaslClientMechanism, SaslServerMechanism
from .cram_md5 import CRAM_MD5, CramMd5Client, CramMd5Server
from .login import LOGIN, LoginClient, LoginServer
from .oauthbearer import OAUTHBEARER, OAuthBearerClient, OAuthBearerServer
from .plain import PLAIN, PlainClient, PlainServer
from .scram import MIN_SCRAM_ITERATIONS, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramClient, ScramServer
from .xoauth2 import XOAUTH2, XOAuth2Client, XOAuth2Server

STRENGTH_ORDER: tuple[str, ...] = (
    SCRAM_SHA_256_PLUS,
    SCRAM_SHA_256,
    OAUTHBEARER,
    XOAUTH2,
    CRAM_MD5,
    PLAIN,
    LOGIN,
)
_PASSWORD_MECHANISMS = frozenset({SCRAM_SHA_256_PLUS, SCRAM_SHA_256, CRAM_MD5, PLAIN, LOGIN})
_TOKEN_MECHANISMS = frozenset({OAUTHBEARER, XOAUTH2})


@dataclass(frozen=True, slots=True)
class SaslServerContext:
    """What a server mechanism needs from the session, fresh for every AUTH.

    Attributes:
        hostname: the server's host name (CRAM-MD5 challenge).
        nonce: fresh randomness, e.g. ``secrets.token_urlsafe(18)`` (CRAM-MD5, SCRAM).
        timestamp: the current time in whole seconds (CRAM-MD5 challenge).
        mock_seed: persistent server secret for SCRAM's unknown-user credentials.
        channel_binding: the connection's ``tls-exporter`` value, or None (no -PLUS).
        mock_iterations: the account store's SCRAM iteration count for new accounts.
    """

    hostname: str
    nonce: str
    timestamp: int
    mock_seed: bytes = field(repr=False)
    channel_binding: bytes | None = field(default=None, repr=False)
    mock_iterations: int = MIN_SCRAM_ITERATIONS


@dataclass(frozen=True, slots=True)
class SaslCredentials:
    """What a client authenticates with: a password, a token, or both."""

    username: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    authzid: str | None = None


@dataclass(frozen=True, slots=True)
class SaslClientContext:
    """Per-exchange client inputs: a fresh nonce, the channel binding, the server address."""

    nonce: str
    channel_binding: bytes | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None


ServerMechanismFactory = Callable[[SaslServerContext], SaslServerMechanism]
ClientMechanismFactory = Callable[[SaslCredentials, SaslClientContext], SaslClientMechanism]


def _scram_server(context: SaslServerContext, *, plus: bool) -> ScramServer:
    return ScramServer(
        nonce=context.nonce,
        mock_seed=context.mock_seed,
        channel_binding=context.channel_binding,
        plus=plus,
        mock_iterations=context.mock_iterations,
    )


SERVER_MECHANISMS: Mapping[str, ServerMechanismFactory] = MappingProxyType(
    {
        SCRAM_SHA_256_PLUS: lambda ctx: _scram_server(ctx, plus=True),
        SCRAM_SHA_256: lambda ctx: _scram_server(ctx, plus=False),
        OAUTHBEARER: lambda ctx: OAuthBearerServer(),
        XOAUTH2: lambda ctx: XOAuth2Server(),
        CRAM_MD5: lambda ctx: CramMd5Server(
            nonce=ctx.nonce, timestamp=ctx.timestamp, hostname=ctx.hostname
        ),
        PLAIN: lambda ctx: PlainServer(),
        LOGIN: lambda ctx: LoginServer(),
    }
)


def _password(credentials: SaslCredentials) -> str:
    if credentials.password is None:
        raise ValueError("this mechanism needs a password")
    return credentials.password


def _token(credentials: SaslCredentials) -> str:
    if credentials.token is None:
        raise ValueError("this mechanism needs a token")
    return credentials.token


def _scram_client(cred: SaslCredentials, ctx: SaslClientContext, *, plus: bool) -> ScramClient:
    return ScramClient(
        cred.username,
        _password(cred),
        nonce=ctx.nonce,
        channel_binding=ctx.channel_binding,
        plus=plus,
        authzid=cred.authzid,
    )


CLIENT_MECHANISMS: Mapping[str, ClientMechanismFactory] = MappingProxyType(
    {
        SCRAM_SHA_256_PLUS: lambda cred, ctx: _scram_client(cred, ctx, plus=True),
        SCRAM_SHA_256: lambda cred, ctx: _scram_client(cred, ctx, plus=False),
        OAUTHBEARER: lambda cred, ctx: OAuthBearerClient(
            cred.authzid or cred.username, _token(cred), host=ctx.host, port=ctx.port
        ),
        XOAUTH2: lambda cred, ctx: XOAuth2Client(cred.username, _token(cred)),
        CRAM_MD5: lambda cred, ctx: CramMd5Client(cred.username, _password(cred)),
        PLAIN: lambda cred, ctx: PlainClient(cred.username, _password(cred), authzid=cred.authzid),
        LOGIN: lambda cred, ctx: LoginClient(cred.username, _password(cred)),
    }
)


def advertised_mechanisms(
    enabled: Iterable[str], *, channel_binding_available: bool
) -> tuple[str, ...]:
    """The mechanisms to list after ``AUTH`` in EHLO, strongest first.

    SECURITY: -PLUS is listed exactly when SCRAM-SHA-256 is enabled and this connection has a
    ``tls-exporter`` value, because :class:`ScramServer` treats a client's ``y`` flag as a
    downgrade whenever it holds channel binding (RFC 5802 §6); the two must agree.

    Raises:
        ValueError: an unknown mechanism name (a configuration error).
    """
    names = {name.upper() for name in enabled}
    unknown = names - set(STRENGTH_ORDER)
    if unknown:
        raise ValueError(f"unknown SASL mechanism(s): {', '.join(sorted(unknown))}")
    names.discard(SCRAM_SHA_256_PLUS)
    if channel_binding_available and SCRAM_SHA_256 in names:
        names.add(SCRAM_SHA_256_PLUS)
    return tuple(name for name in STRENGTH_ORDER if name in names)


def choose_client_mechanism(
    offered: Iterable[str], credentials: SaslCredentials, context: SaslClientContext
) -> str | None:
    """The strongest mechanism the server offers that these credentials can use, or None."""
    offered_names = {name.upper() for name in offered}
    for name in STRENGTH_ORDER:
        if name not in offered_names:
            continue
        if name == SCRAM_SHA_256_PLUS and context.channel_binding is None:
            continue
        if name in _PASSWORD_MECHANISMS and credentials.password is not None:
            return name
        if name in _TOKEN_MECHANISMS and credentials.token is not None:
            return name
    return None
