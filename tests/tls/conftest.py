"""Fixtures and loopback helpers for the ``postguard.tls`` tests.

Everything here is real: trustme and ``cryptography`` issue certificates, an asyncio
echo server listens on 127.0.0.1 port 0 with the context under test, and clients do
full TLS handshakes through ``asyncio.open_connection`` (implicit TLS) or
``StreamWriter.start_tls`` (STARTTLS). Nothing is mocked and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from postguard.tls import CertificatePair, client_context, server_name_of

LOOPBACK = "127.0.0.1"
STARTTLS_LINE = b"STARTTLS\r\n"
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# A TLS 1.2 full handshake takes 2 round trips, TLS 1.3 one; 10 is generous.
MAX_MEMORY_HANDSHAKE_ROUNDS = 10


@dataclass(frozen=True)
class ServerSide:
    """What the server saw of one accepted TLS connection."""

    server_name: str | None
    version: str | None
    cipher: str | None
    compression: str | None


@dataclass(frozen=True)
class Handshake:
    """The outcome of one completed handshake, seen from both ends."""

    server: ServerSide
    peer_cert: x509.Certificate
    version: str | None
    cipher: str | None
    compression: str | None


class TlsClient:
    """The client end of one loopback TLS connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object is not None
        self.ssl_object: ssl.SSLObject = ssl_object

    @property
    def peer_cert(self) -> x509.Certificate:
        der = self.ssl_object.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    async def echo(self, data: bytes) -> bytes:
        """Send one line and return the server's echo of it."""
        self.writer.write(data + b"\n")
        await self.writer.drain()
        return (await self.reader.readline()).rstrip(b"\n")

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


class LoopbackTlsServer:
    """An asyncio TLS echo server on 127.0.0.1:0 serving ``ssl_context``.

    With ``starttls=True`` the server starts in plain text, waits for ``STARTTLS``,
    answers ``220`` and upgrades with ``StreamWriter.start_tls``, as the SMTP server does.
    """

    def __init__(self, ssl_context: ssl.SSLContext, *, starttls: bool = False) -> None:
        self._ssl_context = ssl_context
        self._starttls = starttls
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.accepted: asyncio.Queue[ServerSide] = asyncio.Queue()
        self.port = 0

    async def __aenter__(self) -> LoopbackTlsServer:
        self._server = await asyncio.start_server(
            self._handle,
            LOOPBACK,
            0,
            ssl=None if self._starttls else self._ssl_context,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=HANDSHAKE_TIMEOUT_SECONDS)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            if self._starttls:
                if await reader.readline() != STARTTLS_LINE:
                    return
                writer.write(b"220 ready\r\n")
                await writer.drain()
                await writer.start_tls(self._ssl_context)
            ssl_object: ssl.SSLObject = writer.get_extra_info("ssl_object")
            cipher = ssl_object.cipher()
            self.accepted.put_nowait(
                ServerSide(
                    server_name=server_name_of(ssl_object),
                    version=ssl_object.version(),
                    cipher=cipher[0] if cipher else None,
                    compression=ssl_object.compression(),
                )
            )
            while line := await reader.readline():
                writer.write(line)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def connect(
        self, client: ssl.SSLContext, server_hostname: str | None = None
    ) -> TlsClient:
        """Open a TLS connection; ``server_hostname=None`` sends no SNI."""
        # asyncio treats "" as "no server_hostname": no SNI and no host name check.
        sni = server_hostname or ""
        if not self._starttls:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(LOOPBACK, self.port, ssl=client, server_hostname=sni),
                HANDSHAKE_TIMEOUT_SECONDS,
            )
            return TlsClient(reader, writer)
        reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
        writer.write(STARTTLS_LINE)
        await writer.drain()
        assert (await reader.readline()).startswith(b"220")
        await asyncio.wait_for(
            writer.start_tls(client, server_hostname=sni), HANDSHAKE_TIMEOUT_SECONDS
        )
        return TlsClient(reader, writer)

    async def handshake(
        self, client: ssl.SSLContext, server_hostname: str | None = None
    ) -> Handshake:
        """Connect, prove the channel works with one echo, close, report both ends."""
        connection = await self.connect(client, server_hostname)
        try:
            assert await connection.echo(b"ping") == b"ping"
            server = await asyncio.wait_for(self.accepted.get(), HANDSHAKE_TIMEOUT_SECONDS)
            cipher = connection.ssl_object.cipher()
            return Handshake(
                server=server,
                peer_cert=connection.peer_cert,
                version=connection.ssl_object.version(),
                cipher=cipher[0] if cipher else None,
                compression=connection.ssl_object.compression(),
            )
        finally:
            await connection.close()


