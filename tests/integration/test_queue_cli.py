"""`postguard queue` as a real subprocess against a running server's live store.

An in-process server routes ``example.test`` to LMTP at a loopback port that
nobody listens on (bound, then closed), with ``first_retry = "1h"``: every
message sent there is deferred with the connection failure as its last reply
and then waits, deterministically. The CLI runs with
``asyncio.create_subprocess_exec`` so the server keeps serving meanwhile, and
acts on the same SQLite database.

Covers: ``list`` and ``show`` (human and ``--json``: envelope, per-recipient
state, attempts, last reply, route, TLS and AUTH provenance), ``stats`` (both
formats), ``hold`` (the manager leaves a held message alone even after
``retry``), ``release``, ``retry ID`` and ``retry --all`` once a real Dovecot
listens on that port (delivered exactly once, read back over IMAPS, gone from
the queue), ``delete`` (with its body file; then ``show`` exits 67), unknown
queue IDs (exit 67, one line), bad configurations (exit 78, one line, no
traceback), a data directory without a queue, and the CLI next to a
``postguard serve`` process (which, started as root, runs as nobody).

"Not delivered" is proved without waiting for time to pass: a second message
made due after the held one is attempted by the manager's next scan, and a scan
claims every due recipient at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from helpers.accounts import add_account, auth_toml
from helpers.dialogue import Dialogue
from helpers.dovecot import DovecotServer, free_port, require_dovecot, running_dovecot
from helpers.servers import InProcessServer, ServerInfo, SubprocessServer
from postguard.queue.bodies import INLINE_BODY_MAX_OCTETS
from postguard.queue.store.base import MessageRow, RecipientState

T = TypeVar("T")
SENDER = "sender@localhost"
ALICE = "alice@example.test"
BOB = "bob@example.test"
EX_NOUSER = 67
EX_CONFIG = 78
CLI_TIMEOUT_SECONDS = 60.0
WAIT_SECONDS = 20.0
POLL_SECONDS = 0.02
QUEUED_AS = re.compile(r"^250 2\.0\.0 OK: queued as ([0-9A-Z]{16})$")
UNKNOWN_ID = "0000000000ZZZZZZ"

SERVER_TOML = """\
[local]
domains = ["localhost", "example.test"]
mailboxes = ["{sender}", "{alice}", "{bob}"]

[queue]
first_retry = "1h"
scan_interval = "100ms"

[delivery.lmtp]
address = "127.0.0.1:{port}"
{tls}

[delivery.routes]
"example.test" = "lmtp"
"""


def server_toml(port: int, ca_file: Path | None) -> str:
    """The configuration above; without ``ca_file`` LMTP runs without TLS."""
    tls = f'tls = "required"\nca_file = "{ca_file}"\nserver_name = "localhost"'
    return SERVER_TOML.format(
        sender=SENDER, alice=ALICE, bob=BOB, port=port, tls=tls if ca_file else 'tls = "none"'
    )


@dataclass(frozen=True)
class Cli:
    """One finished ``postguard queue`` run."""

    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass(frozen=True)
class Sent:
    """A message the server accepted: its queue ID, marker and the client's TLS cipher."""

    queue_id: str
    marker: str
    cipher: str | None
    size: int


@dataclass
class LmtpTarget:
    """The LMTP port postguard delivers to, and a Dovecot that can be started there."""

    port: int
    ca: trustme.CA
    ca_file: Path
    stack: contextlib.ExitStack
    dovecot: DovecotServer | None = None

    async def start_dovecot(self) -> DovecotServer:
        """Start Dovecot on the port postguard delivers to (blocking work in a thread)."""
        require_dovecot()
        self.dovecot = await asyncio.to_thread(
            self.stack.enter_context, running_dovecot(lmtp_port=self.port, ca=self.ca)
        )
        return self.dovecot


@pytest.fixture
def lmtp(tmp_path: Path) -> Iterator[LmtpTarget]:
    ca = trustme.CA()
    ca_file = tmp_path / "lmtp-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with contextlib.ExitStack() as stack:
        yield LmtpTarget(port=free_port(), ca=ca, ca_file=ca_file, stack=stack)


