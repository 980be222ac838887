"""Local Maildir delivery: layout, exact bytes, unique names, unsafe names, storage errors.

Covers ``postguard.delivery.maildir.MaildirAgent`` on real directories: a delivery
creates ``tmp/``, ``new/`` and ``cur/``, leaves exactly the given bytes in ``new/`` (and
nothing in ``tmp/``), 1000 deliveries get 1000 distinct names, a mailbox name that could
escape the Maildir root is a permanent failure (550 5.1.1) that creates nothing, a full
file system is a temporary failure 452 4.3.1 and any other storage error 451 4.3.0.

Full and read-only file systems are real: a 512 KiB tmpfs mounted for the test (root only;
CI runs as root; elsewhere these tests skip and say why). Root ignores permission bits, so
for root "read-only" is a read-only remount of that tmpfs; other users get a 0500 directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers.tmpfs import Tmpfs, mount_tmpfs
from postguard.delivery.base import Delivered, PermanentFailure, TemporaryFailure
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
    from postguard.delivery import maildir as module

    assert module._syncfs is not None, "syncfs(2) should be available on Linux"
    items = [
        (f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(), [MAILBOX], "a@example.org")
        for n in range(module.SYNCFS_MIN_BATCH * 3)
    ]
    results = agent.deliver_batch(items)
    assert all(r == {MAILBOX: Delivered()} for r in results)
    new = tmp_path / "mail" / "localhost" / "test" / "new"
    stored = sorted(p.read_bytes() for p in new.iterdir())
    expected = sorted(b"Return-Path: <a@example.org>\r\n" + content for content, _, _ in items)
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
