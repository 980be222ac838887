"""The closed catalogue of settings that weaken security, and finding them in a `Config`.

Owns `CATALOGUE`: one `WeakeningRule` per setting that makes postguard less safe than its
defaults, with the key path an operator writes and one line saying what it weakens
(STYLE.md §3). `find_weakenings` returns the rules that are in effect; the server logs each
as a WARNING at start-up, and `sample.py` marks these keys ``# WEAKENS SECURITY:``.

A rule is reported only when it takes effect: ``allow_plaintext`` on a disabled submission
listener changes nothing, so it is not reported (it will be once the listener is enabled);
``allow_insecure_jwks_url`` is reported only while ``jwks_url`` is an ``http://`` URL;
``delivery.lmtp.tls = "none"`` only for a TCP server that is not on loopback (mail to a Unix
socket or to 127.0.0.1 never crosses a network).

Not here on purpose: CRAM-MD5. It is not a setting but a property of the accounts (it is
offered only when an account has a CRAM-MD5 secret), so the credential store reports it
(`accounts.file_store.FileCredentialStore.warnings`), and the server logs that at start-up.
Binding a listener to a non-loopback address is not a weakening: that is what a mail server
is for.

Adding a weakening: add the setting to `schema.py`/`load.py` with a name that says so
(``allow_...``; a value of an existing setting, like ``tls = "none"``, names itself), then add
a rule here; the tests check every rule's key is in the sample file.

Must not: log or raise. Reporting is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postguard.config.schema import LEGACY_TLS_VERSIONS, Config
from postguard.config.syntax import is_loopback

__all__ = ["CATALOGUE", "Weakening", "WeakeningRule", "find_weakenings"]


@dataclass(frozen=True, slots=True)
class WeakeningRule:
    """One catalogue entry.

    Attributes:
        key: Dotted key path of the setting, e.g. ``tls.allow_legacy_tls_versions``.
        explanation: One line: what the setting weakens, and the threat.
        is_active: Whether the rule is in effect in a given config.
    """

    key: str
    explanation: str
    is_active: Callable[[Config], bool]


@dataclass(frozen=True, slots=True)
class Weakening:
    """A weakening found in a configuration.

    Attributes:
        key: Dotted key path of the setting.
        source: The file it came from, None for built-in defaults.
        message: What it weakens.
    """

    key: str
    source: Path | None
    message: str

    def __str__(self) -> str:
        """Render ``<file>: <key>: <message>`` (without the file for built-in defaults)."""
        prefix = f"{self.source}: " if self.source is not None else ""
        return f"{prefix}{self.key}: {self.message}"


def _lmtp_tls_off_the_host(config: Config) -> bool:
    lmtp = config.delivery.lmtp
    if lmtp is None or lmtp.address is None or lmtp.tls != "none":
        return False
    return not is_loopback(lmtp.address[0])


CATALOGUE: tuple[WeakeningRule, ...] = (
    WeakeningRule(
        key="listener.submission.allow_plaintext",
        explanation=(
            "submission accepts AUTH and MAIL without STARTTLS, so passwords and mail can "
            "cross the network in cleartext"
        ),
        is_active=lambda config: (
            config.listener("submission").enabled and config.listener("submission").allow_plaintext
        ),
    ),
    WeakeningRule(
        key="auth.oauth.allow_insecure_jwks_url",
        explanation=(
            "OAuth signing keys are fetched over plain http, so anyone on the path can "
            "substitute their own keys and forge tokens for any account"
        ),
        is_active=lambda config: (
            config.auth.oauth is not None
            and config.auth.oauth.allow_insecure_jwks_url
            and (config.auth.oauth.jwks_url or "").startswith("http://")
        ),
    ),
    WeakeningRule(
        key="delivery.lmtp.tls",
        explanation=(
            'LMTP delivery to a server on another host uses no TLS ("none"), so mail '
            "crosses the network in cleartext and the server is not authenticated"
        ),
        is_active=_lmtp_tls_off_the_host,
    ),
    WeakeningRule(
        key="tls.allow_legacy_tls_versions",
        explanation=(
            'permits tls.min_version "1.0" and "1.1", TLS versions deprecated by RFC 8996'
        ),
        is_active=lambda config: config.tls.allow_legacy_tls_versions,
    ),
    WeakeningRule(
        key="tls.min_version",
        explanation=(
            "accepts TLS 1.0 and 1.1, deprecated by RFC 8996 (weak ciphers, SHA-1 handshakes)"
        ),
        is_active=lambda config: config.tls.min_version in LEGACY_TLS_VERSIONS,
    ),
)


def find_weakenings(config: Config) -> list[Weakening]:
    """List the settings in ``config`` that weaken security, in catalogue order.

    Args:
        config: A loaded configuration.

    Returns:
        One `Weakening` per catalogue rule in effect; empty for the defaults.
    """
    return [
        Weakening(key=rule.key, source=config.source, message=rule.explanation)
        for rule in CATALOGUE
        if rule.is_active(config)
    ]
