"""Development certificates: a private CA and a server certificate for local use.

This module owns ``ensure_dev_certificates``, which makes ``postguard serve`` and the
test suite work over TLS on a fresh machine without a public CA. It must never be used
for a server that faces the Internet, and it never touches certificates it did not
write: it only reads and writes the four files below inside the directory it is given.

Files in ``directory``:

* ``ca.pem`` / ``ca-key.pem``: the "postguard development CA" (ECDSA P-256, 10 years).
* ``cert.pem``: the server certificate alone. The CA is not sent in the handshake: a
  client that trusts it has it already, and a root in the chain is only bytes on the
  wire (RFC 8446 §4.4.2 lets a server leave out the trust anchor, and public servers do).
* ``key.pem``: the server key (ECDSA P-256).

Theory of operation: the call is idempotent. Existing files are reused when they parse,
the keys match, the server certificate was issued by the CA on disk, neither expires
within ``RENEW_BEFORE`` and the server certificate covers every requested name. If only
the server certificate fails these checks, only it is regenerated, so a CA that a
developer has already trusted keeps working. Every write is atomic (temporary file,
fsync, rename, fsync of the directory), and an advisory lock serialises concurrent
callers (two test workers, or ``serve`` started twice).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "RENEW_BEFORE",
    "SERVER_VALIDITY",
    "DevCertificates",
    "ensure_dev_certificates",
]

DAYS: Final = dt.timedelta(days=1)
CA_VALIDITY: Final = 3650 * DAYS
# 825 days: the longest lifetime Apple platforms (and CA/B Forum ballot 193, 2018-2020)
# accept for a TLS server certificate, so macOS/iOS mail clients trust it.
SERVER_VALIDITY: Final = 825 * DAYS
RENEW_BEFORE: Final = 30 * DAYS
# Backdate notBefore so a peer whose clock runs a little slow still accepts the cert.
CLOCK_SKEW_ALLOWANCE: Final = dt.timedelta(hours=1)

CA_COMMON_NAME: Final = "postguard development CA"
_CA_CERT_FILE: Final = "ca.pem"
_CA_KEY_FILE: Final = "ca-key.pem"
_CERT_FILE: Final = "cert.pem"
_KEY_FILE: Final = "key.pem"
_LOCK_FILE: Final = ".lock"

# SECURITY: private keys are readable by the owner only; the directory too.
_KEY_FILE_MODE: Final = 0o600
_CERT_FILE_MODE: Final = 0o644
_DIRECTORY_MODE: Final = 0o700


@dataclass(frozen=True)
class DevCertificates:
    """Paths of a usable development certificate set.

    Attributes:
        ca_cert: The development CA certificate (give it to clients as ``cafile``).
        cert: The server certificate (the CA is not part of it: see the module docstring).
        key: The server private key (mode 0600).
    """

    ca_cert: Path
    cert: Path
    key: Path


def ensure_dev_certificates(
    directory: Path,
    hostnames: Sequence[str] = ("localhost",),
    ip_addresses: Sequence[str] = ("127.0.0.1", "::1"),
    *,
    now: dt.datetime | None = None,
) -> DevCertificates:
    """Return a development CA and server certificate, creating them if needed.

    Args:
        directory: Where the files live; created with mode 0700 if missing.
        hostnames: DNS names the server certificate must cover.
        ip_addresses: IP addresses the server certificate must cover.
        now: The current time (timezone-aware); defaults to the system clock. Tests
            pass it to exercise expiry.

    Returns:
        The paths of the CA certificate, the server certificate and the server key.

    Raises:
        ValueError: No name was given, or an IP address does not parse.
        OSError: The directory or a file cannot be created or written.
    """
    names = tuple(
        dict.fromkeys(name.strip().lower().rstrip(".") for name in hostnames if name.strip())
    )
    addresses = tuple(dict.fromkeys(ipaddress.ip_address(ip) for ip in ip_addresses))
    if not names and not addresses:
        raise ValueError("ensure_dev_certificates needs at least one host name or address")
    when = now if now is not None else dt.datetime.now(dt.UTC)

    _create_private_directory(directory)
    paths = DevCertificates(
        ca_cert=directory / _CA_CERT_FILE,
        cert=directory / _CERT_FILE,
        key=directory / _KEY_FILE,
    )
    ca_key_path = directory / _CA_KEY_FILE
    with _locked(directory / _LOCK_FILE):
        ca = _load_usable_ca(paths.ca_cert, ca_key_path, when)
        if ca is None:
            ca = _issue_ca(when)
            _write_atomic(ca_key_path, _key_pem(ca[1]), _KEY_FILE_MODE)
            ca_pem = ca[0].public_bytes(serialization.Encoding.PEM)
            _write_atomic(paths.ca_cert, ca_pem, _CERT_FILE_MODE)
        ca_cert, ca_key = ca
        if not _server_certificate_is_usable(paths, ca_cert, names, addresses, when):
            leaf, leaf_key = _issue_server_certificate(ca_cert, ca_key, names, addresses, when)
            _write_atomic(paths.key, _key_pem(leaf_key), _KEY_FILE_MODE)
            _write_atomic(
                paths.cert, leaf.public_bytes(serialization.Encoding.PEM), _CERT_FILE_MODE
            )
    return paths


def _create_private_directory(directory: Path) -> None:
    """Create ``directory`` with mode 0700 unless it already exists."""
    if directory.is_dir():
        return
    directory.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask; make the result exact.
    os.chmod(directory, _DIRECTORY_MODE)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` for the duration of the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, _KEY_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _is_fresh(cert: x509.Certificate, when: dt.datetime) -> bool:
    """Tell whether ``cert`` is valid at ``when`` and for ``RENEW_BEFORE`` after it."""
    return cert.not_valid_before_utc <= when and when + RENEW_BEFORE < cert.not_valid_after_utc


def _public_keys_match(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """Tell whether ``key`` is the private half of ``cert``'s public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    """Load an unencrypted ECDSA key, or ``None`` if the file is missing or unusable."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _load_usable_ca(
    cert_path: Path, key_path: Path, when: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """Load the CA from disk if it can still sign; ``None`` means "make a new one"."""
    key = _read_key(key_path)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    if key is None or not constraints.ca or not _public_keys_match(cert, key):
        return None
    if not _is_fresh(cert, when):
        return None
    return cert, key


