"""One boundary that translates I/O exceptions into postguard's own (httpcore's map_exceptions).

Everything above ``net/`` catches :class:`NetError` subclasses, never
``OSError``/``ssl.SSLError``/``TimeoutError`` directly.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator


class NetError(Exception):
    """Base class: the connection can no longer be used."""


class ReadTimeout(NetError):
    """The peer sent nothing within the allowed time."""


class PeerClosed(NetError):
    """The peer closed or reset the connection."""


class TlsHandshakeFailed(NetError):
    """The TLS handshake did not complete."""


class Interrupted(NetError):
    """Our own side asked the reader to stop (graceful shutdown)."""


@contextlib.contextmanager
def map_exceptions() -> Iterator[None]:
    """Translate transport exceptions raised inside the block."""
    try:
        yield
    except NetError:
        raise
    except TimeoutError as exc:
        raise ReadTimeout(str(exc) or "timeout") from exc
    except ssl.SSLError as exc:
        raise TlsHandshakeFailed(exc.reason or str(exc)) from exc
    except (ConnectionError, OSError) as exc:
        raise PeerClosed(str(exc) or type(exc).__name__) from exc
