"""Create AUTH accounts for test servers, through the code paths operators use.

Two ways in, both writing the real accounts file (format: ``accounts/file_store.py``):

* :func:`add_account` builds the account with ``accounts.provisioning.with_password`` and
  writes it with ``FileCredentialStore.add`` (lock, re-read, atomic replace), exactly what
  ``postguard user add`` does, in-process;
* :func:`add_account_with_cli` runs ``python -m postguard user add ... --password-stdin``
  as a subprocess (the password on standard input, never on the command line).

Either works before the server starts (point ``[auth] accounts_file`` at the file, see
:func:`auth_toml`) or while it runs: the server's store re-reads the file when it changes,
every ``[tls] watch_interval``, and :func:`wait_for_account` waits (bounded) until it has.

Cost: ``add_account`` hashes with :data:`CHEAP_HASHER`, real argon2id with the smallest
parameters argon2 allows. The parameters travel inside the PHC string, so the server
verifies those hashes cheaply too: PLAIN/LOGIN then cost milliseconds instead of the ~1 s
of the production parameters on the 2-core VM. The CLI path, and unknown users (whose
dummy hash uses the production parameters), still pay the full price; tests keep them rare.

For XOAUTH2 and OAUTHBEARER, :class:`OAuthIssuer` plays the identity provider: a real
P-256 key, its JWKS in a file (``[auth.oauth] jwks_file``), and ES256 JWTs signed with PyJWT.

Must not: write the accounts file by hand (a test of the format belongs to ``tests/accounts``), or
put a password on a command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import argon2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from helpers.servers import InProcessServer
from postguard.accounts import Account, FileCredentialStore
from postguard.accounts.model import normalize_account_name, normalize_address_pattern
from postguard.accounts.passwords import Argon2idHasher
from postguard.accounts.provisioning import with_password
from postguard.accounts.scram_keys import MIN_SCRAM_ITERATIONS
from postguard.config.syntax import quote

# argon2id at its minimum: 1 pass over 8 KiB, one lane (still a real argon2id hash).
CHEAP_HASHER = Argon2idHasher(
    argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=1,
        memory_cost=8,
        parallelism=1,
    )
)
# The store re-reads the accounts file this often in tests ([tls] watch_interval drives
# both the certificate and the accounts watchers).
TEST_WATCH_INTERVAL = "100ms"
# Small but non-zero, so the delay code runs without making every failure slow.
TEST_BASE_DELAY = "10ms"
TEST_MAX_DELAY = "50ms"
RELOAD_TIMEOUT_SECONDS = 15.0
CLI_TIMEOUT_SECONDS = 120.0  # two production argon2 runs and an interpreter start-up


@dataclass(frozen=True)
class TestAccount:
    """What a test needs to log in as an account it created."""

    __test__ = False  # not a pytest test class

    name: str
    password: str
    addresses: tuple[str, ...]


def add_account(
    accounts_file: Path,
    name: str,
    password: str,
    *,
    addresses: Iterable[str],
    cram_md5: bool = False,
    scram: bool = True,
    disabled: bool = False,
    hasher: Argon2idHasher = CHEAP_HASHER,
) -> TestAccount:
    """Add an account to ``accounts_file`` as ``postguard user add`` would.

    Args:
        accounts_file: The accounts file (created with its directory if missing).
        name: Account name (the SASL user name).
        password: Its password (checked by the same rules as the CLI's).
        addresses: Sender addresses or ``*@domain`` patterns it may use.
        cram_md5: Also store the CRAM-MD5 secret.
        scram: Store SCRAM-SHA-256 keys (at the RFC 7677 minimum of 4096 iterations).
        disabled: Write the account disabled.
        hasher: The argon2id hasher (cheap by default, see the module docstring).

    Returns:
        The name (canonical), password and addresses.
    """
    canonical = normalize_account_name(name)
    patterns = tuple(dict.fromkeys(normalize_address_pattern(a) for a in addresses))
    account = with_password(
        Account(name=canonical, addresses=patterns, disabled=disabled),
        password,
        scram=scram,
        cram_md5=cram_md5,
        hasher=hasher,
        scram_iterations=MIN_SCRAM_ITERATIONS,
    )
    FileCredentialStore(accounts_file, hasher=hasher).add(account)
    return TestAccount(canonical, password, patterns)


def add_account_with_cli(
    data_dir: Path,
    name: str,
    password: str,
    *,
    addresses: Iterable[str],
    extra_args: Iterable[str] = (),
    config: Path | None = None,
) -> TestAccount:
    """Run ``python -m postguard user add NAME --address ... --password-stdin``.

    Blocking (argon2 with the production parameters): call it before the server starts, or
    through ``asyncio.to_thread`` while an in-process server runs.

    Args:
        data_dir: ``--data-dir``: the account lands in ``<data_dir>/accounts.toml``
            (unless ``config`` names another ``auth.accounts_file``).
        name: Account name.
        password: Sent on standard input, never as an argument.
        addresses: One ``--address`` each.
        extra_args: More options, e.g. ``("--cram-md5",)``.
        config: ``--config``: a server's configuration file, to use its accounts file.

    Raises:
        AssertionError: the command failed (its stderr is in the message).
    """
    patterns = tuple(addresses)
    argv = [sys.executable, "-m", "postguard", "user", "add", name, "--password-stdin"]
    argv += ["--data-dir", str(data_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    for address in patterns:
        argv += ["--address", address]
    argv += list(extra_args)
    # SECURITY: the property operators rely on: the password never is an argument.
    assert all(password not in arg for arg in argv)
    env = {k: v for k, v in os.environ.items() if k != "POSTGUARD_DATA_DIR"}
    done = subprocess.run(
        argv,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"postguard user add failed ({done.returncode}): {done.stderr}"
    return TestAccount(normalize_account_name(name), password, tuple(a.lower() for a in patterns))


async def wait_for_account(
    server: InProcessServer,
    name: str,
    *,
    present: bool = True,
    timeout: float = RELOAD_TIMEOUT_SECONDS,
) -> Account | None:
    """Wait until the running server's store has (or, ``present=False``, lacks) ``name``.

    A bounded poll of the server's own ``FileCredentialStore`` (it reloads every
    ``[tls] watch_interval``); nothing is forced, so this proves the reload happens by
    itself.

    Raises:
        AssertionError: the store did not get there within ``timeout`` seconds.
    """
    assert server.server is not None, "server is not running"
    store = server.server.accounts
    deadline = time.monotonic() + timeout
    while True:
        account = store.get(name)
        if (account is not None) == present:
            return account
        assert time.monotonic() < deadline, f"account {name!r} present={not present} after reload"
        await asyncio.sleep(0.02)


def auth_toml(
    accounts_file: Path | None = None,
    *,
    oauth: Mapping[str, str] | None = None,
    **auth: object,
) -> str:
    """Configuration text for AUTH tests: fast reloads, small delays, and ``[auth]`` keys.

    Args:
        accounts_file: ``auth.accounts_file`` (absolute), or None for ``<data_dir>/accounts.toml``.
        oauth: ``[auth.oauth]`` keys (string values, quoted here).
        **auth: Further ``[auth]`` keys: ``str`` values are quoted, ``bool`` and ``int``
            written as TOML, sequences as arrays of strings. ``base_delay`` and
            ``max_delay`` default to :data:`TEST_BASE_DELAY`/:data:`TEST_MAX_DELAY`.

    Returns:
        TOML for ``extra_toml`` of ``server_factory``.
    """
    keys: dict[str, object] = {"base_delay": TEST_BASE_DELAY, "max_delay": TEST_MAX_DELAY}
    if accounts_file is not None:
        keys["accounts_file"] = str(accounts_file)
    keys.update(auth)
    lines = ["[tls]", f'watch_interval = "{TEST_WATCH_INTERVAL}"', "", "[auth]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items()]
    if oauth is not None:
        lines += ["", "[auth.oauth]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in oauth.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return quote(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(quote(str(item)) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


OAUTH_ISSUER = "https://idp.postguard.test"
OAUTH_AUDIENCE = "postguard-smtp-tests"
TOKEN_LIFETIME_SECONDS = 3600


@dataclass(frozen=True)
class OAuthIssuer:
    """A stand-in identity provider: one ES256 key, published as a JWKS file."""

    jwks_file: Path
    private_key: ec.EllipticCurvePrivateKey
    kid: str = "postguard-test-key"
    issuer: str = OAUTH_ISSUER
    audience: str = OAUTH_AUDIENCE

    @classmethod
    def create(cls, directory: Path) -> OAuthIssuer:
        """Generate a key and write its public half to ``directory/jwks.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        issuer = cls(directory / "jwks.json", ec.generate_private_key(ec.SECP256R1()))
        jwk = ECAlgorithm.to_jwk(issuer.private_key.public_key(), as_dict=True)
        document = {"keys": [{**jwk, "kid": issuer.kid, "alg": "ES256", "use": "sig"}]}
        issuer.jwks_file.write_text(json.dumps(document), encoding="utf-8")
        return issuer

    def oauth_toml_keys(self) -> dict[str, str]:
        """The ``[auth.oauth]`` keys for :func:`auth_toml`."""
        return {"jwks_file": str(self.jwks_file), "issuer": self.issuer, "audience": self.audience}

    def token(self, email: str, *, expires_in: float = TOKEN_LIFETIME_SECONDS) -> str:
        """An ES256 access token for ``email`` (a verified ``email`` claim).

        Args:
            email: The identity; the account listing this address is the one logged in.
            expires_in: Seconds until ``exp``; negative for an expired token (beyond the
                validator's 30 s of leeway, use at least a few minutes).
        """
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"subject-{email}",
            "email": email,
            "email_verified": True,
            "iat": now - 60 if expires_in > 0 else now + int(expires_in) - 60,
            "exp": now + int(expires_in),
        }
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})


