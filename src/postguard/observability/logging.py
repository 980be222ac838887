"""Structured logging: one record per event, as text or JSON lines.

Callers use :func:`log_event` with an event from ``events.py`` and keyword
fields (``session``, ``listener``, ``client``...). Secrets never go in: the
session passes no AUTH payload or message body, and this module drops any
field whose name looks like a secret as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from enum import Enum
from typing import Any

LOGGER = logging.getLogger("postguard")
_SECRET_FIELDS = frozenset({"password", "secret", "token", "payload", "initial_response"})
_FIELDS_ATTR = "pg_fields"


def log_event(
    event: Enum, level: int = logging.INFO, /, *, exc_info: bool = False, **fields: Any
) -> None:
    """Log one structured event.

    Args:
        event: a member of a catalogue in ``observability/events.py``.
        level: the logging level.
        exc_info: attach the exception being handled (its traceback goes to the log only).
        **fields: structured context; values must be JSON-serialisable.
    """
    if not LOGGER.isEnabledFor(level):
        return
    clean = {k: v for k, v in fields.items() if k not in _SECRET_FIELDS and v is not None}
    LOGGER.log(
        level,
        str(event.value),
        exc_info=exc_info,
        extra={_FIELDS_ATTR: clean, "pg_event": event.value},
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, event, message, and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": getattr(record, "pg_event", record.name),
        }
        if not hasattr(record, "pg_event"):
            out["message"] = record.getMessage()
        out.update(getattr(record, _FIELDS_ATTR, {}))
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable: ``time level event key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        fields = getattr(record, _FIELDS_ATTR, {})
        parts = [f"{k}={_quote(v)}" for k, v in fields.items()]
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        if parts:
            line += " " + " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (" " in text or not text) else text


def configure(fmt: str = "text", level: str = "info") -> None:
    """Send postguard's logs to stderr in the given format and level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("postguard")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
