"""The sans-IO SMTP protocol engine.

Bytes in, events out, replies rendered to bytes; no sockets, clocks,
randomness or logging (STYLE.md §2). ``server.py`` is the server side; the
client side will sit beside it in ``client.py``.
"""

from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .options import ServerOptions
from .replies import Reply
from .server import NEED_DATA, PAUSED, ServerConnection
from .state import State

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "ServerConnection",
    "ServerOptions",
    "State",
]
