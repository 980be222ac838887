"""The weakening catalogue: which settings are reported, and how they read."""

from __future__ import annotations

from pathlib import Path

import pytest

from postguard.config import Weakening, default_config, find_weakenings, render_sample
from postguard.config.weakenings import CATALOGUE

from .conftest import Loader

PLAINTEXT = "listener.submission.allow_plaintext"
LEGACY = "tls.allow_legacy_tls_versions"
MIN_VERSION = "tls.min_version"


def test_defaults_weaken_nothing(tmp_path: Path) -> None:
    assert find_weakenings(default_config(tmp_path)) == []


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        pytest.param("[listener.submission]\nallow_plaintext = true\n", [PLAINTEXT],
                     id="plaintext-submission"),
        pytest.param("[listener.submission]\nallow_plaintext = true\nenabled = false\n", [],
                     id="plaintext-on-disabled-listener-has-no-effect"),
        pytest.param("[tls]\nallow_legacy_tls_versions = true\n", [LEGACY],
                     id="legacy-opt-in-alone"),
        pytest.param('[tls]\nallow_legacy_tls_versions = true\nmin_version = "1.1"\n',
                     [LEGACY, MIN_VERSION], id="legacy-version"),
        pytest.param('[tls]\nmin_version = "1.3"\n', [], id="stricter-version"),
        pytest.param('[listener.mx]\naddresses = ["*:25"]\n', [],
                     id="public-address-is-not-a-weakening"),
        pytest.param('[listener.mx]\ntls = "required"\n', [], id="required-mx-tls"),
        pytest.param('[delivery.lmtp]\naddress = "192.0.2.7:24"\ntls = "none"\n',
                     ["delivery.lmtp.tls"], id="lmtp-without-tls-off-the-host"),
        pytest.param('[delivery.lmtp]\naddress = "127.0.0.1:24"\ntls = "none"\n', [],
                     id="lmtp-without-tls-on-loopback"),
    ],
)  # fmt: skip
def test_weakenings_found(load: Loader, text: str, keys: list[str]) -> None:
    assert [weakening.key for weakening in find_weakenings(load(text))] == keys


def test_weakening_names_file_key_and_what_it_weakens(load: Loader) -> None:
    (weakening,) = find_weakenings(load("[listener.submission]\nallow_plaintext = true\n"))
    assert weakening == Weakening(
        key=PLAINTEXT,
        source=Path("postguard.toml"),
        message="submission accepts AUTH and MAIL without STARTTLS, so passwords and mail "
        "can cross the network in cleartext",
    )
    assert str(weakening) == f"postguard.toml: {PLAINTEXT}: {weakening.message}"


def test_weakening_without_a_file_omits_it() -> None:
    weakening = Weakening(key=LEGACY, source=None, message="m")
    assert str(weakening) == f"{LEGACY}: m"


def test_catalogue_entries_are_unique_one_line_and_known_to_the_loader(tmp_path: Path) -> None:
    sample = render_sample(default_config(tmp_path))
    keys = [rule.key for rule in CATALOGUE]
    assert len(keys) == len(set(keys))
    for rule in CATALOGUE:
        table, _, name = rule.key.rpartition(".")
        assert f"[{table}]" in sample, rule.key
        assert f"{name} = " in sample, rule.key
        assert rule.explanation and "\n" not in rule.explanation
