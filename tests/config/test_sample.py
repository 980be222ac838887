"""The commented sample `postguard.toml`: it loads back to the same config and shows every key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from postguard.config import (
    AuthSettings,
    CertificateSettings,
    Config,
    DeliverySettings,
    LimitsSettings,
    LmtpSettings,
    LocalSettings,
    LogSettings,
    OAuthSettings,
    QueueSettings,
    ServerSettings,
    TlsSettings,
    default_config,
    find_weakenings,
    load_config,
    render_sample,
)
from postguard.config.weakenings import CATALOGUE

_LINE = re.compile(r"(?:# )?(?:(?P<table>\[\[?[a-z.]+\]\]?)|(?P<key>[a-z_]+) = .*)")


def _keys_by_table(sample: str) -> set[str]:
    """Every ``table.key`` in the sample, live or commented out."""
    keys: set[str] = set()
    table = ""
    for line in sample.splitlines():
        match = _LINE.fullmatch(line)
        if match and match["table"]:
            table = match["table"].strip("[]")
        elif match:
            keys.add(f"{table}.{match['key']}")
    return keys


def _round_trip(config: Config, path: Path) -> Config:
    path.write_text(render_sample(config), encoding="utf-8")
    return load_config(path)


def test_sample_of_defaults_loads_back_to_the_defaults(tmp_path: Path) -> None:
    defaults = default_config(tmp_path / "data")
    loaded = _round_trip(defaults, tmp_path / "postguard.toml")
    assert loaded == defaults
    assert find_weakenings(loaded) == []


def test_sample_of_a_changed_config_loads_back_to_it(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    data_dir = base.server.data_dir
    mx, submission, submissions = base.listeners
    config = dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname="mx.example.org", user="mail"),
        limits=dataclasses.replace(base.limits, max_message_size=1500, data_timeout=1.5),
        tls=dataclasses.replace(
            base.tls,
            min_version="1.0",
            allow_legacy_tls_versions=True,
            certificates=(
                CertificateSettings(cert=data_dir / "a.pem", key=Path('/etc/ssl/a\\b".key')),
            ),
        ),
        listeners=(
            dataclasses.replace(mx, addresses=(("::", 25), ("0.0.0.0", 25))),
            dataclasses.replace(submission, allow_plaintext=True, enabled=False),
            dataclasses.replace(submissions, addresses=(("*", 0),)),
        ),
        local=dataclasses.replace(
            base.local,
            domains=("example.org",),
            mailboxes=("alice@example.org",),
            aliases={},
            maildir_root=Path("/srv/mail"),
        ),
        log=LogSettings(format="json", level="debug"),
    )
    assert _round_trip(config, tmp_path / "postguard.toml") == config


@pytest.mark.parametrize(
    ("table", "settings"),
    [
        pytest.param("server", ServerSettings, id="server"),
        pytest.param("limits", LimitsSettings, id="limits"),
        pytest.param("tls", TlsSettings, id="tls"),
        pytest.param("tls.certificate", CertificateSettings, id="tls-certificate"),
        pytest.param("local", LocalSettings, id="local"),
        pytest.param("queue", QueueSettings, id="queue"),
        pytest.param("delivery", DeliverySettings, id="delivery"),
        pytest.param("delivery.lmtp", LmtpSettings, id="delivery-lmtp"),
        pytest.param("auth", AuthSettings, id="auth"),
        pytest.param("auth.oauth", OAuthSettings, id="auth-oauth"),
        pytest.param("log", LogSettings, id="log"),
    ],
)
def test_sample_shows_every_schema_key(tmp_path: Path, table: str, settings: type) -> None:
    keys = _keys_by_table(render_sample(default_config(tmp_path)))
    # fields written as tables of their own
    renamed = {
        "certificates": "certificate",
        "aliases": None,
        "oauth": None,
        "lmtp": None,
        "routes": None,
    }
    for field in dataclasses.fields(settings):
        name = renamed.get(field.name, field.name)
        if name is None or name == "certificate":
            continue
        assert f"{table}.{name}" in keys


@pytest.mark.parametrize(
    ("listener", "names"),
    [
        pytest.param("mx", ["enabled", "addresses", "tls", "auth"], id="mx"),
        pytest.param("submission", ["enabled", "addresses", "allow_plaintext"], id="submission"),
        pytest.param("submissions", ["enabled", "addresses"], id="submissions"),
    ],
)
def test_sample_shows_every_listener_key(tmp_path: Path, listener: str, names: list[str]) -> None:
    keys = _keys_by_table(render_sample(default_config(tmp_path)))
    assert {key for key in keys if key.startswith(f"listener.{listener}.")} == {
        f"listener.{listener}.{name}" for name in names
    }


def test_sample_shows_certificate_alias_lmtp_and_route_tables(tmp_path: Path) -> None:
    sample = render_sample(default_config(tmp_path))
    assert "# [[tls.certificate]]\n" in sample
    assert '\n[local.aliases]\n"postmaster@localhost" = "test@localhost"\n' in sample
    assert "\n# [delivery.lmtp]\n" in sample
    assert "\n[delivery.routes]\n" in sample


def test_every_key_has_a_comment_line_above_it(tmp_path: Path) -> None:
    lines = render_sample(default_config(tmp_path)).splitlines()
    for index, line in enumerate(lines):
        if re.fullmatch(r"[a-z_]+ = .*", line):
            assert lines[index - 1].startswith("# "), line


def _line_of(lines: list[str], key: str) -> int:
    """Index of the one line setting ``key`` (``table.name``), live or commented out."""
    want_table, _, name = key.rpartition(".")
    found, table = [], ""
    for index, line in enumerate(lines):
        match = _LINE.fullmatch(line)
        if match and match["table"]:
            table = match["table"].strip("[]")
        elif match and table == want_table and match["key"] == name:
            found.append(index)
    (index,) = found
    return index


@pytest.mark.parametrize("key", [rule.key for rule in CATALOGUE])
def test_weakening_is_marked_and_commented_out_while_off(tmp_path: Path, key: str) -> None:
    lines = render_sample(default_config(tmp_path)).splitlines()
    name = key.rpartition(".")[2]
    index = _line_of(lines, key)
    assert lines[index - 1].startswith("# WEAKENS SECURITY: ")
    if name.startswith("allow_"):
        assert lines[index] == f"# {name} = false"


def test_weakening_that_is_on_is_written_live(tmp_path: Path) -> None:
    base = default_config(tmp_path)
    config = dataclasses.replace(
        base, tls=dataclasses.replace(base.tls, allow_legacy_tls_versions=True)
    )
    assert "\nallow_legacy_tls_versions = true\n" in render_sample(config)
