"""The server engine's state machine: every state and every transition lives here.

Theory of operation
-------------------
The engine is always in one :class:`State`. A command moves it only through the
*reply* the session sends for that command: the table ``_TRANSITIONS`` maps
(command type, reply class) to the next state, and ``_ALLOWED`` says in which
states a command may be given to the session at all (otherwise the engine
answers 503 itself). Keeping both tables in this one file (h11's rule 1) means
a reader can check the whole protocol order in one place.

    GREETING ──220──▶ NEED_EHLO ──EHLO/HELO 250──▶ READY ──MAIL 250──▶ MAIL
    MAIL ──RCPT 250──▶ RCPT ──DATA 354──▶ DATA ──end of data──▶ READY
    RCPT/MAIL ──BDAT──▶ BDAT ──chunk──▶ BDAT_WAIT ──BDAT LAST──▶ READY
    NEED_EHLO/READY ──STARTTLS 220──▶ TLS_PENDING ──tls_established()──▶ NEED_EHLO
    READY ──AUTH 334──▶ AUTH ──response 334──▶ AUTH ──235 or error──▶ READY
    any ──421 or QUIT 221──▶ CLOSED; fatal violation ──▶ ERROR

Must not: parse bytes, or know whether we are a server or a client beyond the
names of the states.
"""

from __future__ import annotations

from enum import Enum, auto

from . import commands as c


class State(Enum):
    """Where the conversation is."""

    GREETING = auto()  # connected; the session has not sent its greeting yet
    NEED_EHLO = auto()  # greeted (or TLS just established): EHLO/HELO required
    READY = auto()  # EHLO done, no transaction
    MAIL = auto()  # MAIL accepted, no recipient yet
    RCPT = auto()  # at least one recipient accepted
    DATA = auto()  # receiving DATA content
    BDAT = auto()  # receiving a BDAT chunk
    BDAT_WAIT = auto()  # between BDAT chunks of one transaction
    AUTH = auto()  # a SASL exchange: 334 sent, waiting for the client's response line
    TLS_PENDING = auto()  # 220 sent to STARTTLS; waiting for the handshake
    CLOSED = auto()
    ERROR = auto()


TRANSACTION_STATES = frozenset({State.MAIL, State.RCPT, State.DATA, State.BDAT, State.BDAT_WAIT})
_AFTER_EHLO = frozenset({State.READY, State.MAIL, State.RCPT, State.BDAT_WAIT})
_ANY_OPEN = frozenset({State.NEED_EHLO, *_AFTER_EHLO})

# In which states the engine hands a command to the session. Outside them the
# engine answers the sequence error itself (see ``sequence_error``).
_ALLOWED: dict[type[c.Command], frozenset[State]] = {
    c.Ehlo: _ANY_OPEN,
    c.Helo: _ANY_OPEN,
    c.MailFrom: frozenset({State.READY}),
    c.RcptTo: frozenset({State.MAIL, State.RCPT}),
    c.StartData: frozenset({State.RCPT}),
    c.Rset: _ANY_OPEN,
    c.Noop: _ANY_OPEN,
    c.Quit: _ANY_OPEN,
    c.Vrfy: _ANY_OPEN,
    c.Expn: _ANY_OPEN,
    c.Help: _ANY_OPEN,
    # RFC 3207 §4: STARTTLS outside a transaction only.
    c.StartTls: frozenset({State.NEED_EHLO, State.READY}),
    # RFC 4954 §4: AUTH is not permitted during a mail transaction.
    c.Auth: frozenset({State.READY}),
    c.AuthResponse: frozenset({State.AUTH}),
}

# (command, positive reply) -> next state. A negative reply leaves the state alone,
# except where listed in _ON_NEGATIVE. None means "unchanged".
_ON_POSITIVE: dict[type[c.Command], State | None] = {
    c.Ehlo: State.READY,
    c.Helo: State.READY,
    c.MailFrom: State.MAIL,
    c.RcptTo: State.RCPT,
    c.StartData: State.DATA,
    c.Rset: None,  # handled in next_state: back to READY or NEED_EHLO
    c.Noop: None,
    c.Vrfy: None,
    c.Expn: None,
    c.Help: None,
    c.Quit: State.CLOSED,
    c.StartTls: State.TLS_PENDING,
    c.Auth: None,  # 235: authenticated, still READY; 334: see next_state
    c.AuthResponse: State.READY,
    c.EndOfChunk: State.BDAT_WAIT,
    c.EndOfMessage: State.READY,
}
_ON_NEGATIVE: dict[type[c.Command], State] = {
    c.AuthResponse: State.READY,  # RFC 4954 §4: a failed exchange ends the AUTH command
    c.EndOfMessage: State.READY,  # a refused message ends the transaction
    c.EndOfChunk: State.READY,  # RFC 3030 §2: a refused chunk fails the transaction
}

# The positive reply code each command's success is signalled with.
EXPECTED_POSITIVE: dict[type[c.Command], frozenset[int]] = {
    c.StartData: frozenset({354}),
    c.StartTls: frozenset({220}),
    c.Quit: frozenset({221}),
    c.Vrfy: frozenset({250, 251, 252}),
    c.Help: frozenset({211, 214}),
    c.Auth: frozenset({235, 334}),
    c.AuthResponse: frozenset({235, 334}),
}


_ANY_2XX = frozenset(range(200, 300))  # built once: next_state runs for every reply
_NOWHERE: frozenset[State] = frozenset()


def is_allowed(command: type[c.Command], state: State) -> bool:
    """Whether ``command`` may be handed to the session in ``state``."""
    return state in _ALLOWED.get(command, _NOWHERE)


def next_state(state: State, command: type[c.Command], code: int, *, greeted: bool) -> State:
    """The state after the session answered ``command`` with ``code``.

    Args:
        state: the current state.
        command: the type of the command being answered.
        code: the reply code sent.
        greeted: whether EHLO/HELO has completed in this TLS epoch (for RSET).
    """
    if code == 421:
        return State.CLOSED  # RFC 5321 §3.8: 421 closes the channel
    positive = code in EXPECTED_POSITIVE.get(command, _ANY_2XX)
    if command is c.Rset and positive:
        return State.READY if greeted else State.NEED_EHLO
    if code == 334 and command in (c.Auth, c.AuthResponse):
        return State.AUTH  # a challenge: the next line is a SASL response
    if positive:
        target = _ON_POSITIVE.get(command)
        return state if target is None else target
    return _ON_NEGATIVE.get(command, state)