def handshake_in_memory(
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str | None = None
) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Run a full handshake between two contexts over memory BIOs.

    Unlike the asyncio server (which drops its alert when a handshake fails), this
    surfaces the *server's* own ``ssl.SSLError``, so tests can assert why it refused.

    Returns:
        The server and client ``SSLObject`` after a completed handshake.

    Raises:
        ssl.SSLError: The server's or the client's handshake error, whichever comes first.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(MAX_MEMORY_HANDSHAKE_ROUNDS):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return server_side, client_side
    raise AssertionError("handshake did not finish")


# --- certificates -----------------------------------------------------------------


class CertFactory:
    """Issues and writes test certificates; reached through the ``certs`` fixture.

    Test modules cannot import from a conftest reliably (several rootless conftests
    share the module name), so helpers are handed out as fixtures.
    """

    def __init__(self, ca: trustme.CA, directory: Path) -> None:
        self.ca = ca
        self.directory = directory

    def pair(
        self, stem: str, *names: str, key_type: trustme.KeyType = trustme.KeyType.ECDSA
    ) -> CertificatePair:
        """Issue a leaf for ``names`` and write ``<stem>.pem`` (chain) / ``<stem>.key``."""
        leaf = self.ca.issue_cert(*names, key_type=key_type)
        pair = CertificatePair(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        self.replace(pair.cert, b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        self.replace(pair.key, leaf.private_key_pem.bytes())
        return pair

    def reissue(
        self,
        pair: CertificatePair,
        *names: str,
        key_type: trustme.KeyType = trustme.KeyType.ECDSA,
    ) -> None:
        """Put a new certificate and key for ``names`` in place of ``pair``'s files."""
        fresh = self.pair(f"{pair.cert.stem}-next", *names, key_type=key_type)
        self.replace(pair.cert, fresh.cert.read_bytes())
        self.replace(pair.key, fresh.key.read_bytes())

    @staticmethod
    def der(cert: x509.Certificate | Path) -> bytes:
        """DER of a certificate, or of the leaf in a PEM chain file."""
        if isinstance(cert, Path):
            cert = x509.load_pem_x509_certificates(cert.read_bytes())[0]
        return cert.public_bytes(serialization.Encoding.DER)

    @staticmethod
    def replace(path: Path, data: bytes) -> None:
        """Replace ``path`` by rename, as certbot and Kubernetes secret updates do."""
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def self_signed(
        self, stem: str, common_name: str, *, san: list[str] | None, rsa_bits: int | None = None
    ) -> CertificatePair:
        """Write a self-signed pair with an optional SAN, for edge cases trustme avoids."""
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if rsa_bits is not None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=30))
        )
        if san is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in san]), critical=False
            )
        cert = builder.sign(key, hashes.SHA256())
        pair = CertificatePair(self.directory / f"{stem}.pem", self.directory / f"{stem}.key")
        self.replace(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        self.replace(
            pair.key,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        return pair


@pytest.fixture
def ca() -> trustme.CA:
    """A throw-away ECDSA CA."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The test CA's certificate as a PEM file, for ``client_context(cafile=...)``."""
    path = tmp_path / "trust-anchor.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def certs(ca: trustme.CA, tmp_path: Path) -> CertFactory:
    """Certificate helpers bound to the test CA and a per-test directory."""
    directory = tmp_path / "certs"
    directory.mkdir()
    return CertFactory(ca, directory)


@pytest.fixture
def loopback() -> type[LoopbackTlsServer]:
    """``async with loopback(ctx, starttls=False) as server:`` runs an echo server."""
    return LoopbackTlsServer


@pytest.fixture
def memory_handshake() -> Callable[..., tuple[ssl.SSLObject, ssl.SSLObject]]:
    """``memory_handshake(server_ctx, client_ctx, sni)``: see ``handshake_in_memory``."""
    return handshake_in_memory


@pytest.fixture
def observing_client(ca_file: Path) -> ssl.SSLContext:
    """A client that verifies the chain but not the host name.

    SNI tests need to see *which* certificate the server chose, including the default
    one served for names it does not cover, so host name checking is off here (and
    only here); the chain is still verified against the test CA.
    """
    context = client_context(cafile=ca_file)
    context.check_hostname = False
    return context
