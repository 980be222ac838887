"""SMTP AUTH mechanisms (RFC 4954) as sans-IO state machines, server and client halves.

The server session creates one server mechanism per ``AUTH`` command
(``SERVER_MECHANISMS[name](context)``) and drives it: ``start`` → :class:`Challenge` (send
334) / ``Need...`` (verify outside, then ``resume``) → :class:`Success` (235) or
:class:`Failure` (535/501/454 by :class:`FailureKind`). The full contract is in
:mod:`postguard.sasl.base`; the strength order and the factories in
:mod:`postguard.sasl.registry`.

Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195),
SCRAM-SHA-256 and -PLUS (RFC 5802, 7677, 9266), XOAUTH2 (Google), OAUTHBEARER (RFC 7628).

Must not: import asyncio, socket, ssl, selectors, time, random, os or logging (STYLE.md §2);
nonces, timestamps and seeds are injected. Base64 and the ``334``/``*`` line handling belong
to the session: mechanisms see decoded bytes.
"""

from __future__ import annotations

from .base import (
    MAX_IDENTITY_OCTETS,
    MAX_RESPONSE_OCTETS,
    Challenge,
    CramLookup,
    Failure,
    FailureKind,
    NeedCramSecret,
    NeedPassword,
    NeedScramCredentials,
    NeedTokenValidation,
    PasswordVerdict,
    Resumption,
    SaslAuthenticationError,
    SaslClientMechanism,
    SaslError,
    SaslServerMechanism,
    SaslUsageError,
    ScramCredentials,
    ScramLookup,
    Step,
    Success,
    TokenVerdict,
    VerifierUnavailable,
)
from .cram_md5 import CRAM_MD5, CramMd5Client, CramMd5Server
from .login import LOGIN, LoginClient, LoginServer
from .oauthbearer import OAUTHBEARER, OAuthBearerClient, OAuthBearerServer
from .plain import PLAIN, PlainClient, PlainServer
from .registry import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    STRENGTH_ORDER,
    ClientMechanismFactory,
    SaslClientContext,
    SaslCredentials,
    SaslServerContext,
    ServerMechanismFactory,
    advertised_mechanisms,
    choose_client_mechanism,
)
from .saslprep import saslprep
from .scram import (
    CHANNEL_BINDING_TYPE,
    MAX_SCRAM_ITERATIONS,
    MIN_SCRAM_ITERATIONS,
    SCRAM_SALT_OCTETS,
    SCRAM_SHA_256,
    SCRAM_SHA_256_PLUS,
    ScramClient,
    ScramServer,
    scram_keys,
)
from .xoauth2 import XOAUTH2, XOAuth2Client, XOAuth2Server

__all__ = [
    "CHANNEL_BINDING_TYPE",
    "CLIENT_MECHANISMS",
    "CRAM_MD5",
    "LOGIN",
    "MAX_IDENTITY_OCTETS",
    "MAX_RESPONSE_OCTETS",
    "MAX_SCRAM_ITERATIONS",
    "MIN_SCRAM_ITERATIONS",
    "OAUTHBEARER",
    "PLAIN",
    "SCRAM_SALT_OCTETS",
    "SCRAM_SHA_256",
    "SCRAM_SHA_256_PLUS",
    "SERVER_MECHANISMS",
    "STRENGTH_ORDER",
    "XOAUTH2",
    "Challenge",
    "ClientMechanismFactory",
    "CramLookup",
    "CramMd5Client",
    "CramMd5Server",
    "Failure",
    "FailureKind",
    "LoginClient",
    "LoginServer",
    "NeedCramSecret",
    "NeedPassword",
    "NeedScramCredentials",
    "NeedTokenValidation",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "PasswordVerdict",
    "PlainClient",
    "PlainServer",
    "Resumption",
    "SaslAuthenticationError",
    "SaslClientContext",
    "SaslClientMechanism",
    "SaslCredentials",
    "SaslError",
    "SaslServerContext",
    "SaslServerMechanism",
    "SaslUsageError",
    "ScramClient",
    "ScramCredentials",
    "ScramLookup",
    "ScramServer",
    "ServerMechanismFactory",
    "Step",
    "Success",
    "TokenVerdict",
    "VerifierUnavailable",
    "XOAuth2Client",
    "XOAuth2Server",
    "advertised_mechanisms",
    "choose_client_mechanism",
    "saslprep",
    "scram_keys",
]
