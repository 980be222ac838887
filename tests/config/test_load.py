"""Loading valid files: defaults, value conversion, path resolution and normalisation.

The error cases live in test_load_errors.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postguard.config import (
    CertificateSettings,
    ConfigError,
    TlsMode,
    default_config,
    load_config,
)
from postguard.config.units import MINUTES, SECONDS, KiB, MiB

from .conftest import CONFIG_NAME, Loader


def test_empty_file_equals_the_defaults(load: Loader, workdir: Path) -> None:
    config = load("")
    assert config == default_config(workdir / "data")
    assert config.source == CONFIG_NAME


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    assert config.source is None
    assert config.server.hostname == "localhost"
    assert config.server.data_dir == tmp_path
    assert (config.server.user, config.server.group) == (None, None)
    assert config.server.shutdown_grace == 30 * SECONDS
    limits = config.limits
    assert limits.max_message_size == 50 * MiB
    assert limits.max_recipients == 100
    assert (limits.idle_timeout, limits.command_timeout) == (5 * MINUTES, 5 * MINUTES)
    assert limits.data_timeout == 3 * MINUTES
    assert (limits.max_connections, limits.max_connections_per_ip) == (1000, 20)
    assert config.tls.min_version == "1.2"
    assert config.tls.allow_legacy_tls_versions is False
    assert config.tls.certificates == ()
    assert config.tls.watch_interval == 5 * SECONDS
    assert [
        (listener.name, listener.enabled, listener.addresses, listener.tls)
        for listener in config.listeners
    ] == [
        ("mx", True, (("127.0.0.1", 2525),), TlsMode.OPPORTUNISTIC),
        ("submission", True, (("127.0.0.1", 2587),), TlsMode.REQUIRED),
        ("submissions", True, (("127.0.0.1", 2465),), TlsMode.IMPLICIT),
    ]
    assert not any(listener.allow_plaintext for listener in config.listeners)
    assert config.local.domains == ("localhost",)
    assert config.local.mailboxes == ("test@localhost",)
    assert dict(config.local.aliases) == {"postmaster@localhost": "test@localhost"}
    assert config.local.maildir_root == tmp_path / "mail"
    assert (config.log.format, config.log.level) == ("text", "info")


def test_config_is_frozen_and_hashable(tmp_path: Path) -> None:
    config = default_config(tmp_path)
    with pytest.raises(AttributeError):
        config.limits.max_recipients = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.local.aliases["x@localhost"] = "test@localhost"  # type: ignore[index]
    assert hash(config) == hash(default_config(tmp_path))


def test_units_are_converted(load: Loader) -> None:
    config = load(
        "[server]\nshutdown_grace = 0\n"
        '[limits]\nmax_message_size = "512KiB"\nidle_timeout = "90s"\n'
        'command_timeout = "1500ms"\ndata_timeout = 60\n'
        '[tls]\nwatch_interval = "1h"\n'
    )
    assert config.server.shutdown_grace == 0.0
    assert config.limits.max_message_size == 512 * KiB
    assert config.limits.idle_timeout == 90 * SECONDS
    assert config.limits.command_timeout == 1.5
    assert config.limits.data_timeout == 60.0
    assert config.tls.watch_interval == 60 * MINUTES


def test_listener_settings_are_read(load: Loader) -> None:
    config = load(
        '[listener.mx]\naddresses = ["0.0.0.0:25", "[::]:25"]\ntls = "required"\n'
        '[listener.submission]\naddresses = ["[0:0::1]:0", "localhost:0"]\nallow_plaintext = true\n'
        "[listener.submissions]\nenabled = false\n"
    )
    mx, submission, submissions = config.listeners
    assert mx.addresses == (("0.0.0.0", 25), ("::", 25))
    assert mx.tls is TlsMode.REQUIRED
    assert submission.addresses == (("::1", 0), ("localhost", 0))
    assert submission.allow_plaintext is True
    assert submission.tls is TlsMode.REQUIRED
    assert submissions.enabled is False
    assert config.listener("submissions") is submissions


def test_disabled_listener_may_share_an_address(load: Loader) -> None:
    config = load(
        '[listener.submission]\nenabled = false\naddresses = ["127.0.0.1:2525"]\n'
        "[listener.submissions]\nenabled = false\naddresses = []\n"
    )
    assert config.listener("submission").addresses == (("127.0.0.1", 2525),)


def test_ipv4_and_ipv6_wildcards_on_one_port_do_not_conflict(load: Loader) -> None:
    config = load('[listener.mx]\naddresses = ["0.0.0.0:25", "[::]:25"]\n')
    assert len(config.listener("mx").addresses) == 2


def test_port_zero_never_conflicts(load: Loader) -> None:
    config = load(
        '[listener.mx]\naddresses = ["127.0.0.1:0"]\n'
        '[listener.submission]\naddresses = ["127.0.0.1:0"]\n'
    )
    assert config.listener("submission").addresses == (("127.0.0.1", 0),)


def test_domains_and_mailboxes_are_lowercased(load: Loader) -> None:
    config = load(
        '[server]\nhostname = "MX.Example.ORG"\n'
        '[local]\ndomains = ["Example.ORG."]\nmailboxes = ["Alice@EXAMPLE.org"]\n'
        '[local.aliases]\n"PostMaster@example.org" = "ALICE@example.org"\n'
    )
    assert config.server.hostname == "mx.example.org"
    assert config.local.domains == ("example.org",)
    assert config.local.mailboxes == ("alice@example.org",)
    assert dict(config.local.aliases) == {"postmaster@example.org": "alice@example.org"}


def test_local_defaults_apply_only_as_a_set(load: Loader) -> None:
    config = load('[local]\ndomains = ["example.org"]\n')
    assert config.local.domains == ("example.org",)
    assert config.local.mailboxes == ()
    assert dict(config.local.aliases) == {}


def test_empty_aliases_table_means_no_aliases(load: Loader) -> None:
    config = load("[local.aliases]\n")
    assert (config.local.domains, config.local.mailboxes) == ((), ())
    assert dict(config.local.aliases) == {}


def test_maildir_root_alone_keeps_the_development_mailboxes(load: Loader, workdir: Path) -> None:
    config = load('[local]\nmaildir_root = "/srv/mail"\n')
    assert config.local.maildir_root == Path("/srv/mail")
    assert config.local.mailboxes == ("test@localhost",)


def test_data_dir_is_relative_to_the_config_file(workdir: Path) -> None:
    etc = workdir / "etc"
    etc.mkdir()
    (etc / "postguard.toml").write_text('[server]\ndata_dir = "../var/postguard"\n')
    config = load_config(Path("etc/postguard.toml"))
    data_dir = (workdir / "etc" / "../var/postguard").absolute()
    assert config.server.data_dir == data_dir
    assert config.server.data_dir.is_absolute()
    assert config.local.maildir_root == data_dir / "mail"


def test_other_relative_paths_are_relative_to_data_dir(load: Loader, workdir: Path) -> None:
    config = load(
        '[server]\ndata_dir = "/srv/postguard"\n'
        '[[tls.certificate]]\ncert = "certs/mx.pem"\nkey = "/etc/keys/mx.key"\n'
        '[local]\nmaildir_root = "boxes"\n',
        data_dir_override=None,
    )
    data_dir = Path("/srv/postguard")
    assert config.server.data_dir == data_dir
    assert config.tls.certificates == (
        CertificateSettings(cert=data_dir / "certs/mx.pem", key=Path("/etc/keys/mx.key")),
    )
    assert config.local.maildir_root == data_dir / "boxes"


def test_data_dir_override_wins_and_is_relative_to_the_working_directory(
    load: Loader, workdir: Path
) -> None:
    config = load(
        '[server]\ndata_dir = "/srv/postguard"\n'
        '[[tls.certificate]]\ncert = "c.pem"\nkey = "k.pem"\n',
        data_dir_override=Path("override"),
    )
    assert config.server.data_dir == workdir / "override"
    assert config.tls.certificates[0].cert == workdir / "override" / "c.pem"


def test_legacy_tls_version_loads_with_the_opt_in(load: Loader) -> None:
    config = load('[tls]\nmin_version = "1.0"\nallow_legacy_tls_versions = true\n')
    assert config.tls.min_version == "1.0"


def test_certificates_keep_their_order(load: Loader, workdir: Path) -> None:
    config = load(
        '[[tls.certificate]]\ncert = "a.pem"\nkey = "a.key"\n'
        '[[tls.certificate]]\ncert = "b.pem"\nkey = "b.key"\n'
    )
    assert [c.cert.name for c in config.tls.certificates] == ["a.pem", "b.pem"]


def test_source_does_not_take_part_in_equality(load: Loader, workdir: Path) -> None:
    loaded = load("")
    assert loaded.source is not None
    assert loaded == default_config(workdir / "data")


def test_unknown_listener_lookup_is_a_key_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        default_config(tmp_path).listener("smtp")


def test_error_for_absolute_config_path_names_that_path(tmp_path: Path) -> None:
    path = tmp_path / "postguard.toml"
    path.write_text("[log]\nlevel = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, data_dir_override=tmp_path)
    assert str(caught.value) == f"{path}: log.level: expected a string, got integer"
