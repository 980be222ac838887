"""Tests for ``postguard.tls.devcerts``: the development CA and server certificate.

Covers generation (file modes, X.509 extensions), a verified handshake by host name
and by IP address, idempotence, and the cases that must regenerate: a new host name,
near expiry, a broken key, an unusable CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from postguard.tls import (
    CertificatePair,
    CertificateStore,
    DevCertificates,
    client_context,
    ensure_dev_certificates,
)
from postguard.tls.devcerts import RENEW_BEFORE, SERVER_VALIDITY

if TYPE_CHECKING:
    from conftest import LoopbackTlsServer


def snapshot(dev: DevCertificates) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in dev.ca_cert.parent.iterdir()}


def leaf_of(dev: DevCertificates) -> x509.Certificate:
    return x509.load_pem_x509_certificates(dev.cert.read_bytes())[0]


@pytest.fixture
def dev(tmp_path: Path) -> DevCertificates:
    return ensure_dev_certificates(tmp_path / "dev-tls")


def test_files_are_created_with_private_modes(dev: DevCertificates) -> None:
    directory = dev.cert.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(dev.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "ca-key.pem").stat().st_mode) == 0o600
    assert not list(directory.glob("*.tmp"))


def test_ca_is_a_constrained_ecdsa_signing_authority(dev: DevCertificates) -> None:
    ca = x509.load_pem_x509_certificate(dev.ca_cert.read_bytes())
    assert "postguard development CA" in ca.subject.rfc4514_string()
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= dt.timedelta(days=3650)


def test_server_certificate_covers_names_and_chains_to_the_ca(dev: DevCertificates) -> None:
    chain = x509.load_pem_x509_certificates(dev.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(dev.ca_cert.read_bytes())
    leaf = chain[0]
    assert chain == [leaf]  # the CA is the client's trust anchor, not sent by the server
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert SERVER_VALIDITY <= lifetime <= SERVER_VALIDITY + dt.timedelta(days=1)


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
async def test_client_context_verifies_dev_certificate_in_a_real_handshake(
    dev: DevCertificates, loopback: type[LoopbackTlsServer], server_hostname: str
) -> None:
    store = CertificateStore([CertificatePair(dev.cert, dev.key)])
    client = client_context(cafile=dev.ca_cert)  # full verification, host name included
    async with loopback(store.ssl_context) as server:
        connection = await server.connect(client, server_hostname)
        try:
            assert await connection.echo(b"hello") == b"hello"
            assert connection.ssl_object.version() == "TLSv1.3"
        finally:
            await connection.close()


def test_second_call_reuses_every_file_unchanged(tmp_path: Path) -> None:
    first = ensure_dev_certificates(tmp_path / "dev-tls")
    before = snapshot(first)
    second = ensure_dev_certificates(tmp_path / "dev-tls")
    assert second == first
    assert snapshot(second) == before


def test_adding_a_hostname_reissues_the_server_certificate_but_keeps_the_ca(
    dev: DevCertificates,
) -> None:
    before = snapshot(dev)
    again = ensure_dev_certificates(dev.cert.parent, hostnames=("localhost", "mx.test"))
    after = snapshot(again)
    assert after["ca.pem"] == before["ca.pem"]
    assert after["ca-key.pem"] == before["ca-key.pem"]
    assert after["cert.pem"] != before["cert.pem"]
    assert after["key.pem"] != before["key.pem"]
    san = leaf_of(again).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost", "mx.test"]


def test_a_certificate_file_that_also_holds_the_ca_is_reissued_without_it(
    dev: DevCertificates,
) -> None:
    # As versions before this one wrote it: the leaf, then the CA.
    dev.cert.write_bytes(dev.cert.read_bytes() + dev.ca_cert.read_bytes())
    before = snapshot(dev)
    again = ensure_dev_certificates(dev.cert.parent)
    after = snapshot(again)
    assert after["ca.pem"] == before["ca.pem"]  # a CA already trusted keeps working
    assert after["ca-key.pem"] == before["ca-key.pem"]
    chain = x509.load_pem_x509_certificates(again.cert.read_bytes())
    assert len(chain) == 1
    chain[0].verify_directly_issued_by(x509.load_pem_x509_certificate(after["ca.pem"]))


def test_a_subset_of_the_covered_names_needs_no_new_certificate(tmp_path: Path) -> None:
    dev = ensure_dev_certificates(tmp_path / "d", hostnames=("localhost", "mx.test"))
    before = snapshot(dev)
    ensure_dev_certificates(tmp_path / "d", hostnames=("MX.test.",), ip_addresses=())
    assert snapshot(dev) == before


def test_server_certificate_near_expiry_is_reissued(dev: DevCertificates) -> None:
    before = snapshot(dev)
    late = leaf_of(dev).not_valid_after_utc - RENEW_BEFORE + dt.timedelta(hours=1)
    # The CA (10 years) is still fresh then, so only the server certificate is at stake.
    ensure_dev_certificates(dev.cert.parent, now=late - dt.timedelta(days=2))
    assert snapshot(dev) == before
    ensure_dev_certificates(dev.cert.parent, now=late)
    after = snapshot(dev)
    assert after["cert.pem"] != before["cert.pem"]
    assert after["ca.pem"] == before["ca.pem"]


def test_key_that_does_not_match_is_replaced_with_a_matching_pair(
    dev: DevCertificates, tmp_path: Path
) -> None:
    other = ensure_dev_certificates(tmp_path / "other")
    dev.key.write_bytes(other.key.read_bytes())
    ensure_dev_certificates(dev.cert.parent)
    CertificateStore([CertificatePair(dev.cert, dev.key)])  # raises on a mismatch


def test_unusable_ca_is_replaced_and_the_server_certificate_with_it(
    dev: DevCertificates,
) -> None:
    before = snapshot(dev)
    dev.ca_cert.write_bytes(b"not a certificate")
    ensure_dev_certificates(dev.cert.parent)
    after = snapshot(dev)
    assert after["ca-key.pem"] != before["ca-key.pem"]
    ca = x509.load_pem_x509_certificate(dev.ca_cert.read_bytes())
    leaf_of(dev).verify_directly_issued_by(ca)


def test_ca_near_expiry_is_replaced_with_the_server_certificate(dev: DevCertificates) -> None:
    before = snapshot(dev)
    ca = x509.load_pem_x509_certificate(dev.ca_cert.read_bytes())
    late = ca.not_valid_after_utc - dt.timedelta(days=10)
    ensure_dev_certificates(dev.cert.parent, now=late)
    after = snapshot(dev)
    assert after["ca-key.pem"] != before["ca-key.pem"]
    new_ca = x509.load_pem_x509_certificate(dev.ca_cert.read_bytes())
    leaf_of(dev).verify_directly_issued_by(new_ca)
    assert leaf_of(dev).not_valid_after_utc <= new_ca.not_valid_after_utc


def test_no_names_at_all_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ensure_dev_certificates(tmp_path, hostnames=(), ip_addresses=())
    with pytest.raises(ValueError):
        ensure_dev_certificates(tmp_path, ip_addresses=("not-an-ip",))
