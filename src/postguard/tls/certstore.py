"""Server certificates: loading, SNI selection and hot reload.

This module owns ``CertificateStore``, the single place where the server's certificate
and key files are read. It hands the listeners ONE front ``ssl.SSLContext`` (used for
implicit TLS and for STARTTLS alike) and must never open sockets or read configuration.

Theory of operation:

* Each ``CertificatePair`` is parsed with ``cryptography`` first, so errors name the
  file and say what is wrong (unreadable, not PEM, encrypted key, key/cert mismatch...).
  Its host names come from the certificate's subjectAltName (DNS names, ``*.`` wildcards
  and IP addresses), or from the subject CN when there is no SAN.
* Pairs with the same name set are loaded into ONE per-name ``SSLContext`` with one
  ``load_cert_chain`` call each, so an ECDSA and an RSA certificate for the same names
  coexist and OpenSSL picks by the client's signature algorithms and cipher suites.
* The front context's ``sni_callback`` switches ``ssl_object.context`` to a per-name
  context: exact name, then a one-label wildcard, else the default (the first pair's
  group). OpenSSL (1.1.1+) runs this callback for *every* ClientHello, with
  ``server_name=None`` when the client sent no SNI, so clients without SNI are switched
  to the current default context too. The front context is the object listeners keep,
  so it is never replaced; it carries the default certificates as a fallback and
  ``reload`` loads them on it again. The fallback is never relied on: a context has one
  slot per key type, so after a reload from ECDSA to RSA it would still hold the old
  ECDSA certificate. Switching every handshake to a freshly built context avoids that.
* ``reload`` builds a complete new set of contexts and swaps it in with one attribute
  assignment (atomic under the GIL); the callback reads that attribute once per
  handshake. If anything fails, nothing is swapped and the old certificates stay.
  Established sessions keep their own ``SSLObject`` and are never affected.
* The SNI a client sent is remembered per ``SSLObject`` in a ``WeakKeyDictionary``,
  as ``ssl`` has no server-side accessor; ``server_name_of`` reads it back.

Threads: call ``reload`` on the event-loop thread that runs the handshakes (``watch``
does). ``load_cert_chain`` on the front context releases the GIL, and OpenSSL does not
lock a context against a concurrent ``SSL_new`` in another thread.

Known limits: ``watch`` polls (device, inode, size, mtime, ctime), which catches
replace-by-rename (certbot, Kubernetes secrets) and normal rewrites; an in-place rewrite
of identical size within one filesystem timestamp tick can be missed until the next
change. Symlinks are followed. Session tickets are off (see ``contexts.py``), and
sessions resume only from the in-process cache.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import os
import ssl
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from postguard.tls.contexts import TlsVersion, server_context

__all__ = ["CertificateError", "CertificatePair", "CertificateStore", "server_name_of"]

logger = logging.getLogger("postguard.tls")

# SECURITY: NIST SP 800-57 / Mozilla intermediate: RSA keys below 2048 bits are refused
# even when a legacy TLS version has lowered OpenSSL's own security level to 0.
MIN_RSA_KEY_BITS: Final = 2048

_FileSignature = tuple[int, int, int, int, int] | None  # device, inode, size, mtime, ctime


def _content(signature: tuple[_FileSignature, ...]) -> tuple[object, ...]:
    """A signature without the ctimes (which ownership and mode changes also move)."""
    return tuple(None if entry is None else entry[:4] for entry in signature)


_server_names: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()
_server_names_lock = threading.Lock()


class CertificateError(Exception):
    """A certificate or key file cannot be used.

    Attributes:
        path: The offending file, or ``None`` when no single file is to blame.
        message: What is wrong with it, for humans.
    """

    def __init__(self, path: Path | None, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message if path is None else f"{path}: {message}")


@dataclass(frozen=True)
class CertificatePair:
    """A certificate chain file (PEM, leaf first) and its unencrypted private key file."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class _LoadedCertificate:
    """What the store learned about one pair when it loaded it."""

    pair: CertificatePair
    names: tuple[str, ...]
    key_family: str
    key_description: str
    not_after: dt.datetime


@dataclass(frozen=True)
class _CertificateSet:
    """An immutable generation of loaded certificates; replaced whole on reload."""

    certificates: tuple[_LoadedCertificate, ...]
    default: ssl.SSLContext
    default_pairs: tuple[CertificatePair, ...]
    exact: Mapping[str, ssl.SSLContext]
    wildcard: Mapping[str, ssl.SSLContext]

    def context_for(self, server_name: str | None) -> ssl.SSLContext:
        """Pick the context for an SNI value: exact, then one-label wildcard, else default."""
        if server_name is None:
            return self.default
        exact = self.exact.get(server_name)
        if exact is not None:
            return exact
        # RFC 6125 §6.4.3: "*" matches exactly one left-most label.
        _, dot, parent = server_name.partition(".")
        if dot:
            return self.wildcard.get(parent, self.default)
        return self.default


