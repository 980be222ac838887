"""The one exception the config package raises.

Owns `ConfigError`: every problem with a configuration file (missing file, TOML syntax,
unknown key, wrong type, bad value, contradictory settings) becomes one of these, naming the
file and the dotted key path so the operator can go straight to the line. The CLI prints
`str(err)` as a single line and exits 78 (EX_CONFIG) without a traceback (STYLE.md §4).

Must not: carry secrets. Messages quote the offending value, and no key in the config schema
holds a secret (credentials live in `accounts/`), so that is safe today; a future secret key
must redact its value before building the message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ConfigError"]


class ConfigError(Exception):
    """A configuration file could not be read, parsed or validated.

    Attributes:
        path: The file that was being loaded, or None for built-in defaults.
        key: Dotted key path of the offending setting, e.g. ``listener.mx.tls`` or
            ``listener.mx.addresses[1]``. Empty when the problem is not about one key
            (unreadable file, TOML syntax error).
        message: What is wrong, in one line, without the file or key.
    """

    path: Path | None
    key: str
    message: str

    def __init__(self, path: Path | None, key: str, message: str) -> None:
        super().__init__(path, key, message)
        self.path = path
        self.key = key
        self.message = message

    def __str__(self) -> str:
        """Render ``<file>: <key>: <message>``, leaving out the parts that are absent."""
        parts = [str(self.path)] if self.path is not None else []
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)
