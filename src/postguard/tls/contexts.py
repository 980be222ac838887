"""Strict ``ssl.SSLContext`` factories for postguard's servers and clients.

This module owns the TLS *policy* every socket in postguard starts from: protocol
versions, cipher suites and the options that switch off dangerous features. It does not
load certificates (see ``certstore.py``), open sockets, or read configuration: the config
layer decides whether a weaker setting is allowed (named weakenings, see
``config/weakenings.py``) and passes the result in.

Defaults:

* TLS 1.2 minimum, TLS 1.3 preferred (the maximum is whatever OpenSSL supports).
* TLS 1.2 cipher suites from Mozilla's "intermediate" profile; TLS 1.3 suites are
  OpenSSL's defaults, which are exactly Mozilla's list.
* Compression and renegotiation are off; ephemeral keys are never reused.
* Clients verify the chain and the host name unless told otherwise.

Legacy versions: ``"1.0"`` and ``"1.1"`` only work with OpenSSL 3 when the security
level is lowered to 0 (SHA-1/MD5-SHA-1 handshake signatures need it; at level 1 or 2
OpenSSL fails with ``NO_SUITABLE_SIGNATURE_ALGORITHM``) *and* a cipher suite that those
versions can negotiate is offered (every intermediate suite is TLS 1.2-only AEAD). Both
happen only when the caller passes such a version explicitly; see ``LEGACY_TLS_CIPHERS``.

We build ``ssl.SSLContext`` directly rather than calling ``ssl.create_default_context``:
the latter honours the ``SSLKEYLOGFILE`` environment variable, which would let anyone
who can set the daemon's environment record every session key.
"""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path
from typing import Final, Literal, get_args

__all__ = [
    "LEGACY_TLS_CIPHERS",
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "TLS_VERSIONS",
    "TlsVersion",
    "client_context",
    "resolve_tls_version",
    "server_context",
]

TlsVersion = Literal["1.0", "1.1", "1.2", "1.3"]
"""A TLS protocol version as written in configuration files."""

TLS_VERSIONS: Final[tuple[TlsVersion, ...]] = get_args(TlsVersion)

_SSL_VERSIONS: Final[dict[TlsVersion, ssl.TLSVersion]] = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}

_LEGACY_VERSIONS: Final[frozenset[TlsVersion]] = frozenset({"1.0", "1.1"})

# Mozilla Server Side TLS guidelines v5.7, "Intermediate compatibility (recommended)",
# TLS 1.2 cipher suites, in Mozilla's order:
# https://wiki.mozilla.org/Security/Server_Side_TLS and
# https://ssl-config.mozilla.org/guidelines/5.7.json
# SECURITY: every suite is forward secret (ECDHE/DHE) and AEAD; no CBC, RC4, 3DES or
# static-RSA key exchange (Lucky13, Sweet32, ROBOT).
# The DHE-RSA suites only take effect if DH parameters are loaded
# (``SSLContext.load_dh_params``); OpenSSL 3 does not pick them automatically, so by
# default they are inert and ECDHE carries every TLS 1.2 handshake.
MOZILLA_INTERMEDIATE_CIPHERS: Final[str] = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)

# Added only when TLS 1.0/1.1 is explicitly enabled: the AEAD suites above are
# TLS 1.2-only, so without these an old client shares no cipher with us. This is the
# forward-secret subset (ECDHE, AES-CBC, SHA-1 MAC) of Mozilla's v5.7 "Old" profile;
# static-RSA and 3DES suites are still refused.
# "@SECLEVEL=0" is required by OpenSSL 3 for the TLS 1.0/1.1 handshake signatures.
# SECURITY: level 0 also lifts OpenSSL's minimum key sizes for every connection on
# that context, which is why it is never applied unless the caller asks for 1.0/1.1.
LEGACY_TLS_CIPHERS: Final[str] = ":".join(
    (
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES256-SHA",
    )
)
_LEGACY_SECURITY_LEVEL: Final[str] = "@SECLEVEL=0"

# Python's own client default (3.10+) minus its "!SHA1", so that ECDH+AES also yields
# the ECDHE AES-CBC-SHA suites that TLS 1.0/1.1 servers speak. Client side only.
_LEGACY_CLIENT_CIPHERS: Final[str] = (
    "ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!AESCCM"
)


def resolve_tls_version(version: TlsVersion) -> ssl.TLSVersion:
    """Map a configuration version string onto ``ssl.TLSVersion``.

    Args:
        version: One of ``"1.0"``, ``"1.1"``, ``"1.2"``, ``"1.3"``.

    Returns:
        The matching ``ssl.TLSVersion`` member.

    Raises:
        ValueError: ``version`` is not one of the supported strings.
    """
    try:
        return _SSL_VERSIONS[version]
    except KeyError:
        expected = ", ".join(TLS_VERSIONS)
        raise ValueError(f"unknown TLS version {version!r} (expected: {expected})") from None