def server_name_of(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> str | None:
    """Return the SNI host name the client sent during this connection's handshake.

    Args:
        ssl_object: The server-side TLS object, e.g.
            ``writer.get_extra_info("ssl_object")`` after the handshake.

    Returns:
        The name, lower-cased and without a trailing dot, or ``None`` if the client sent
        no SNI or the connection was not made through a ``CertificateStore`` context.
    """
    with _server_names_lock:
        return _server_names.get(ssl_object)


class CertificateStore:
    """The server's certificates, selected by SNI and reloadable without a restart."""

    def __init__(self, pairs: Sequence[CertificatePair], min_version: TlsVersion = "1.2") -> None:
        """Load every pair now.

        Args:
            pairs: Certificate/key files; the first pair (with any pair that has the
                same names) is the default for clients that send no or an unknown SNI.
            min_version: Oldest TLS version accepted, passed to ``server_context``.

        Raises:
            CertificateError: The list is empty, a file is unreadable or malformed, a
                key does not match its certificate, or two pairs collide.
        """
        self._pairs = tuple(pairs)
        self._min_version: TlsVersion = min_version
        self._generation = 0
        self._signature = self._stat_files()
        self._current = self._build()
        self._front = server_context(min_version)
        for pair in self._current.default_pairs:
            _load_chain(self._front, pair)
        # SECURITY: the callback runs before the certificate is chosen, for every
        # ClientHello, so each handshake sees exactly one generation of certificates.
        self._front.sni_callback = self._select_context

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The front context for listeners and STARTTLS; the same object for life."""
        return self._front

    @property
    def generation(self) -> int:
        """How many successful reloads have happened (0 after construction)."""
        return self._generation

    def reload(self) -> bool:
        """Re-read every certificate and key file and switch to them if all load.

        Returns:
            ``True`` if the new certificates are now served; ``False`` if anything
            failed, in which case ONE error line was logged and the previous
            certificates are still served.
        """
        self._signature = self._stat_files()
        try:
            new = self._build()
            # If this fails half-way the front context may hold part of the new set;
            # harmless, since the callback switches every handshake to ``_current``.
            for pair in new.default_pairs:
                _load_chain(self._front, pair)
        except CertificateError as error:
            logger.error(
                "TLS certificate reload failed, still serving the previous certificates: %s",
                error,
            )
            return False
        self._current = new
        self._generation += 1
        logger.info("TLS certificates reloaded (%d)", len(new.certificates))
        return True

    async def watch(self, interval: float = 5.0) -> None:
        """Poll the files forever and ``reload`` when any of them changes.

        Runs until cancelled. A failed reload is retried only after the next change,
        so a broken file logs one line, not one per poll.

        Args:
            interval: Seconds between polls.

        Raises:
            ValueError: ``interval`` is not positive.
        """
        if interval <= 0:
            raise ValueError("watch interval must be positive")
        while True:
            await asyncio.sleep(interval)
            if self._stat_files() != self._signature:
                self.reload()

    def catch_up(self) -> bool:
        """At a process's start: reload if a file's content changed since this store
        loaded it, else accept the files' current metadata as seen. Returns whether it
        reloaded.

        Dropping privileges hands the files to the service user, which changes only
        their ctime: without this the first poll would reload certificates that did not
        change. A worker forked from the start-up state long after the first load (a
        replacement for a dead one) must not serve certificates rotated away since.
        """
        now = self._stat_files()
        if _content(now) != _content(self._signature):
            return self.reload()
        self._signature = now
        return False

    def describe(self) -> list[str]:
        """One human-readable line per loaded certificate, for start-up logging."""
        now = dt.datetime.now(dt.UTC)
        lines = []
        for loaded in self._current.certificates:
            expired = " EXPIRED" if loaded.not_after <= now else ""
            lines.append(
                f"{loaded.pair.cert}: names={','.join(loaded.names)}"
                f" key={loaded.key_description}"
                f" not_after={loaded.not_after.isoformat()}{expired}"
            )
        return lines

    def _select_context(
        self, ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        """The front context's ``sni_callback``: record the SNI, switch the context."""
        try:
            name = _normalise_name(server_name) if server_name is not None else None
            if name is not None:
                with _server_names_lock:
                    _server_names[ssl_object] = name
            ssl_object.context = self._current.context_for(name)
        except Exception:
            logger.exception("TLS SNI selection failed for %r", server_name)
            return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        return None

    def _stat_files(self) -> tuple[_FileSignature, ...]:
        """Cheap change detector over every configured file."""
        signature: list[_FileSignature] = []
        for pair in self._pairs:
            for path in (pair.cert, pair.key):
                try:
                    st = os.stat(path)
                except OSError:
                    signature.append(None)
                else:
                    signature.append(
                        (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    )
        return tuple(signature)

    def _build(self) -> _CertificateSet:
        """Load every pair into fresh contexts; raise on the first problem."""
        if not self._pairs:
            raise CertificateError(None, "no TLS certificate configured")
        groups: dict[tuple[str, ...], list[tuple[_LoadedCertificate, bytes, bytes]]] = {}
        for pair in self._pairs:
            loaded, cert_pem, key_pem = _parse_pair(pair)
            group = groups.setdefault(tuple(sorted(loaded.names)), [])
            for other, _, _ in group:
                if other.key_family == loaded.key_family:
                    raise CertificateError(
                        pair.cert,
                        f"same names and key type ({loaded.key_family}) as {other.pair.cert}",
                    )
            group.append((loaded, cert_pem, key_pem))

        exact: dict[str, ssl.SSLContext] = {}
        wildcard: dict[str, ssl.SSLContext] = {}
        contexts: list[ssl.SSLContext] = []
        for members in groups.values():
            context = server_context(self._min_version)
            for loaded, cert_pem, key_pem in members:
                _load_into(context, loaded.pair, cert_pem, key_pem)
            contexts.append(context)
            # Where pairs overlap, the one listed first wins for the shared names.
            for name in members[0][0].names:
                if name.startswith("*."):
                    wildcard.setdefault(name[2:], context)
                else:
                    exact.setdefault(name, context)
        first_group = next(iter(groups.values()))
        return _CertificateSet(
            certificates=tuple(loaded for members in groups.values() for loaded, _, _ in members),
            default=contexts[0],
            default_pairs=tuple(loaded.pair for loaded, _, _ in first_group),
            exact=exact,
            wildcard=wildcard,
        )


class _PasswordRefused(Exception):
    """Raised by ``_refuse_password`` so OpenSSL never prompts for a passphrase."""


def _refuse_password() -> bytes:
    """``load_cert_chain`` password callback for keys that turned encrypted."""
    # SECURITY: without a callback OpenSSL would prompt on the controlling terminal,
    # hanging a daemon; encrypted keys are refused instead.
    raise _PasswordRefused("private key is encrypted; postguard needs an unencrypted key")


def _load_chain(context: ssl.SSLContext, pair: CertificatePair) -> None:
    """``context.load_cert_chain`` with errors translated to ``CertificateError``."""
    try:
        context.load_cert_chain(pair.cert, pair.key, password=_refuse_password)
    except (OSError, ssl.SSLError, _PasswordRefused) as error:
        raise CertificateError(pair.cert, f"cannot load into TLS: {error}") from error


def _read_file(path: Path) -> bytes:
    """Read ``path`` or raise ``CertificateError`` naming it."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise CertificateError(path, f"cannot read: {error.strerror or error}") from error


def _parse_pair(pair: CertificatePair) -> tuple[_LoadedCertificate, bytes, bytes]:
    """Parse and cross-check one pair with ``cryptography``."""
    cert_pem = _read_file(pair.cert)
    key_pem = _read_file(pair.key)
    try:
        leaf = x509.load_pem_x509_certificates(cert_pem)[0]
    except (ValueError, IndexError) as error:
        raise CertificateError(pair.cert, "not a PEM certificate") from error
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as error:
        raise CertificateError(
            pair.key, "private key is encrypted; postguard needs an unencrypted key"
        ) from error
    except ValueError as error:
        raise CertificateError(pair.key, "not a PEM private key") from error
    # Secrets never appear in errors: only the paths are named, never key material.
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise CertificateError(pair.key, f"private key does not match certificate {pair.cert}")
    family, description = _describe_key(pair.key, key)
    names = _names_of(leaf)
    if not names:
        raise CertificateError(pair.cert, "certificate names no host (no SAN and no CN)")
    loaded = _LoadedCertificate(
        pair=pair,
        names=names,
        key_family=family,
        key_description=description,
        not_after=leaf.not_valid_after_utc,
    )
    return loaded, cert_pem, key_pem


def _describe_key(path: Path, key: object) -> tuple[str, str]:
    """Return (OpenSSL slot family, human description) for a private key."""
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise CertificateError(
                path, f"RSA key of {key.key_size} bits is too small (minimum {MIN_RSA_KEY_BITS})"
            )
        return "RSA", f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ECDSA", f"ECDSA-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        family = "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "Ed448"
        return family, family
    raise CertificateError(path, f"unsupported key type {type(key).__name__}")


def _names_of(leaf: x509.Certificate) -> tuple[str, ...]:
    """Host names a certificate serves: SAN DNS names and IPs, else the subject CN."""
    names: list[str] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names += [_normalise_name(name) for name in san.get_values_for_type(x509.DNSName)]
        names += [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    if not names:
        common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        names += [_normalise_name(str(attribute.value)) for attribute in common_names]
    return tuple(dict.fromkeys(name for name in names if name))


def _normalise_name(name: str) -> str:
    """Lower-case, strip a trailing dot, and canonicalise IP literals."""
    name = name.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _load_into(
    context: ssl.SSLContext, pair: CertificatePair, cert_pem: bytes, key_pem: bytes
) -> None:
    """``load_cert_chain`` the pair, then check the files did not change meanwhile."""
    _load_chain(context, pair)
    # ssl can only read paths, so it read the files a second time. If they were being
    # replaced in between, what OpenSSL holds may not be what we checked: give up on
    # this attempt; the change is newer than our snapshot, so ``watch`` retries.
    if _read_file(pair.cert) != cert_pem or _read_file(pair.key) != key_pem:
        raise CertificateError(pair.cert, "changed while being loaded; will retry")
