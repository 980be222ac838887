"""LmtpAgent's outcome mapping, against a scripted LMTP server on loopback.

Covers what a real store rarely does on demand: a refused connection, a silent
server (timeout), 4xx/5xx to MAIL, mixed RCPT replies, a 4xx to DATA, mixed
per-recipient final replies (RFC 2033 §4.2), a connection lost between final
replies, a 421, a malformed reply (protocol error), ``tls = "required"`` when
STARTTLS is not offered (nothing but LHLO is sent), opportunistic TLS without
STARTTLS, a server without PIPELINING (one command at a time, no DATA when no
recipient was accepted), malformed and injected addresses (refused before they
reach the wire), SIZE, BODY=8BITMIME, the null reverse path, duplicate
mailboxes, and the constructor's configuration errors.

The scripted server is the "outside world" of STYLE.md §5: a real TCP server
on 127.0.0.1, port 0, answering one connection from a :class:`Script`. Real
Dovecot, STARTTLS and the Unix socket are in ``test_lmtp_dovecot.py``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from postguard.delivery.base import Delivered, PermanentFailure, TemporaryFailure
from postguard.delivery.lmtp import LmtpAgent

SERVER_TIMEOUT_SECONDS = 10.0
CONTENT = b"From: a@example.org\r\nSubject: test\r\n\r\nhello\r\n.dot\r\n"
SENDER = "sender@example.org"


@dataclass
class Script:
    """How the scripted server answers. Addresses are keyed without angle brackets."""

    greeting: bytes | None = b"220 lmtp.example.test LMTP ready\r\n"
    capabilities: tuple[str, ...] = ("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")
    starttls: bytes = b"454 4.7.0 TLS not available\r\n"
    mail: bytes = b"250 2.1.0 OK\r\n"
    rcpt: dict[str, bytes] = field(default_factory=dict)
    data: bytes = b"354 OK\r\n"
    final: dict[str, bytes] = field(default_factory=dict)
    close_after_finals: int | None = None


@dataclass
class Seen:
    """What the scripted server received."""

    lines: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    error: BaseException | None = None

    @property
    def verbs(self) -> list[str]:
        return [line.split(b" ", 1)[0].split(b":", 1)[0].decode().upper() for line in self.lines]


class ScriptedLmtp:
    """A one-connection LMTP server on 127.0.0.1 that follows a :class:`Script`."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen = Seen()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(SERVER_TIMEOUT_SECONDS)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(SERVER_TIMEOUT_SECONDS)
                self._serve(conn, conn.makefile("rb"))
        except ConnectionError:
            pass  # the client may hang up at any time (after a failure, it does)
        except BaseException as exc:  # reported by stop()
            self.seen.error = exc
        finally:
            self.listener.close()

    def _serve(self, conn: socket.socket, reader: object) -> None:
        assert hasattr(reader, "readline")
        script = self.script
        if script.greeting is None:
            while reader.readline():  # silent: wait for the client to give up
                pass
            return
        conn.sendall(script.greeting)
        accepted: list[str] = []
        mail_ok = False
        while line := reader.readline():
            self.seen.lines.append(line.rstrip(b"\r\n"))
            verb = line[:4].upper()
            if verb == b"LHLO":
                caps = ["lmtp.example.test", *script.capabilities]
                conn.sendall(
                    b"".join(
                        f"250{'-' if i < len(caps) - 1 else ' '}{cap}\r\n".encode()
                        for i, cap in enumerate(caps)
                    )
                )
            elif verb == b"STAR":
                conn.sendall(script.starttls)
            elif verb == b"MAIL":
                accepted = []
                conn.sendall(script.mail)
                if script.mail.startswith(b"421"):
                    return
                mail_ok = script.mail.startswith(b"2")
            elif verb == b"RCPT":
                address = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                reply = script.rcpt.get(address, b"250 2.1.5 OK\r\n")
                if reply.startswith(b"2"):
                    accepted.append(address)
                conn.sendall(reply)
            elif verb == b"DATA" and not mail_ok:
                conn.sendall(b"503 5.5.1 MAIL first\r\n")
            elif verb == b"DATA" and not accepted:
                conn.sendall(b"554 5.5.1 No valid recipients\r\n")
            elif verb == b"DATA":
                conn.sendall(script.data)
                if script.data.startswith(b"354"):
                    self._content(conn, reader, accepted)
                    if script.close_after_finals is not None:
                        return
            elif verb == b"QUIT":
                conn.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                conn.sendall(b"500 5.5.2 what?\r\n")

    def _content(self, conn: socket.socket, reader: object, accepted: list[str]) -> None:
        assert hasattr(reader, "readline")
        body = b""
        while (line := reader.readline()) != b".\r\n":
            if not line:
                return  # the client hung up inside DATA
            body += line
        self.seen.bodies.append(body)
        finals = accepted[: self.script.close_after_finals]
        for address in finals:
            default = f"250 2.0.0 <{address}> Saved\r\n".encode()
            conn.sendall(self.script.final.get(address, default))

    def stop(self) -> Seen:
        self.thread.join(SERVER_TIMEOUT_SECONDS)
        assert not self.thread.is_alive(), "scripted server did not finish"
        if self.seen.error is not None:
            raise self.seen.error
        return self.seen