def server_context(min_version: TlsVersion = "1.2") -> ssl.SSLContext:
    """Build a server-side context with postguard's strict defaults.

    No certificate is loaded: the caller (normally ``CertificateStore``) does that.

    Args:
        min_version: The oldest TLS version to accept. Anything below ``"1.2"`` is a
            security weakening the caller must have been granted explicitly; it also
            lowers OpenSSL's security level to 0 and adds legacy CBC suites (see the
            module docstring).

    Returns:
        A fresh ``ssl.SSLContext`` for ``PROTOCOL_TLS_SERVER``.

    Raises:
        ValueError: ``min_version`` is not a supported version string.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_version_policy(
        context,
        min_version,
        modern_ciphers=MOZILLA_INTERMEDIATE_CIPHERS,
        legacy_ciphers=f"{MOZILLA_INTERMEDIATE_CIPHERS}:{LEGACY_TLS_CIPHERS}",
    )
    # SECURITY: CRIME (compression oracle), renegotiation DoS and CVE-2009-3555
    # (insecure renegotiation), and key reuse across handshakes.
    context.options |= ssl.OP_NO_COMPRESSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    # SECURITY: Mozilla v5.7 turns session tickets off: Python cannot rotate the ticket
    # key, so one long-lived key would undo forward secrecy for every resumable session.
    # OpenSSL then falls back to stateful (session-cache) resumption.
    context.options |= ssl.OP_NO_TICKET
    # Mozilla v5.7: "Cipher preference: client chooses"; every suite is strong, and the
    # client knows whether it has AES hardware. So OP_CIPHER_SERVER_PREFERENCE stays off.
    return context


def client_context(
    cafile: Path | None = None,
    *,
    min_version: TlsVersion = "1.2",
    verify: bool = True,
) -> ssl.SSLContext:
    """Build a client-side context that verifies the peer by default.

    Args:
        cafile: PEM bundle of trust anchors. ``None`` uses the system store.
        min_version: The oldest TLS version to offer; below ``"1.2"`` is a weakening
            (see ``server_context``).
        verify: ``False`` disables both chain verification and host name checking.
            This is a security weakening; the caller must log it.

    Returns:
        A fresh ``ssl.SSLContext`` for ``PROTOCOL_TLS_CLIENT``.

    Raises:
        ValueError: ``min_version`` is not a supported version string.
        OSError: ``cafile`` cannot be read.
        ssl.SSLError: ``cafile`` holds no usable certificate.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Python's client defaults (ECDHE/DHE only, no SHA-1 MACs, security level 2) are
    # kept for TLS 1.2: outbound SMTP meets MX hosts we do not control, and some still
    # only speak AES-CBC-SHA256/384, which Mozilla's server-side list leaves out.
    _apply_version_policy(
        context, min_version, modern_ciphers=None, legacy_ciphers=_LEGACY_CLIENT_CIPHERS
    )
    context.options |= ssl.OP_NO_COMPRESSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    if cafile is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.load_verify_locations(cafile=str(cafile))
    if verify:
        # SECURITY: PROTOCOL_TLS_CLIENT already defaults to these; set them anyway so
        # the intent survives any change of defaults.
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
    else:
        # check_hostname must go first: ssl refuses CERT_NONE while it is on.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _apply_version_policy(
    context: ssl.SSLContext,
    min_version: TlsVersion,
    *,
    modern_ciphers: str | None,
    legacy_ciphers: str,
) -> None:
    """Set the version window and the TLS <= 1.2 cipher list on ``context``.

    Args:
        context: The context to configure.
        min_version: The oldest version to allow.
        modern_ciphers: The cipher list for TLS 1.2+, or ``None`` to keep Python's.
        legacy_ciphers: The cipher list used when ``min_version`` is 1.0 or 1.1;
            ``@SECLEVEL=0`` is appended to it.
    """
    minimum = resolve_tls_version(min_version)
    legacy = min_version in _LEGACY_VERSIONS
    with warnings.catch_warnings():
        # Python 3.10+ emits DeprecationWarning for TLSv1/TLSv1_1. The caller asked for
        # them on purpose and the config layer logs that as a weakening; the warning
        # would only add noise.
        if legacy:
            warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
    # TLS 1.3 preferred: let OpenSSL negotiate the newest version it has.
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    if legacy:
        context.set_ciphers(f"{legacy_ciphers}:{_LEGACY_SECURITY_LEVEL}")
    elif modern_ciphers is not None:
        context.set_ciphers(modern_ciphers)