def _server_certificate_is_usable(
    paths: DevCertificates,
    ca_cert: x509.Certificate,
    names: tuple[str, ...],
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
    when: dt.datetime,
) -> bool:
    """Tell whether the server certificate and key on disk can be reused as they are.

    A file that also holds the CA (as earlier versions wrote it) is reissued, so that the
    handshake stops sending the CA; the CA itself, which clients trust, stays."""
    key = _read_key(paths.key)
    try:
        chain = x509.load_pem_x509_certificates(paths.cert.read_bytes())
        leaf = chain[0]
        leaf.verify_directly_issued_by(ca_cert)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (
        OSError,
        ValueError,
        TypeError,
        IndexError,
        InvalidSignature,
        x509.ExtensionNotFound,
    ):
        return False
    if key is None or not _public_keys_match(leaf, key) or len(chain) != 1:
        return False
    covered_names = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    covered_addresses = set(san.get_values_for_type(x509.IPAddress))
    return (
        _is_fresh(leaf, when)
        and covered_names.issuperset(names)
        and covered_addresses.issuperset(addresses)
    )


def _issue_ca(when: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Create a new development CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postguard development"),
            x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(when + CA_VALIDITY)
        # SECURITY: path_length=0: this CA can sign server certificates, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue_server_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: tuple[str, ...],
    addresses: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
    when: dt.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Create a server certificate for ``names`` and ``addresses`` signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = names[0] if names else str(addresses[0])
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alt_names += [x509.IPAddress(address) for address in addresses]
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - CLOCK_SKEW_ALLOWANCE)
        # A certificate must not outlive its issuer; near the CA's end the server
        # certificate is shorter-lived and gets reissued with the new CA.
        .not_valid_after(min(when + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        # RFC 6125 / CA/B Forum: clients match the SAN, not the CN.
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Serialise ``key`` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half.

    The Maildir discipline: write a temporary file in the same directory, fsync it,
    rename it over the target, then fsync the directory so the rename is durable.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # SECURITY: O_EXCL|O_NOFOLLOW: never write through a planted file or symlink, and
    # create with the final mode so the key is never briefly world-readable.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # the umask may have removed bits
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