@pytest.fixture
def scripted() -> Iterator[list[ScriptedLmtp]]:
    servers: list[ScriptedLmtp] = []
    yield servers
    for server in servers:
        server.listener.close()


def deliver(
    servers: list[ScriptedLmtp],
    script: Script,
    mailboxes: list[str],
    *,
    content: bytes = CONTENT,
    reverse_path: str = SENDER,
    **agent_options: object,
) -> tuple[dict[str, object], Seen]:
    server = ScriptedLmtp(script)
    servers.append(server)
    agent = LmtpAgent(host="127.0.0.1", port=server.port, **agent_options)  # type: ignore[arg-type]
    outcomes = agent.deliver(content, mailboxes, reverse_path=reverse_path)
    return dict(outcomes), server.stop()


def code_of(outcome: object) -> str:
    if isinstance(outcome, Delivered):
        return "delivered"
    assert isinstance(outcome, TemporaryFailure | PermanentFailure)
    kind = "temporary" if isinstance(outcome, TemporaryFailure) else "permanent"
    return f"{kind} {outcome.reply.code} {outcome.reply.enhanced}"


def test_every_recipient_delivered_and_content_dot_stuffed(
    scripted: list[ScriptedLmtp],
) -> None:
    outcomes, seen = deliver(scripted, Script(), ["a@example.net", "b@example.net"])
    assert outcomes == {"a@example.net": Delivered(), "b@example.net": Delivered()}
    assert seen.verbs == ["LHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert seen.lines[1] == b"MAIL FROM:<sender@example.org>"
    assert seen.bodies == [CONTENT.replace(b"\r\n.dot", b"\r\n..dot")]


def test_mixed_rcpt_and_final_replies_map_per_recipient(scripted: list[ScriptedLmtp]) -> None:
    script = Script(
        rcpt={
            "unknown@example.net": b"550 5.1.1 <unknown@example.net> User doesn't exist\r\n",
            "busy@example.net": b"451 4.3.0 try later\r\n",
        },
        final={
            "full@example.net": b"452 4.2.2 <full@example.net> Quota exceeded\r\n",
            "gone@example.net": b"552 5.2.2 <gone@example.net> Mailbox full for good\r\n",
        },
    )
    mailboxes = [
        "ok@example.net",
        "unknown@example.net",
        "busy@example.net",
        "full@example.net",
        "gone@example.net",
    ]
    outcomes, _ = deliver(scripted, script, mailboxes)
    assert {m: code_of(o) for m, o in outcomes.items()} == {
        "ok@example.net": "delivered",
        "unknown@example.net": "permanent 550 5.1.1",
        "busy@example.net": "temporary 451 4.3.0",
        "full@example.net": "temporary 452 4.2.2",
        "gone@example.net": "permanent 552 5.2.2",
    }


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"550 5.7.1 sender rejected\r\n", "permanent 550 5.7.1"),
        (b"451 4.3.0 try later\r\n", "temporary 451 4.3.0"),
    ],
    ids=["5xx", "4xx"],
)
def test_mail_reply_decides_for_everyone(
    scripted: list[ScriptedLmtp], reply: bytes, expected: str
) -> None:
    outcomes, seen = deliver(scripted, Script(mail=reply), ["a@example.net", "b@example.net"])
    assert {code_of(o) for o in outcomes.values()} == {expected}
    assert len(outcomes) == 2
    assert seen.bodies == []


