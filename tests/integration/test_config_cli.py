"""The configuration CLI as a user runs it: ``python -m postguard config check`` and ``serve``.

Covers: a good file passes with exit 0 and "OK"; an unknown key, a wrong type,
a bad value, a TOML syntax error and a missing file each exit 78 (EX_CONFIG)
with one line on stderr naming the file and the key, and no traceback;
``serve --config`` with a bad file does the same before binding anything; and
the commented sample ``postguard.toml`` that ``serve`` writes into a fresh data
directory (``postguard.cli.serve.load``, called directly so no port is bound)
passes ``config check``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.servers import write_config
from postguard.cli import serve

EX_OK = 0
EX_CONFIG = 78
CLI_TIMEOUT_SECONDS = 60


def postguard(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postguard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
    )


def assert_one_line_config_error(result, path: Path, key: str) -> None:
    assert result.returncode == EX_CONFIG, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("postguard: "), lines
    assert str(path) in lines[0]
    assert key in lines[0]


BAD_FILES = {
    "unknown-key": ('[limits]\nmax_mesage_size = "1KiB"\n', "limits.max_mesage_size"),
    "unknown-table": ("[relay]\nhost = 1\n", "relay"),
    "wrong-type": ('[limits]\nmax_recipients = "many"\n', "limits.max_recipients"),
    "bad-size": ('[limits]\nmax_message_size = "lots"\n', "limits.max_message_size"),
    "bad-duration": ('[limits]\nidle_timeout = "-5s"\n', "limits.idle_timeout"),
    "bad-choice": ('[log]\nformat = "xml"\n', "log.format"),
    "legacy-tls": ('[tls]\nmin_version = "1.1"\n', "tls.min_version"),
}


def test_config_check_accepts_a_good_file(tmp_path) -> None:
    path = write_config(tmp_path / "data", '[limits]\nmax_message_size = "10MiB"\n')
    result = postguard("config", "check", path)
    assert result.returncode == EX_OK, result
    assert "OK" in result.stdout
    assert str(path) in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_config_check_reports_a_bad_file_in_one_line_with_exit_78(tmp_path, case) -> None:
    extra, key = BAD_FILES[case]
    path = write_config(tmp_path / "data", extra)
    assert_one_line_config_error(postguard("config", "check", path), path, key)


def test_config_check_names_the_listener_key_for_a_bad_tls_mode(tmp_path) -> None:
    path = write_config(tmp_path / "data", mx_tls="mayb")
    result = postguard("config", "check", path)
    assert_one_line_config_error(result, path, "listener.mx.tls")
    assert '"mayb"' in result.stderr


def test_config_check_reports_toml_syntax_errors_in_one_line(tmp_path) -> None:
    path = write_config(tmp_path / "data", "[limits\nmax_recipients = 5\n")
    result = postguard("config", "check", path)
    assert result.returncode == EX_CONFIG, result
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(path) in line


def test_config_check_of_a_missing_file_is_exit_78(tmp_path) -> None:
    path = tmp_path / "nowhere.toml"
    result = postguard("config", "check", path)
    assert result.returncode == EX_CONFIG, result
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert str(path) in line


def test_serve_with_a_bad_config_exits_78_in_one_line(tmp_path) -> None:
    extra, key = BAD_FILES["unknown-key"]
    path = write_config(tmp_path / "data", extra)
    result = postguard("serve", "--config", path)
    assert_one_line_config_error(result, path, key)
    assert result.stdout == ""  # no banner: nothing was started


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: only the privilege drop hides the dir")
def test_serve_as_root_with_an_unreachable_data_dir_fails_in_one_line(tmp_path) -> None:
    # pytest's tmp_path lies under a 0700 root-owned directory: "nobody" cannot enter it.
    data_dir = tmp_path / "data"
    path = write_config(data_dir)
    result = postguard("serve", "--config", path)
    assert result.returncode != EX_OK, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(data_dir) in lines[0]


def test_serve_writes_a_sample_config_that_config_check_accepts(tmp_path) -> None:
    data_dir = tmp_path / "fresh"
    config = serve.load(argparse.Namespace(config=None, data_dir=data_dir))
    sample = data_dir / "postguard.toml"
    assert sample.is_file()
    assert config.server.data_dir == data_dir.absolute()
    result = postguard("config", "check", sample)
    assert result.returncode == EX_OK, result
    assert "OK" in result.stdout
    # A second start leaves the operator's file alone.
    sample.write_text(sample.read_text() + "# edited\n")
    serve.load(argparse.Namespace(config=None, data_dir=data_dir))
    assert sample.read_text().endswith("# edited\n")
