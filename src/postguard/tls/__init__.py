"""TLS for postguard: strict contexts, server certificates, development certificates.

This package owns every ``ssl.SSLContext`` postguard creates and the certificate files
it serves. It does no network I/O of its own: listeners and STARTTLS (``net/``,
``server/``) take ``CertificateStore.ssl_context`` and the client contexts from here.

* ``contexts``: ``server_context`` / ``client_context`` with TLS 1.2+ and Mozilla's
  intermediate cipher suites.
* ``certstore``: ``CertificateStore``, SNI selection (exact, wildcard, default),
  ECDSA+RSA dual certificates, atomic hot reload and ``server_name_of``.
* ``devcerts``: ``ensure_dev_certificates``, a private CA for development only.
"""

from postguard.tls.certstore import (
    CertificateError,
    CertificatePair,
    CertificateStore,
    server_name_of,
)
from postguard.tls.contexts import (
    LEGACY_TLS_CIPHERS,
    MOZILLA_INTERMEDIATE_CIPHERS,
    TLS_VERSIONS,
    TlsVersion,
    client_context,
    resolve_tls_version,
    server_context,
)
from postguard.tls.devcerts import DevCertificates, ensure_dev_certificates

__all__ = [
    "LEGACY_TLS_CIPHERS",
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "TLS_VERSIONS",
    "CertificateError",
    "CertificatePair",
    "CertificateStore",
    "DevCertificates",
    "TlsVersion",
    "client_context",
    "ensure_dev_certificates",
    "resolve_tls_version",
    "server_context",
    "server_name_of",
]