def test_data_4xx_defers_the_accepted_recipients(scripted: list[ScriptedLmtp]) -> None:
    script = Script(data=b"451 4.3.1 no space\r\n", rcpt={"x@example.net": b"550 5.1.1 no\r\n"})
    outcomes, _ = deliver(scripted, script, ["a@example.net", "x@example.net"])
    assert code_of(outcomes["a@example.net"]) == "temporary 451 4.3.1"
    assert code_of(outcomes["x@example.net"]) == "permanent 550 5.1.1"


def test_connection_lost_between_final_replies(scripted: list[ScriptedLmtp]) -> None:
    outcomes, _ = deliver(
        scripted, Script(close_after_finals=1), ["a@example.net", "b@example.net"]
    )
    assert outcomes["a@example.net"] == Delivered()
    assert code_of(outcomes["b@example.net"]) == "temporary 451 4.4.2"


def test_421_defers_everyone(scripted: list[ScriptedLmtp]) -> None:
    outcomes, _ = deliver(scripted, Script(mail=b"421 4.3.2 shutting down\r\n"), ["a@example.net"])
    assert code_of(outcomes["a@example.net"]) == "temporary 451 4.3.0"


def test_refused_greeting_defers(scripted: list[ScriptedLmtp]) -> None:
    outcomes, seen = deliver(scripted, Script(greeting=b"554 5.3.2 not now\r\n"), ["a@example.net"])
    assert code_of(outcomes["a@example.net"]) == "temporary 451 4.3.0"
    assert "MAIL" not in seen.verbs


def test_malformed_reply_is_a_temporary_protocol_error(scripted: list[ScriptedLmtp]) -> None:
    outcomes, _ = deliver(scripted, Script(mail=b"250 OK\n"), ["a@example.net"])
    assert code_of(outcomes["a@example.net"]) == "temporary 451 4.5.0"


def test_silent_server_times_out(scripted: list[ScriptedLmtp]) -> None:
    outcomes, _ = deliver(scripted, Script(greeting=None), ["a@example.net"], command_timeout=0.3)
    outcome = outcomes["a@example.net"]
    assert code_of(outcome) == "temporary 451 4.4.2"
    assert isinstance(outcome, TemporaryFailure) and "timeout" in outcome.detail


def test_refused_connection_defers() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    # Nothing listens on ``port`` now (a small race with other processes; fine).
    agent = LmtpAgent(host="127.0.0.1", port=port)
    outcomes = agent.deliver(CONTENT, ["a@example.net", "b@example.net"])
    assert {code_of(o) for o in outcomes.values()} == {"temporary 451 4.4.1"}


def test_missing_unix_socket_defers(tmp_path: object) -> None:
    agent = LmtpAgent(path=f"{tmp_path}/no-such-socket")
    outcomes = agent.deliver(CONTENT, ["a@example.net"])
    assert code_of(outcomes["a@example.net"]) == "temporary 451 4.4.1"


def test_tls_required_without_starttls_sends_nothing_else(scripted: list[ScriptedLmtp]) -> None:
    outcomes, seen = deliver(scripted, Script(), ["a@example.net"], tls="required")
    outcome = outcomes["a@example.net"]
    assert code_of(outcome) == "temporary 451 4.7.0"
    assert seen.verbs == ["LHLO", "QUIT"]


def test_tls_required_and_starttls_refused(scripted: list[ScriptedLmtp]) -> None:
    script = Script(capabilities=("PIPELINING", "STARTTLS"))
    outcomes, seen = deliver(scripted, script, ["a@example.net"], tls="required")
    assert code_of(outcomes["a@example.net"]) == "temporary 451 4.7.0"
    assert seen.verbs == ["LHLO", "STARTTLS", "QUIT"]


def test_opportunistic_tls_goes_on_in_plaintext(scripted: list[ScriptedLmtp]) -> None:
    script = Script(capabilities=("PIPELINING", "STARTTLS"))
    outcomes, seen = deliver(scripted, script, ["a@example.net"], tls="opportunistic")
    assert outcomes == {"a@example.net": Delivered()}
    assert seen.verbs[:3] == ["LHLO", "STARTTLS", "MAIL"]