# ------------------------------------------------------------------ interop servers

INTEROP_PASSWORD = "correct-horse-battery-staple"  # safe in URLs, config files and argv
INTEROP_ADDRESSES = ("alice@localhost", "alice@example.org", "*@example.org")


async def start_auth_server(
    server_factory: Callable[..., Awaitable[InProcessServer]],
    directory: Path,
    *,
    cram_md5: bool = False,
    oauth: OAuthIssuer | None = None,
) -> tuple[InProcessServer, TestAccount]:
    """Start an in-process server with one account, ``alice``, for real clients.

    ``alice`` may send as ``alice@localhost`` and anything at ``example.org`` (so the
    interop harness's default sender ``sender@example.org`` is hers), and owns
    ``alice@example.org`` exactly, the identity of ``oauth`` tokens.

    Args:
        server_factory: The ``server_factory`` fixture.
        directory: Where the accounts file goes (``directory/accounts.toml``).
        cram_md5: Give alice a CRAM-MD5 secret (so CRAM-MD5 is offered).
        oauth: Configure ``[auth.oauth]`` for this issuer (OAUTHBEARER, XOAUTH2).
    """
    accounts_file = directory / "accounts.toml"
    alice = add_account(
        accounts_file,
        "alice",
        INTEROP_PASSWORD,
        addresses=INTEROP_ADDRESSES,
        cram_md5=cram_md5,
    )
    keys = oauth.oauth_toml_keys() if oauth is not None else None
    server = await server_factory(auth_toml(accounts_file, oauth=keys))
    return server, alice


def assert_authenticated_delivery(
    messages: list[bytes],
    marker: str,
    *,
    rcpt: str = "test@localhost",
    tls: str = "TLSv1.3",
) -> bytes:
    """Assert one message carrying ``marker`` arrived over an authenticated TLS session.

    Its Received header (the first, ours) must say ``with ESMTPSA`` (RFC 3848: ESMTP,
    TLS, AUTH), name the TLS version, and, by default, not name the account.

    Returns:
        The stored message.
    """
    assert len(messages) == 1, f"expected 1 message in the Maildir, found {len(messages)}"
    [message] = messages
    header, sep, body = message.partition(b"\r\n\r\n")
    assert sep, f"no header/body separator in {message[:400]!r}"
    assert marker.encode() in body, f"marker {marker} not in body {body[:400]!r}"
    unfolded = re.sub(r"\r\n[ \t]+", " ", header.decode("utf-8"))
    received = next(line for line in unfolded.split("\r\n") if line.startswith("Received: "))
    assert " with ESMTPSA id " in received, received
    assert f"(using {tls} with cipher " in received, received
    assert f"for <{rcpt}>;" in received, received
    assert "authenticated sender" not in received, received
    return message
