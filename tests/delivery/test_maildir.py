"""Local Maildir delivery: layout, exact bytes, unique names, unsafe names, storage errors,
idempotent redelivery.

Covers ``postguard.delivery.maildir.MaildirAgent`` on real directories: a delivery
creates ``tmp/``, ``new/`` and ``cur/``, leaves exactly the given bytes in ``new/`` (and
nothing in ``tmp/``), 1000 deliveries get 1000 distinct names, a mailbox name that could
escape the Maildir root is a permanent failure (550 5.1.1) that creates nothing, a full
file system is a temporary failure 452 4.3.1 and any other storage error 451 4.3.0.

Idempotency: an item with a key (the queue ID) is stored under the deterministic name
``<received_at>.Q<key>.<host>,S=<size>``; delivering it again finds that copy in ``new/``
(or, when the item says ``redelivery``, in ``cur/`` where an IMAP server moved it) and
stores nothing more, in small batches and in syncfs batches, without counting its size
twice against the quota. Without the flag a copy moved to ``cur/`` gets a second copy
(the documented cost), and a key that is not a safe name falls back to a random name.

Full and read-only file systems are real: a 512 KiB tmpfs mounted for the test (root only;
CI runs as root; elsewhere these tests skip and say why). Root ignores permission bits, so
for root "read-only" is a read-only remount of that tmpfs; other users get a 0500 directory.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.tmpfs import Tmpfs, mount_tmpfs
from postguard.delivery import maildir as maildir_module
from postguard.delivery.base import (
    Delivered,
    DeliveryItem,
    NeedsFlush,
    PermanentFailure,
    TemporaryFailure,
)
from postguard.delivery.maildir import MaildirAgent, ensure_maildir, maildir_path

MAILBOX = "test@localhost"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    yield from mount_tmpfs(tmp_path / "tmpfs", mode="0755")


@pytest.fixture
def agent(tmp_path: Path) -> MaildirAgent:
    return MaildirAgent(tmp_path / "mail")


def message(n: int = 0) -> bytes:
    return (
        b"Received: from client.test by localhost; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
        + f"Message-ID: <m{n}@client.test>\r\nSubject: {n}\r\n\r\n".encode()
        + b".dot\r\n\x00\xff\r\nbare\nlf\r\n"
    )


def test_delivery_creates_tmp_new_cur_and_stores_exact_bytes_in_new(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    content = message()
    assert agent.deliver(content, [MAILBOX]) == {MAILBOX: Delivered()}

    maildir = tmp_path / "mail" / "localhost" / "test"
    assert sorted(p.name for p in maildir.iterdir()) == ["cur", "new", "tmp"]
    for sub in ("cur", "new", "tmp"):
        assert (maildir / sub).stat().st_mode & 0o777 == 0o700
    assert list((maildir / "tmp").iterdir()) == []
    assert list((maildir / "cur").iterdir()) == []
    [stored] = list((maildir / "new").iterdir())
    assert stored.read_bytes() == b"Return-Path: <>\r\n" + content
    assert stored.stat().st_mode & 0o777 == 0o600
    assert stored.name.endswith(f",S={len(stored.read_bytes())}")
    assert "/" not in stored.name and ":" not in stored.name


def test_mailbox_names_are_case_insensitive_paths(agent: MaildirAgent, tmp_path: Path) -> None:
    assert agent.deliver(b"x\r\n", ["Test@LocalHost"]) == {"Test@LocalHost": Delivered()}
    assert len(list((tmp_path / "mail" / "localhost" / "test" / "new").iterdir())) == 1


def test_one_call_delivers_one_copy_per_mailbox(agent: MaildirAgent, tmp_path: Path) -> None:
    outcomes = agent.deliver(b"x\r\n", ["a@localhost", "b@example.org"])
    assert outcomes == {"a@localhost": Delivered(), "b@example.org": Delivered()}
    assert len(list((tmp_path / "mail" / "localhost" / "a" / "new").iterdir())) == 1
    assert len(list((tmp_path / "mail" / "example.org" / "b" / "new").iterdir())) == 1


def test_1000_deliveries_from_8_threads_get_1000_unique_names(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda n: agent.deliver(message(n), [MAILBOX]), range(1000)))
    assert all(o == {MAILBOX: Delivered()} for o in outcomes)
    new = tmp_path / "mail" / "localhost" / "test" / "new"
    files = list(new.iterdir())
    assert len(files) == 1000
    assert sorted(p.read_bytes() for p in files) == sorted(
        b"Return-Path: <>\r\n" + message(n) for n in range(1000)
    )


UNSAFE = ["../x@y", "x@..", "x@.", ".@y", "..@y", "a/b@y", "x@a/b", "@y", "x@", "", "nodomain"]


@pytest.mark.parametrize("mailbox", UNSAFE, ids=[repr(m) for m in UNSAFE])
def test_unsafe_mailbox_name_is_a_permanent_failure_that_creates_nothing(
    agent: MaildirAgent, tmp_path: Path, mailbox: str
) -> None:
    outcome = agent.deliver(message(), [mailbox])[mailbox]
    assert isinstance(outcome, PermanentFailure)
    assert (outcome.reply.code, outcome.reply.enhanced) == (550, "5.1.1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # not even the root


def test_unsafe_mailbox_fails_alone_and_others_are_delivered(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    outcomes = agent.deliver(b"x\r\n", ["../evil@localhost", MAILBOX])
    assert isinstance(outcomes["../evil@localhost"], PermanentFailure)
    assert outcomes[MAILBOX] == Delivered()
    assert not (tmp_path / "evil").exists()


def test_maildir_path_rejects_escapes() -> None:
    root = Path("/srv/mail")
    assert maildir_path(root, "User@Example.ORG") == root / "example.org" / "user"
    for bad in UNSAFE:
        with pytest.raises(ValueError):
            maildir_path(root, bad)


@pytest.mark.parametrize("existing_maildir", [True, False], ids=["existing", "first-delivery"])
def test_full_file_system_is_452_4_3_1_temporary_and_leaves_no_file(
    tmpfs: Tmpfs, existing_maildir: bool
) -> None:
    agent = MaildirAgent(tmpfs.path / "mail")
    maildir = tmpfs.path / "mail" / "localhost" / "test"
    if existing_maildir:
        ensure_maildir(maildir)
    tmpfs.fill()

    outcome = agent.deliver(message() * 10, [MAILBOX])[MAILBOX]

    assert isinstance(outcome, TemporaryFailure)
    assert (outcome.reply.code, outcome.reply.enhanced) == (452, "4.3.1")
    for sub in ("tmp", "new"):
        assert not (maildir / sub).exists() or list((maildir / sub).iterdir()) == []

    tmpfs.free()
    assert agent.deliver(message(), [MAILBOX]) == {MAILBOX: Delivered()}
    [stored] = list((maildir / "new").iterdir())
    assert stored.read_bytes() == b"Return-Path: <>\r\n" + message()


def test_storage_error_other_than_full_is_451_4_3_0_temporary(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        mounted = mount_tmpfs(tmp_path / "tmpfs")
        fs = next(mounted)
        root = fs.path / "mail"
        ensure_maildir(root / "localhost" / "test")
        fs.remount("ro")
        try:
            outcome = MaildirAgent(root).deliver(message(), [MAILBOX])[MAILBOX]
        finally:
            fs.remount("rw")
            mounted.close()
    else:
        root = tmp_path / "mail"
        ensure_maildir(root / "localhost" / "test")
        (root / "localhost" / "test" / "tmp").chmod(0o500)
        try:
            outcome = MaildirAgent(root).deliver(message(), [MAILBOX])[MAILBOX]
        finally:
            (root / "localhost" / "test" / "tmp").chmod(0o700)
    assert isinstance(outcome, TemporaryFailure)
    assert (outcome.reply.code, outcome.reply.enhanced) == (451, "4.3.0")
    assert MAILBOX in outcome.detail


def test_nul_in_mailbox_is_a_permanent_failure_not_an_exception(agent: MaildirAgent) -> None:
    outcome = agent.deliver(b"x\r\n", ["x\0@localhost"])["x\0@localhost"]
    assert isinstance(outcome, PermanentFailure)


def test_return_path_records_the_envelope_sender(agent: MaildirAgent, tmp_path: Path) -> None:
    outcome = agent.deliver(b"Subject: s\r\n\r\nb\r\n", [MAILBOX], reverse_path="a@example.org")
    assert isinstance(outcome[MAILBOX], Delivered)
    [stored] = list((tmp_path / "mail" / "localhost" / "test" / "new").iterdir())
    assert stored.read_bytes().startswith(b"Return-Path: <a@example.org>\r\nSubject: s\r\n")


def test_a_large_batch_is_made_durable_with_one_file_system_sync(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    """From SYNCFS_MIN_BATCH messages on, copies skip their own fsync and one syncfs(2)
    flushes the batch; every copy is still stored exactly."""
    assert maildir_module.HAS_SYNCFS, "syncfs(2) should be available on Linux"
    items = [
        DeliveryItem(f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), [MAILBOX], "a@example.org")
        for n in range(maildir_module.SYNCFS_MIN_BATCH * 3)
    ]
    results = agent.deliver_batch(items)
    assert all(r == {MAILBOX: Delivered()} for r in results)
    new = tmp_path / "mail" / "localhost" / "test" / "new"
    stored = sorted(p.read_bytes() for p in new.iterdir())
    expected = sorted(b"Return-Path: <a@example.org>\r\n" + item.content for item in items)
    assert stored == expected


def test_delivery_over_the_mailbox_quota_is_a_permanent_552_5_2_2(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mail", quota=1000)
    content = b"Subject: q\r\n\r\n" + b"x" * 250 + b"\r\n"  # + Return-Path: about 290 octets
    outcomes = [agent.deliver(content, [MAILBOX])[MAILBOX] for _ in range(4)]
    assert outcomes[:3] == [Delivered()] * 3
    assert isinstance(outcomes[3], PermanentFailure)
    assert (outcomes[3].reply.code, outcomes[3].reply.enhanced) == (552, "5.2.2")
    new = tmp_path / "mail" / "localhost" / "test" / "new"
    assert len(list(new.iterdir())) == 3


def test_quota_counts_mail_already_in_the_mailbox(tmp_path: Path) -> None:
    maildir = tmp_path / "mail" / "localhost" / "test"
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1.M1P1.host,S=900:2,S").write_bytes(b"y" * 900)
    (maildir / "new" / "2.M2P2.host").write_bytes(b"z" * 50)  # no S=: stat'ed instead
    agent = MaildirAgent(tmp_path / "mail", quota=1000)
    outcome = agent.deliver(b"Subject: q\r\n\r\n" + b"b" * 100, [MAILBOX])[MAILBOX]
    assert isinstance(outcome, PermanentFailure)
    assert MaildirAgent(tmp_path / "mail", quota=2000).deliver(b"s\r\n", [MAILBOX]) == {
        MAILBOX: Delivered()
    }


# ------------------------------------------------------------- idempotent redelivery

RECEIVED_AT = 1_700_000_000.75
HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
RANDOM_NAME = re.compile(r"\d+\.M\d+P\d+Q\d+R[0-9a-f]{8}\..+,S=\d+")


def keyed(
    key: str, content: bytes = b"Subject: k\r\n\r\nbody\r\n", *, redelivery: bool = False
) -> DeliveryItem:
    return DeliveryItem(content, [MAILBOX], "a@example.org", key, RECEIVED_AT, redelivery)


def stored_copy(item: DeliveryItem) -> bytes:
    return f"Return-Path: <{item.reverse_path}>\r\n".encode() + item.content


def keyed_name(item: DeliveryItem) -> str:
    return f"{int(item.received_at)}.Q{item.key}.{HOST},S={len(stored_copy(item))}"


def maildir_of(tmp_path: Path) -> Path:
    return tmp_path / "mail" / "localhost" / "test"


def test_same_key_delivered_twice_leaves_one_copy_under_the_deterministic_name(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    item = keyed("01M8H2Z36AATPC19")
    maildir = maildir_of(tmp_path)
    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]
    [first] = list((maildir / "new").iterdir())
    first_inode = first.stat().st_ino

    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]

    [stored] = list((maildir / "new").iterdir())
    assert stored.stat().st_ino == first_inode  # kept, not replaced (as rename(2) would)
    assert stored.name == f"1700000000.Q01M8H2Z36AATPC19.{HOST},S={len(stored_copy(item))}"
    assert stored.read_bytes() == stored_copy(item)
    assert list((maildir / "tmp").iterdir()) == []
    assert list((maildir / "cur").iterdir()) == []


def test_redelivery_finds_the_copy_an_imap_server_moved_to_cur(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    item = keyed("Q1")
    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]
    maildir = maildir_of(tmp_path)
    seen = maildir / "cur" / f"{keyed_name(item)}:2,S"
    os.rename(maildir / "new" / keyed_name(item), seen)

    again = keyed("Q1", redelivery=True)
    assert agent.deliver_batch([again]) == [{MAILBOX: Delivered()}]

    assert list((maildir / "new").iterdir()) == []
    assert list((maildir / "tmp").iterdir()) == []
    assert list((maildir / "cur").iterdir()) == [seen]
    assert seen.read_bytes() == stored_copy(item)


def test_without_the_redelivery_flag_a_copy_moved_to_cur_gets_a_second_copy(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    """The documented cost of not reading cur/ on every delivery."""
    item = keyed("Q1")
    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]
    maildir = maildir_of(tmp_path)
    os.rename(maildir / "new" / keyed_name(item), maildir / "cur" / f"{keyed_name(item)}:2,S")

    assert agent.deliver_batch([keyed("Q1", redelivery=False)]) == [{MAILBOX: Delivered()}]

    [second] = list((maildir / "new").iterdir())
    assert second.name == keyed_name(item)
    assert second.read_bytes() == stored_copy(item)
    assert len(list((maildir / "cur").iterdir())) == 1


# After a power cut the name of a copy can be on disk without its data: empty, cut
# short, or of the right size but zeros (ext4's unwritten extents).
DAMAGE = {
    "empty": lambda whole: b"",
    "short": lambda whole: whole[: len(whole) // 2],
    "zeros": lambda whole: bytes(len(whole)),
}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("batch", [1, maildir_module.SYNCFS_MIN_BATCH], ids=["fsync", "syncfs"])
def test_a_damaged_earlier_copy_in_new_is_replaced_by_a_whole_one(
    agent: MaildirAgent, tmp_path: Path, damage: str, batch: int
) -> None:
    items = [keyed(f"Q{n}", redelivery=True) for n in range(batch)]
    maildir = maildir_of(tmp_path)
    ensure_maildir(maildir)
    damaged = maildir / "new" / keyed_name(items[0])
    damaged.write_bytes(DAMAGE[damage](stored_copy(items[0])))

    assert agent.deliver_batch(items) == [{MAILBOX: Delivered()}] * batch

    assert damaged.read_bytes() == stored_copy(items[0])
    assert len(list((maildir / "new").iterdir())) == batch
    assert list((maildir / "tmp").iterdir()) == []


def test_a_damaged_copy_in_cur_stays_and_a_whole_one_goes_to_new(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    # A mail client may hold the damaged one open: it is not touched.
    item = keyed("Q1", redelivery=True)
    maildir = maildir_of(tmp_path)
    ensure_maildir(maildir)
    seen = maildir / "cur" / f"{keyed_name(item)}:2,S"
    seen.write_bytes(b"")

    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]

    assert seen.read_bytes() == b""
    assert (maildir / "new" / keyed_name(item)).read_bytes() == stored_copy(item)


def test_a_damaged_earlier_copy_in_a_full_mailbox_is_replaced_not_552(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mail", quota=600)
    assert agent.deliver_batch([sized("A", 300), sized("B", 300)]) == [{MAILBOX: Delivered()}] * 2
    [copy_a] = (maildir_of(tmp_path) / "new").glob("*.QA.*")
    copy_a.write_bytes(b"")  # its name still counts 300 octets against the quota

    assert agent.deliver_batch([sized("A", 300)]) == [{MAILBOX: Delivered()}]

    assert copy_a.read_bytes() == stored_copy(sized("A", 300))
    over = agent.deliver_batch([sized("C", 300)])[0][MAILBOX]
    assert isinstance(over, PermanentFailure), over


BAD_KEYS = ["../x", "a/b", "", "a:b", "a.b", "x" * (maildir_module.MAX_KEY_CHARS + 1)]


@pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k[:10]) for k in BAD_KEYS])
def test_a_key_that_is_not_a_safe_name_falls_back_to_a_random_name(
    agent: MaildirAgent, tmp_path: Path, key: str
) -> None:
    item = keyed(key, redelivery=True)
    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]
    assert agent.deliver_batch([item]) == [{MAILBOX: Delivered()}]

    maildir = maildir_of(tmp_path)
    assert sorted(p.name for p in maildir.iterdir()) == ["cur", "new", "tmp"]
    stored = list((maildir / "new").iterdir())
    assert len(stored) == 2  # no key, no recognition: each attempt stores a copy
    for path in stored:
        assert RANDOM_NAME.fullmatch(path.name), path.name
        assert path.read_bytes() == stored_copy(item)
    assert sorted(p.name for p in (tmp_path / "mail").iterdir()) == ["localhost"]


@pytest.mark.parametrize("received_at", [float("nan"), float("inf"), -5.0])
def test_an_unusable_arrival_time_still_gives_a_stable_name(
    agent: MaildirAgent, tmp_path: Path, received_at: float
) -> None:
    item = DeliveryItem(b"x\r\n", [MAILBOX], "", "Q1", received_at)
    assert agent.deliver_batch([item, item]) == [{MAILBOX: Delivered()}] * 2
    [stored] = list((maildir_of(tmp_path) / "new").iterdir())
    assert stored.name == f"0.QQ1.{HOST},S={len(stored_copy(item))}"


def test_a_syncfs_batch_with_one_copy_already_stored_leaves_one_copy_each(
    agent: MaildirAgent, tmp_path: Path
) -> None:
    assert maildir_module.HAS_SYNCFS, "syncfs(2) should be available on Linux"
    items = [
        keyed(f"Q{n}", f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), redelivery=True)
        for n in range(maildir_module.SYNCFS_MIN_BATCH + 2)
    ]
    assert agent.deliver_batch([items[2]]) == [{MAILBOX: Delivered()}]

    results = agent.deliver_batch(items)

    assert results == [{MAILBOX: Delivered()}] * len(items)
    new = maildir_of(tmp_path) / "new"
    assert sorted(p.name for p in new.iterdir()) == sorted(keyed_name(i) for i in items)
    for item in items:
        assert (new / keyed_name(item)).read_bytes() == stored_copy(item)
    assert list((maildir_of(tmp_path) / "tmp").iterdir()) == []


def sized(key: str, octets: int) -> DeliveryItem:
    """A keyed item whose stored copy (Return-Path line included) is ``octets`` long."""
    head = b"Subject: q\r\n\r\n"
    return keyed(key, head + b"x" * (octets - len(head) - len(b"Return-Path: <a@example.org>\r\n")))


def test_redelivering_a_stored_copy_does_not_count_its_size_twice(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mail", quota=700)
    first = sized("A", 300)
    assert len(stored_copy(first)) == 300
    assert agent.deliver_batch([first]) == [{MAILBOX: Delivered()}]
    assert agent.deliver_batch([first]) == [{MAILBOX: Delivered()}]
    # 300 + 300 fits 700; had the redelivery been counted, 900 would not.
    assert agent.deliver_batch([sized("B", 300)]) == [{MAILBOX: Delivered()}]
    assert len(list((maildir_of(tmp_path) / "new").iterdir())) == 2


def test_redelivering_a_stored_copy_into_a_full_mailbox_is_delivered_not_552(
    tmp_path: Path,
) -> None:
    agent = MaildirAgent(tmp_path / "mail", quota=600)
    assert agent.deliver_batch([sized("A", 300), sized("B", 300)]) == [{MAILBOX: Delivered()}] * 2

    assert agent.deliver_batch([sized("A", 300)]) == [{MAILBOX: Delivered()}]
    over = agent.deliver_batch([sized("C", 300)])[0][MAILBOX]
    assert isinstance(over, PermanentFailure)
    assert (over.reply.code, over.reply.enhanced) == (552, "5.2.2")
    assert len(list((maildir_of(tmp_path) / "new").iterdir())) == 2


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_something_else_under_the_deterministic_name_is_451_and_is_not_followed(
    agent: MaildirAgent, tmp_path: Path, kind: str
) -> None:
    item = keyed("Q1")
    maildir = maildir_of(tmp_path)
    ensure_maildir(maildir)
    outside = tmp_path / "outside"
    outside.write_bytes(b"not mail")
    if kind == "symlink":
        (maildir / "new" / keyed_name(item)).symlink_to(outside)
    else:
        os.mkfifo(maildir / "new" / keyed_name(item))

    outcome = agent.deliver_batch([item])[0][MAILBOX]

    assert isinstance(outcome, TemporaryFailure)
    assert (outcome.reply.code, outcome.reply.enhanced) == (451, "4.3.0")
    assert outside.read_bytes() == b"not mail"
    assert list((maildir / "tmp").iterdir()) == []


def test_a_large_batch_can_leave_its_flush_to_the_caller(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mail", flush_by_caller=True)
    batch = [
        DeliveryItem(f"Subject: {n}\r\n\r\nx\r\n".encode(), ["bob@example.org"], key=f"K{n}")
        for n in range(maildir_module.SYNCFS_MIN_BATCH)
    ]
    results = agent.deliver_batch(batch)
    new = tmp_path / "mail" / "example.org" / "bob" / "new"
    assert len(list(new.iterdir())) == len(batch)  # stored; durable once the caller flushes
    copies = sorted(str(p) for p in new.iterdir())
    outcomes = [r["bob@example.org"] for r in results]
    # Each copy names its own directory: a Maildir may be on another file system.
    assert all(isinstance(o, NeedsFlush) and o.path == str(new) for o in outcomes)
    assert sorted(o.copy for o in outcomes if isinstance(o, NeedsFlush)) == copies
    # A small batch still makes itself durable (per-file fsync) and says Delivered.
    (small,) = agent.deliver_batch([DeliveryItem(b"Subject: s\r\n\r\nx\r\n", ["bob@example.org"])])
    assert small == {"bob@example.org": Delivered()}


def test_discard_removes_only_copies_in_new_under_the_root(tmp_path: Path) -> None:
    agent = MaildirAgent(tmp_path / "mail")
    maildir = tmp_path / "mail" / "example.org" / "bob"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    fresh = maildir / "new" / "1.Qa.host,S=3"
    seen = maildir / "cur" / "1.Qb.host,S=3:2,S"
    elsewhere = tmp_path / "new" / "1.Qc.host,S=3"  # a "new/" outside the root
    elsewhere.parent.mkdir()
    for path in (fresh, seen, elsewhere):
        path.write_bytes(b"abc")
    sneaky = str(maildir / "new" / ".." / ".." / ".." / ".." / "new" / elsewhere.name)

    agent.discard([str(fresh), str(seen), str(elsewhere), sneaky, str(maildir / "new" / "gone")])

    assert not fresh.exists()  # a copy whose flush failed, not yet seen by any client
    assert seen.exists()  # a client has seen it: never removed
    assert elsewhere.exists()
