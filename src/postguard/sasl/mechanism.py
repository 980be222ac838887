"""The skeleton every mechanism in this package builds on (internal; not re-exported).

* :class:`ServerMechanismBase` owns the server contract of :mod:`postguard.sasl.base`: the
  order of ``start``/``respond``/``resume`` (:class:`~postguard.sasl.base.SaslUsageError`
  otherwise), the response size limit, the check that ``resume`` gets the answer the last
  ``Need...`` asked for, :class:`~postguard.sasl.base.VerifierUnavailable` → ``TEMPORARY``, and
  the conversion of :class:`MalformedInput` from a parser into ``Failure(MALFORMED)``. A
  mechanism only writes ``_on_start``, ``_on_respond`` and ``_on_resume``.
* :class:`ClientMechanismBase` tracks whether the exchange has started and ended.
* Field helpers: strict UTF-8 and base64 decoding with the package's limits.

Must not: do I/O; let any exception but ``SaslUsageError`` escape a server mechanism.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable
from typing import Any, TypeAlias

from .base import (
    MAX_IDENTITY_OCTETS,
    MAX_RESPONSE_OCTETS,
    Challenge,
    CramLookup,
    Failure,
    FailureKind,
    NeedCramSecret,
    NeedPassword,
    NeedScramCredentials,
    NeedTokenValidation,
    PasswordVerdict,
    Resumption,
    SaslAuthenticationError,
    SaslUsageError,
    ScramLookup,
    Step,
    Success,
    TokenVerdict,
    VerifierUnavailable,
)

_ANSWERS: dict[type, type] = {
    NeedPassword: PasswordVerdict,
    NeedScramCredentials: ScramLookup,
    NeedCramSecret: CramLookup,
    NeedTokenValidation: TokenVerdict,
}


class MalformedInput(Exception):
    """Raised by parsers inside a mechanism; the state machine turns it into MALFORMED."""


def decode_utf8(data: bytes, *, secret: bool = False) -> str:
    """Decode one field: strict UTF-8, 1..255 octets (``MAX_IDENTITY_OCTETS``).

    Identities may not contain C0 controls or DEL (they end up in logs); a ``secret``
    (password) may hold anything but NUL, as RFC 4616 §2's ``SAFE`` allows.
    """
    if not data or len(data) > MAX_IDENTITY_OCTETS:
        raise MalformedInput("field empty or too long")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedInput("field is not UTF-8") from None
    if secret:
        if "\x00" in text:
            raise MalformedInput("NUL in secret")
    elif any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        raise MalformedInput("control character in identity")
    return text


def check_client_field(value: str, what: str, *, secret: bool = False) -> str:
    """Validate a client-side field as :func:`decode_utf8` would on the server.

    Raises:
        ValueError: naming ``what``, never showing ``value``.
    """
    try:
        decode_utf8(value.encode("utf-8"), secret=secret)
    except (MalformedInput, UnicodeEncodeError):
        raise ValueError(f"{what}: 1..{MAX_IDENTITY_OCTETS} octets of UTF-8 text") from None
    return value


def settle_password(result: Resumption) -> Step:
    """Turn a :class:`PasswordVerdict` into the final step (PLAIN, LOGIN)."""
    if not isinstance(result, PasswordVerdict):
        raise SaslUsageError(f"expected PasswordVerdict, not {type(result).__name__}")
    if result.account is None:
        return Failure("invalid credentials", FailureKind.AUTH_FAILED)
    return Success(result.account)


def decode_base64(text: str) -> bytes:
    """Strict base64 (RFC 4648 §4: alphabet and padding checked), else MalformedInput."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise MalformedInput("bad base64") from None


_Handler: TypeAlias = Callable[[Any], Step]


class _Expect(enum.Enum):
    START = "start"
    RESPONSE = "respond"
    RESUME = "resume"
    NOTHING = "nothing"


class ServerMechanismBase:
    """Shared state machine for the server mechanisms: order checks, limits, parse errors.

    Subclasses implement ``_on_start``, ``_on_respond`` and ``_on_resume``; they may raise
    :class:`MalformedInput`, which becomes ``Failure(MALFORMED)``.
    """

    name: str

    def __init__(self) -> None:
        self._expect = _Expect.START
        self._answer: type = type(None)

    @property
    def is_finished(self) -> bool:
        """True once the mechanism has returned :class:`Success` or :class:`Failure`."""
        return self._expect is _Expect.NOTHING

    def start(self, initial_response: bytes | None) -> Step:
        """See :meth:`SaslServerMechanism.start`."""
        self._enter(_Expect.START)
        if initial_response is not None:
            _require_bytes(initial_response)
        return self._run(self._on_start, initial_response)

    def respond(self, data: bytes) -> Step:
        """See :meth:`SaslServerMechanism.respond`."""
        self._enter(_Expect.RESPONSE)
        _require_bytes(data)
        return self._run(self._on_respond, data)

    def resume(self, result: Resumption) -> Step:
        """See :meth:`SaslServerMechanism.resume`."""
        if self._expect is _Expect.RESUME and not isinstance(
            result, (self._answer, VerifierUnavailable)
        ):
            raise SaslUsageError(
                f"{self.name}: resume() needs {self._answer.__name__}, not {type(result).__name__}"
            )
        self._enter(_Expect.RESUME)
        if isinstance(result, VerifierUnavailable):
            return self._settle(Failure("verifier unavailable", FailureKind.TEMPORARY))
        return self._run(self._on_resume, result)

    def _on_start(self, initial_response: bytes | None) -> Step:
        raise NotImplementedError

    def _on_respond(self, data: bytes) -> Step:
        raise NotImplementedError

    def _on_resume(self, result: Resumption) -> Step:
        raise NotImplementedError

    def _enter(self, call: _Expect) -> None:
        if self._expect is not call:
            raise SaslUsageError(
                f"{self.name}: {call.value}() called, expected {self._expect.value}"
            )

    def _run(self, handler: _Handler, arg: object) -> Step:
        if isinstance(arg, bytes) and len(arg) > MAX_RESPONSE_OCTETS:
            return self._settle(Failure("response too long", FailureKind.MALFORMED))
        try:
            step = handler(arg)
        except MalformedInput as exc:
            step = Failure(str(exc), FailureKind.MALFORMED)
        return self._settle(step)

    def _settle(self, step: Step) -> Step:
        if isinstance(step, Challenge):
            self._expect = _Expect.RESPONSE
        elif isinstance(step, Success | Failure):
            self._expect = _Expect.NOTHING
        else:
            self._expect = _Expect.RESUME
            self._answer = _ANSWERS[type(step)]
        return step


def _require_bytes(data: object) -> None:
    if not isinstance(data, bytes):
        raise SaslUsageError(f"SASL data must be bytes, not {type(data).__name__}")


class ClientMechanismBase:
    """Shared bookkeeping for the client halves: started (by either call) and finished."""

    name: str

    def __init__(self) -> None:
        self._started = False
        self._finished = False

    def _mark_initial(self) -> None:
        if self._started:
            raise SaslUsageError(f"{self.name}: initial_response() must come first")
        self._started = True

    def _begin_respond(self, challenge: bytes) -> bool:
        """Check order; True when this is the first call and no initial response went out."""
        _require_bytes(challenge)
        if self._finished:
            raise SaslUsageError(f"{self.name}: the exchange is over")
        first = not self._started
        self._started = True
        return first

    def verify_final(self, final_data: bytes | None = None) -> None:
        """Nothing to prove for a one-way mechanism; extra success data is an error."""
        if final_data:
            raise SaslAuthenticationError(f"{self.name}: unexpected data with success")
        self._finished = True