def test_without_pipelining_one_command_at_a_time(scripted: list[ScriptedLmtp]) -> None:
    outcomes, seen = deliver(scripted, Script(capabilities=()), ["a@example.net", "b@example.net"])
    assert set(outcomes.values()) == {Delivered()}
    assert seen.verbs == ["LHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]


def test_without_pipelining_no_data_when_every_rcpt_fails(scripted: list[ScriptedLmtp]) -> None:
    script = Script(capabilities=(), rcpt={"a@example.net": b"550 5.1.1 no\r\n"})
    outcomes, seen = deliver(scripted, script, ["a@example.net"])
    assert code_of(outcomes["a@example.net"]) == "permanent 550 5.1.1"
    assert "DATA" not in seen.verbs


def test_malformed_and_injected_addresses_never_reach_the_wire(
    scripted: list[ScriptedLmtp],
) -> None:
    injected = "x@example.net>\r\nRCPT TO:<victim@example.net"
    mailboxes = ["ok@example.net", "bad address@example.net", injected, "grüße@example.net"]
    outcomes, seen = deliver(scripted, Script(), mailboxes)
    assert {m: code_of(o) for m, o in outcomes.items()} == {
        "ok@example.net": "delivered",
        "bad address@example.net": "permanent 501 5.1.3",
        injected: "permanent 501 5.1.3",
        "grüße@example.net": "permanent 553 5.6.7",  # no SMTPUTF8 offered
    }
    assert [line for line in seen.lines if line.startswith(b"RCPT")] == [
        b"RCPT TO:<ok@example.net>"
    ]


def test_smtputf8_is_used_when_offered(scripted: list[ScriptedLmtp]) -> None:
    script = Script(capabilities=("PIPELINING", "SMTPUTF8", "8BITMIME"))
    outcomes, seen = deliver(scripted, script, ["grüße@example.net"])
    assert outcomes == {"grüße@example.net": Delivered()}
    assert seen.lines[1] == b"MAIL FROM:<sender@example.org> SMTPUTF8"


def test_bad_reverse_path_fails_everyone_permanently(scripted: list[ScriptedLmtp]) -> None:
    outcomes, seen = deliver(scripted, Script(), ["a@example.net"], reverse_path="no at sign")
    assert code_of(outcomes["a@example.net"]) == "permanent 501 5.1.7"
    assert "MAIL" not in seen.verbs


def test_size_over_the_servers_limit_is_refused_before_mail(scripted: list[ScriptedLmtp]) -> None:
    script = Script(capabilities=("PIPELINING", "SIZE 10"))
    outcomes, seen = deliver(scripted, script, ["a@example.net"])
    assert code_of(outcomes["a@example.net"]) == "permanent 552 5.3.4"
    assert "MAIL" not in seen.verbs


def test_size_and_8bitmime_parameters(scripted: list[ScriptedLmtp]) -> None:
    content = "Subject: ü\r\n\r\nbody\r\n".encode()
    script = Script(capabilities=("PIPELINING", "SIZE 1000", "8BITMIME"))
    outcomes, seen = deliver(scripted, script, ["a@example.net"], content=content, reverse_path="")
    assert outcomes == {"a@example.net": Delivered()}
    assert seen.lines[1] == f"MAIL FROM:<> SIZE={len(content)} BODY=8BITMIME".encode()


def test_bare_newlines_are_normalised_not_smuggled(scripted: list[ScriptedLmtp]) -> None:
    content = b"Subject: x\r\n\r\nline\n.\r\nQUIT\r\n"
    outcomes, seen = deliver(scripted, Script(), ["a@example.net"], content=content)
    assert outcomes == {"a@example.net": Delivered()}
    assert seen.bodies == [b"Subject: x\r\n\r\nline\r\n..\r\nQUIT\r\n"]


def test_duplicate_mailboxes_are_delivered_once(scripted: list[ScriptedLmtp]) -> None:
    outcomes, seen = deliver(scripted, Script(), ["a@example.net", "a@example.net"])
    assert outcomes == {"a@example.net": Delivered()}
    assert seen.verbs.count("RCPT") == 1


def test_no_mailboxes_no_connection() -> None:
    assert LmtpAgent(host="127.0.0.1", port=1).deliver(CONTENT, []) == {}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"host": "127.0.0.1", "path": "/run/lmtp"},
        {"path": "/run/lmtp", "tls": "required"},
        {"host": "127.0.0.1", "tls": "maybe"},
        {"host": "127.0.0.1", "lhlo_domain": "bad domain"},
    ],
    ids=["no_target", "two_targets", "tls_on_unix_socket", "unknown_tls_mode", "bad_lhlo_domain"],
)
def test_configuration_errors(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LmtpAgent(**options)  # type: ignore[arg-type]


def test_unix_socket_never_uses_tls() -> None:
    assert LmtpAgent(path="/run/lmtp").tls == "none"
    assert repr(LmtpAgent(path="/run/lmtp")) == "LmtpAgent(/run/lmtp, tls=none)"