@pytest.fixture
async def srv(server_factory: Callable[..., Awaitable[InProcessServer]], lmtp: LmtpTarget) -> Any:
    toml = server_toml(lmtp.port, lmtp.ca_file)
    return await server_factory(toml)


# ------------------------------------------------------------------ helpers


async def queue_cli(config: Path, *args: str) -> Cli:
    """``python -m postguard queue ARGS --config CONFIG``, without blocking the server's loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postguard",
        "queue",
        *args,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_SECONDS)
    assert proc.returncode is not None
    return Cli(proc.returncode, out.decode(), err.decode())


def config_of(srv: InProcessServer) -> Path:
    return srv.data_dir / "postguard.toml"


async def run_ok(srv: InProcessServer, *args: str) -> Cli:
    result = await queue_cli(config_of(srv), *args)
    assert (result.status, result.err) == (0, ""), result
    return result


async def send(srv: ServerInfo, rcpt: str, *, tls: bool = True, lines: int = 0) -> Sent:
    """Send one message over mx (STARTTLS unless ``tls`` is False); return what was queued.

    ``lines`` adds that many 1000-octet lines to the body (to make a body file).
    """
    marker = uuid.uuid4().hex
    body = f"Subject: queue cli {marker}\r\n\r\nmarker {marker}\r\n".encode()
    body += (b"y" * 998 + b"\r\n") * lines
    dlg = await Dialogue.connect(srv.ports["mx"])
    try:
        await dlg.expect("220")
        await dlg.cmd("EHLO client.test", expect="250")
        cipher = None
        if tls:
            await dlg.starttls(srv.client_tls())
            await dlg.cmd("EHLO client.test", expect="250")
            cipher = dlg.writer.get_extra_info("ssl_object").cipher()[0]
        reply = await dlg.send_message(body, mail_from=SENDER, rcpt=rcpt)
        match = QUEUED_AS.match(reply[-1])
        assert match, reply
        await dlg.cmd("QUIT", expect="221")
    finally:
        await dlg.close()
    return Sent(match.group(1), marker, cipher, len(body))


async def wait_for(check: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll ``check`` until it returns something (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL_SECONDS)


async def stored(srv: InProcessServer, queue_id: str) -> MessageRow | None:
    assert srv.server is not None and srv.server.store is not None
    return await srv.server.store.get_message(queue_id)


async def deferred(srv: InProcessServer, queue_id: str, attempts: int = 1) -> MessageRow:
    """Wait until every recipient of ``queue_id`` is deferred after ``attempts`` attempts."""

    async def check() -> MessageRow | None:
        m = await stored(srv, queue_id)
        ok = m is not None and all(
            r.state is RecipientState.DEFERRED and r.attempts == attempts for r in m.recipients
        )
        return m if ok else None

    return await wait_for(check, f"{queue_id} deferred after {attempts} attempt(s)")


async def gone(srv: InProcessServer, queue_id: str) -> None:
    async def check() -> bool:
        return await stored(srv, queue_id) is None

    await wait_for(check, f"{queue_id} to leave the queue")


async def inbox_with(dovecot: DovecotServer, user: str, marker: str) -> list[bytes]:
    messages = await asyncio.to_thread(dovecot.fetch_inbox, user)
    return [m for m in messages if marker.encode() in m]


def row_of(table: str, queue_id: str) -> str:
    [line] = [line for line in table.splitlines() if line.startswith(queue_id)]
    return line


# -------------------------------------------------------------------- tests


async def test_list_shows_a_deferred_message_as_table_and_json(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    sent = await send(srv, ALICE)
    await deferred(srv, sent.queue_id)

    table = (await run_ok(srv, "list")).out
    line = row_of(table, sent.queue_id)
    assert "deferred" in line
    assert f"<{SENDER}>" in line
    assert ALICE in line

    [message] = (await run_ok(srv, "list", "--json")).json()
    assert message["queue_id"] == sent.queue_id
    assert message["reverse_path"] == SENDER
    assert message["held"] is False
    [rcpt] = message["recipients"]
    assert rcpt["address"] == ALICE
    assert rcpt["state"] == "deferred"
    assert rcpt["attempts"] == 1
    assert rcpt["route"] == "lmtp"
    # The connection failure is the last reply: 451 4.4.1 and where it tried.
    assert rcpt["last_reply"].startswith("451 4.4.1 "), rcpt
    assert f"127.0.0.1:{lmtp.port}" in rcpt["last_reply"]
    assert "refused" in rcpt["last_reply"].lower()


async def test_show_gives_envelope_recipient_state_reply_and_tls_provenance(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    sent = await send(srv, ALICE)
    await deferred(srv, sent.queue_id)

    text = (await run_ok(srv, "show", sent.queue_id)).out
    assert f"Queue ID:    {sent.queue_id}\n" in text
    assert f"Sender:      <{SENDER}>\n" in text
    assert f"Size:        {sent.size} octets\n" in text
    assert "From client: 127.0.0.1 (client.test) via mx\n" in text
    assert f"TLS:         TLSv1.3 {sent.cipher}\n" in text
    assert "Auth:        none\n" in text
    [rcpt_line] = [line for line in text.splitlines() if line.strip().startswith(ALICE)]
    assert "deferred" in rcpt_line and "attempts=1" in rcpt_line and "via lmtp" in rcpt_line
    assert "    last reply: 451 4.4.1 " in text
    assert "(HELD)" not in text

    data = (await run_ok(srv, "show", sent.queue_id, "--json")).json()
    assert data["queue_id"] == sent.queue_id
    assert data["reverse_path"] == SENDER
    assert data["size"] == sent.size
    provenance = data["envelope"]["provenance"]
    assert provenance["listener"] == "mx"
    assert provenance["client_ip"] == "127.0.0.1"
    assert provenance["ehlo"] == "client.test"
    assert provenance["tls"]["version"] == "TLSv1.3"
    assert provenance["tls"]["cipher"] == sent.cipher
    assert "auth" not in provenance
    [rcpt] = data["recipients"]
    assert (rcpt["address"], rcpt["mailbox"], rcpt["state"]) == (ALICE, ALICE, "deferred")
    assert rcpt["attempts"] == 1
    assert rcpt["last_reply"].startswith("451 4.4.1 ")
    assert rcpt["redelivery"] is False
    assert "redelivery:" not in text


async def test_show_marks_a_recipient_recovered_from_a_dead_process(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    sent = await send(srv, ALICE)
    await deferred(srv, sent.queue_id)
    # What start-up recovery does to the leases of a process that died mid-delivery.
    assert srv.server is not None and srv.server.store is not None
    store = srv.server.store
    await store.claim_due(now=time.time() + 10**6, owner="dead", lease_seconds=1, limit=10)
    await store.release_leases(owner="dead", now=time.time(), lost=True)

    text = (await run_ok(srv, "show", sent.queue_id)).out
    assert "    redelivery: leased by a process that died; a copy may exist already\n" in text
    [rcpt] = (await run_ok(srv, "show", sent.queue_id, "--json")).json()["recipients"]
    assert rcpt["redelivery"] is True


async def test_show_of_a_plaintext_message_says_so(srv: InProcessServer) -> None:
    sent = await send(srv, ALICE, tls=False)
    await deferred(srv, sent.queue_id)
    text = (await run_ok(srv, "show", sent.queue_id)).out
    assert "TLS:         none (plaintext)\n" in text
    data = (await run_ok(srv, "show", sent.queue_id, "--json")).json()
    assert "tls" not in data["envelope"]["provenance"]


async def test_show_reports_the_authenticated_identity_of_a_submission(
    server_factory: Callable[..., Awaitable[InProcessServer]], lmtp: LmtpTarget, tmp_path: Path
) -> None:
    accounts = tmp_path / "accounts.toml"
    account = add_account(accounts, "carol", "carol-password-1234", addresses=[SENDER])
    toml = server_toml(lmtp.port, lmtp.ca_file)
    srv = await server_factory(toml + auth_toml(accounts))
    dlg = await Dialogue.connect(srv.ports["submission"])
    try:
        await dlg.expect("220")
        await dlg.cmd("EHLO client.test", expect="250")
        await dlg.starttls(srv.client_tls())
        await dlg.cmd("EHLO client.test", expect="250")
        token = base64.b64encode(f"\0{account.name}\0{account.password}".encode()).decode()
        await dlg.cmd(f"AUTH PLAIN {token}", expect="235")
        reply = await dlg.send_message(
            b"Subject: submitted\r\n\r\nhi\r\n", mail_from=SENDER, rcpt=ALICE
        )
        match = QUEUED_AS.match(reply[-1])
        assert match, reply
        await dlg.cmd("QUIT", expect="221")
    finally:
        await dlg.close()
    queue_id = match.group(1)
    await deferred(srv, queue_id)

    text = (await run_ok(srv, "show", queue_id)).out
    assert f"Auth:        {account.name}\n" in text
    assert "via submission\n" in text
    assert "TLS:         TLSv1.3 " in text
    provenance = (await run_ok(srv, "show", queue_id, "--json")).json()["envelope"]["provenance"]
    assert (provenance["auth"], provenance["listener"]) == (account.name, "submission")


async def test_stats_counts_states_held_oldest_age_and_bytes(srv: InProcessServer) -> None:
    before = time.time()
    first = await send(srv, ALICE)
    second = await send(srv, BOB)
    await deferred(srv, first.queue_id)
    await deferred(srv, second.queue_id)
    await run_ok(srv, "hold", second.queue_id)

    stats = (await run_ok(srv, "stats", "--json")).json()
    assert stats["messages"] == 2
    assert stats["held_messages"] == 1
    assert stats["recipients_by_state"] == {"deferred": 2}
    assert stats["bytes"] == first.size + second.size
    assert 0 <= stats["oldest_age_seconds"] <= time.time() - before + 1

    text = (await run_ok(srv, "stats")).out
    assert "messages:  2 (1 held)\n" in text
    assert re.search(r"^\s+deferred\s+2$", text, re.MULTILINE), text
    assert re.search(r"^oldest:\s+\d+ s$", text, re.MULTILINE), text
    assert f"disk use:  {first.size + second.size} octets of content\n" in text


async def test_held_message_is_not_delivered_even_after_retry_until_released(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    held = await send(srv, ALICE)
    control = await send(srv, BOB)
    await deferred(srv, held.queue_id)
    await deferred(srv, control.queue_id)

    result = await run_ok(srv, "hold", held.queue_id)
    assert result.out == f"{held.queue_id}: hold done\n"
    assert "held" in row_of((await run_ok(srv, "list")).out, held.queue_id)
    listed = {m["queue_id"]: m for m in (await run_ok(srv, "list", "--json")).json()}
    assert listed[held.queue_id]["held"] is True
    assert listed[held.queue_id]["recipients"][0]["state"] == "held"
    assert listed[control.queue_id]["recipients"][0]["state"] == "deferred"
    assert f"Queue ID:    {held.queue_id}  (HELD)" in (await run_ok(srv, "show", held.queue_id)).out

    # Both made due now; the manager's next scan takes the control message (a second
    # failed attempt), and a scan that did so would have taken the held one too.
    assert (await run_ok(srv, "retry", held.queue_id)).out.startswith("1 recipient(s)")
    assert (await run_ok(srv, "retry", control.queue_id)).out.startswith("1 recipient(s)")
    await deferred(srv, control.queue_id, attempts=2)
    still = await stored(srv, held.queue_id)
    assert still is not None and still.held
    assert [(r.state, r.attempts) for r in still.recipients] == [(RecipientState.DEFERRED, 1)]

    # Released, it is due (the retry above made it so): the manager tries it at once.
    result = await run_ok(srv, "release", held.queue_id)
    assert result.out == f"{held.queue_id}: release done\n"
    await deferred(srv, held.queue_id, attempts=2)
    assert "deferred" in row_of((await run_ok(srv, "list")).out, held.queue_id)

    dovecot = await lmtp.start_dovecot()
    await run_ok(srv, "retry", held.queue_id)
    await gone(srv, held.queue_id)
    assert len(await inbox_with(dovecot, "alice", held.marker)) == 1, dovecot.log()
    remaining = [m["queue_id"] for m in (await run_ok(srv, "list", "--json")).json()]
    assert remaining == [control.queue_id]


async def test_retry_delivers_once_the_lmtp_server_is_up(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    sent = await send(srv, ALICE)
    await deferred(srv, sent.queue_id)
    dovecot = await lmtp.start_dovecot()
    # Up, but the message waits for its next attempt (an hour away) ...
    assert await inbox_with(dovecot, "alice", sent.marker) == []

    result = await run_ok(srv, "retry", sent.queue_id)
    assert result.out == "1 recipient(s) scheduled for immediate retry\n"
    await gone(srv, sent.queue_id)
    assert len(await inbox_with(dovecot, "alice", sent.marker)) == 1, dovecot.log()
    assert (await run_ok(srv, "list")).out == "queue is empty\n"
    assert (await run_ok(srv, "list", "--json")).json() == []


async def test_retry_all_retries_every_deferred_message(
    srv: InProcessServer, lmtp: LmtpTarget
) -> None:
    first = await send(srv, ALICE)
    second = await send(srv, BOB)
    await deferred(srv, first.queue_id)
    await deferred(srv, second.queue_id)
    dovecot = await lmtp.start_dovecot()

    result = await run_ok(srv, "retry", "--all")
    assert result.out == "2 recipient(s) scheduled for immediate retry\n"
    await gone(srv, first.queue_id)
    await gone(srv, second.queue_id)
    assert len(await inbox_with(dovecot, "alice", first.marker)) == 1, dovecot.log()
    assert len(await inbox_with(dovecot, "bob", second.marker)) == 1
    assert (await run_ok(srv, "list", "--json")).json() == []


async def test_delete_removes_the_message_and_show_then_exits_67(srv: InProcessServer) -> None:
    sent = await send(srv, ALICE, lines=INLINE_BODY_MAX_OCTETS // 1000 + 1)  # a body file
    kept = await send(srv, BOB)
    await deferred(srv, sent.queue_id)
    await deferred(srv, kept.queue_id)
    before = srv.spooled()
    assert f"message:{sent.queue_id}" in before
    [body_file] = [name for name in before if not name.startswith("message:")]

    result = await run_ok(srv, "delete", sent.queue_id)
    assert result.out == f"{sent.queue_id}: delete done\n"
    assert await stored(srv, sent.queue_id) is None
    assert srv.spooled() == [f"message:{kept.queue_id}"]  # the body file went too
    assert body_file not in srv.spooled()
    listed = [m["queue_id"] for m in (await run_ok(srv, "list", "--json")).json()]
    assert listed == [kept.queue_id]
    assert sent.queue_id not in (await run_ok(srv, "list")).out

    shown = await queue_cli(config_of(srv), "show", sent.queue_id)
    assert shown.status == EX_NOUSER
    assert shown.err == f"postguard: no message {sent.queue_id} in the queue\n"
    again = await queue_cli(config_of(srv), "delete", sent.queue_id)
    assert again.status == EX_NOUSER


@pytest.mark.parametrize(
    "args",
    [
        ["show", UNKNOWN_ID],
        ["show", UNKNOWN_ID, "--json"],
        ["hold", UNKNOWN_ID],
        ["release", UNKNOWN_ID],
        ["retry", UNKNOWN_ID],
        ["delete", UNKNOWN_ID],
    ],
    ids=lambda args: " ".join(args[:1] + args[2:]),
)
async def test_unknown_queue_id_exits_67_with_one_line(
    srv: InProcessServer, args: list[str]
) -> None:
    result = await queue_cli(config_of(srv), *args)
    assert result.status == EX_NOUSER, result
    assert result.out == ""
    assert result.err == f"postguard: no message {UNKNOWN_ID} in the queue\n"


async def test_cli_works_on_the_store_of_a_postguard_serve_process(
    subprocess_factory: Callable[..., SubprocessServer],
) -> None:
    # `postguard serve` in its own process (as root it drops to nobody); the CLI is
    # another process on the same database, as an operator runs it.
    srv = subprocess_factory(server_toml(free_port(), None))
    assert srv.config_path is not None
    config = srv.config_path

    async def shown(queue_id: str) -> dict[str, Any] | None:
        result = await queue_cli(config, "show", queue_id, "--json")
        assert result.status == 0, result
        data: dict[str, Any] = result.json()
        return data if data["recipients"][0]["state"] == "deferred" else None

    first = await send(srv, ALICE)
    data = await wait_for(lambda: shown(first.queue_id), f"{first.queue_id} deferred")
    assert data["recipients"][0]["last_reply"].startswith("451 4.4.1 ")
    assert (await queue_cli(config, "hold", first.queue_id)).status == 0
    assert (await queue_cli(config, "retry", "--all")).status == 0

    # The server still writes to the database the CLI changed: it takes new mail and
    # records its outcome.
    second = await send(srv, BOB)
    await wait_for(lambda: shown(second.queue_id), f"{second.queue_id} deferred")
    listed = {m["queue_id"]: m for m in (await queue_cli(config, "list", "--json")).json()}
    assert listed[first.queue_id]["held"] is True
    assert listed[second.queue_id]["recipients"][0]["attempts"] >= 1
    queue_dir = srv.data_dir / "queue"
    owner = queue_dir.stat().st_uid
    assert {p.name: p.stat().st_uid for p in queue_dir.glob("queue.db*")} == {
        p.name: owner for p in queue_dir.glob("queue.db*")
    }
    assert srv.stop() == 0
    assert "Traceback" not in srv.stderr()


BAD_CONFIGS = {
    "toml-syntax": "[queue\nfirst_retry = 1\n",
    "bad-duration": '[server]\ndata_dir = "{dir}"\n[queue]\nfirst_retry = "soon"\n',
    "unknown-key": '[server]\ndata_dir = "{dir}"\n[queue]\nretries = 3\n',
    "backoff-below-first-retry": (
        '[server]\ndata_dir = "{dir}"\n[queue]\nfirst_retry = "1h"\nmax_backoff = "1m"\n'
    ),
}


@pytest.mark.parametrize(
    ("case", "args"),
    [
        *((case, ["list"]) for case in [*BAD_CONFIGS, "missing-file"]),
        ("bad-duration", ["delete", UNKNOWN_ID]),
        ("missing-file", ["retry", "--all"]),
    ],
    ids=lambda value: value if isinstance(value, str) else value[0],
)
async def test_bad_config_exits_78_with_one_line_and_no_traceback(
    tmp_path: Path, case: str, args: list[str]
) -> None:
    config = tmp_path / "postguard.toml"
    if case != "missing-file":
        config.write_text(BAD_CONFIGS[case].format(dir=tmp_path / "data"))
    result = await queue_cli(config, *args)
    assert result.status == EX_CONFIG, result
    assert result.out == ""
    assert "Traceback" not in result.err
    [line] = result.err.splitlines()
    assert line.startswith("postguard: "), line
    assert not (tmp_path / "data").exists()  # nothing created on the way out


async def test_retry_all_of_a_data_dir_without_a_queue_succeeds(tmp_path: Path) -> None:
    config = tmp_path / "postguard.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    result = await queue_cli(config, "retry", "--all")
    assert (result.status, result.err) == (0, ""), result


async def test_list_and_stats_of_a_data_dir_without_a_queue_say_empty(tmp_path: Path) -> None:
    config = tmp_path / "postguard.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    listed = await queue_cli(config, "list")
    assert (listed.status, listed.out, listed.err) == (0, "queue is empty\n", "")
    as_json = await queue_cli(config, "list", "--json")
    assert (as_json.status, as_json.json()) == (0, [])
    shown = await queue_cli(config, "show", UNKNOWN_ID)
    assert shown.status == EX_NOUSER
    assert len(shown.err.splitlines()) == 1


async def test_stats_json_of_a_data_dir_without_a_queue_is_a_stats_object(tmp_path: Path) -> None:
    config = tmp_path / "postguard.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    result = await queue_cli(config, "stats", "--json")
    assert result.status == 0
    stats = result.json()
    assert isinstance(stats, dict), stats
    assert (stats["messages"], stats["bytes"]) == (0, 0)
