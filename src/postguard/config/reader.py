"""The typed TOML accessor the loader is built from (internal to `postguard.config`).

Owns `Table`, a view of one TOML table that knows its dotted key path, checks value types
(TOML's names: "expected a string, got integer") and rejects keys it was not told about; the
small `Reader` factories that convert one value each (`string`, `array`, `quantity`, ...);
and `read_toml`, which turns unreadable files and TOML syntax errors into `ConfigError`.

Theory of operation: a section is a mapping ``key -> Reader``. `read_section` checks the
table's keys against it, then runs the reader of each key present. A reader raises
`ConfigError` at its own key; parse functions it wraps raise `ValueError` with a message,
and the reader adds the file and key. Index ``[i]`` is appended for array items.

Must not: know the schema. Which keys exist and what they mean is `load.py`'s business.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, TypeVar

from postguard.config.errors import ConfigError
from postguard.config.syntax import quote

__all__ = [
    "Reader",
    "Table",
    "array",
    "boolean",
    "count",
    "describe_toml_error",
    "non_empty",
    "one_of",
    "quantity",
    "read_section",
    "read_toml",
    "string",
]

T = TypeVar("T")

# Most specific first: bool is an int and datetime is a date in Python.
_TOML_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (datetime.datetime, "datetime"),
    (datetime.date, "date"),
    (datetime.time, "time"),
)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"(.*) \(at (line \d+, column \d+|end of document)\)", re.DOTALL)


def _type_name(value: object) -> str:
    return next(name for kind, name in _TOML_TYPE_NAMES if isinstance(value, kind))


class Table:
    """One TOML table and its dotted key path: typed access, unknown keys rejected."""

    __slots__ = ("_data", "_key", "_source")

    def __init__(self, source: Path | None, key: str, data: Mapping[str, object]) -> None:
        self._source = source
        self._key = key
        self._data = data

    def __contains__(self, name: str) -> bool:
        return name in self._data

    def names(self) -> list[str]:
        """Keys present in the table, in file order."""
        return list(self._data)

    def path_of(self, name: str, index: int | None = None) -> str:
        """Dotted key path of ``name`` (quoted if not a bare key), with ``[index]``."""
        part = name if _BARE_KEY.fullmatch(name) else quote(name)
        path = f"{self._key}.{part}" if self._key else part
        return path if index is None else f"{path}[{index}]"

    def error(self, name: str, message: str, index: int | None = None) -> ConfigError:
        """Build (not raise) the `ConfigError` for ``name`` (or item ``index`` of it)."""
        return ConfigError(self._source, self.path_of(name, index), message)

    def whole_table_error(self, message: str) -> ConfigError:
        """Build the `ConfigError` for a problem of the table as a whole (no one key)."""
        return ConfigError(self._source, self._key, message)

    def check_keys(self, allowed: Collection[str]) -> None:
        """Raise at the first key (in file order) that is not in ``allowed``."""
        for name in self._data:
            if name not in allowed:
                raise self.error(name, f"unknown key (expected: {', '.join(allowed)})")

    def value(self, name: str, kinds: tuple[type, ...], expected: str) -> Any:
        """Return the value at ``name`` if it has one of ``kinds``; bool is never an int."""
        value = self._data[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise self.error(name, f"expected {expected}, got {_type_name(value)}")
        return value

    def table(self, name: str) -> Table:
        """The sub-table ``name``; an empty one if absent."""
        data = self.value(name, (dict,), "a table") if name in self._data else {}
        return Table(self._source, self.path_of(name), data)

    def tables(self, name: str) -> list[Table]:
        """The array of tables ``name`` (``[[name]]``), which must be present."""
        items = self.value(name, (list,), f"an array of tables ([[{self.path_of(name)}]])")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise self.error(name, f"expected a table, got {_type_name(item)}", index)
        return [
            Table(self._source, self.path_of(name, index), item) for index, item in enumerate(items)
        ]

    def items(self, name: str, parse: Callable[[str], T]) -> tuple[T, ...]:
        """An array of strings, each parsed; errors and duplicates name ``name[i]``."""
        values = self.value(name, (list,), "an array of strings")
        parsed: list[T] = []
        for index, item in enumerate(values):
            if not isinstance(item, str):
                raise self.error(name, f"expected a string, got {_type_name(item)}", index)
            try:
                value = parse(item)
            except ValueError as exc:
                raise self.error(name, str(exc), index) from exc
            if value in parsed:
                first = self.path_of(name, parsed.index(value))
                raise self.error(name, f"duplicate of {first}", index)
            parsed.append(value)
        return tuple(parsed)


Reader = Callable[[Table, str], Any]


def boolean(table: Table, name: str) -> bool:
    """Read a TOML boolean."""
    return bool(table.value(name, (bool,), "a boolean"))


def string(parse: Callable[[str], Any]) -> Reader:
    """A reader for one string, converted by ``parse`` (which raises `ValueError`)."""

    def read(table: Table, name: str) -> Any:
        try:
            return parse(table.value(name, (str,), "a string"))
        except ValueError as exc:
            raise table.error(name, str(exc)) from exc

    return read


def array(parse: Callable[[str], Any]) -> Reader:
    """A reader for an array of strings, each converted by ``parse``."""
    return lambda table, name: table.items(name, parse)


def one_of(*allowed: str, convert: Callable[[str], Any] = str) -> Callable[[str], Any]:
    """A parse function accepting only ``allowed`` (listed in the error), then ``convert``."""

    def parse(text: str) -> Any:
        if text not in allowed:
            raise ValueError(f"unknown value {quote(text)} (expected: {', '.join(allowed)})")
        return convert(text)

    return parse


def non_empty(text: str) -> str:
    """Accept a non-empty string without NUL (names and paths)."""
    if not text or "\0" in text:
        raise ValueError("must be a non-empty name")
    return text


def count(minimum: int, maximum: int | None = None) -> Reader:
    """A reader for an integer of at least ``minimum`` (and at most ``maximum``; never
    a boolean)."""

    def read(table: Table, name: str) -> int:
        number: int = table.value(name, (int,), "an integer")
        if number < minimum:
            raise table.error(name, f"must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            raise table.error(name, f"must be at most {maximum}, got {number}")
        return number

    return read


def quantity(parse: Callable[[Any], T], kind: str, example: str, *, positive: bool) -> Reader:
    """A reader for a size or duration: a string with a unit, or a bare integer."""

    def read(table: Table, name: str) -> T:
        raw = table.value(name, (str, int), f"a {kind} such as {quote(example)}")
        try:
            value = parse(raw)
        except ValueError as exc:
            raise table.error(name, str(exc)) from exc
        if positive and not value:
            raise table.error(name, f"must be greater than 0, got {quote(str(raw))}")
        return value

    return read


def read_section(table: Table, readers: Mapping[str, Reader]) -> dict[str, Any]:
    """Check the table's keys, then read the ones present: ``{key: converted value}``."""
    table.check_keys(readers)
    return {name: read(table, name) for name, read in readers.items() if name in table}


def read_toml(path: Path) -> dict[str, Any]:
    """Read and parse a TOML file.

    Args:
        path: The file; errors name it as given.

    Returns:
        The parsed document.

    Raises:
        ConfigError: The file cannot be read, is not UTF-8, or is not valid TOML (the
            message then starts with ``line L, column C:`` as tomllib reports it).
    """
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"not valid UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", describe_toml_error(exc)) from exc


def describe_toml_error(exc: tomllib.TOMLDecodeError) -> str:
    """Render a TOML syntax error as ``line L, column C: <problem>``."""
    # Python 3.11's TOMLDecodeError has no lineno attribute; the position is in the text.
    match = _TOML_POSITION.fullmatch(str(exc))
    return f"{match.group(2)}: {match.group(1)}" if match else str(exc)
