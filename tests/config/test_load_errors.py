"""Every way a config file can be wrong gives one exact line: file, dotted key, message.

Covers unreadable files, TOML syntax errors, unknown keys and tables at every level, wrong
types, bad values and the checks that span keys (legacy TLS opt-in, aliases, listener
address conflicts).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postguard.config import ConfigError, load_config

from .conftest import CONFIG_NAME, Loader

F = "postguard.toml"

# (id, file contents, the exact str(ConfigError))
BAD_CONFIGS = [
    # --- types -----------------------------------------------------------------------------
    ("section-not-a-table", "server = 1", f"{F}: server: expected a table, got integer"),
    (
        "hostname-integer",
        "[server]\nhostname = 5",
        f"{F}: server.hostname: expected a string, got integer",
    ),
    (
        "enabled-string",
        '[listener.mx]\nenabled = "yes"',
        f"{F}: listener.mx.enabled: expected a boolean, got string",
    ),
    (
        "max-recipients-string",
        '[limits]\nmax_recipients = "100"',
        f"{F}: limits.max_recipients: expected an integer, got string",
    ),
    (
        "max-recipients-boolean-is-not-an-integer",
        "[limits]\nmax_recipients = true",
        f"{F}: limits.max_recipients: expected an integer, got boolean",
    ),
    (
        "size-boolean",
        "[limits]\nmax_message_size = true",
        f'{F}: limits.max_message_size: expected a size such as "50MiB", got boolean',
    ),
    (
        "duration-float",
        "[limits]\nidle_timeout = 1.5",
        f'{F}: limits.idle_timeout: expected a duration such as "5m", got float',
    ),
    (
        "min-version-float",
        "[tls]\nmin_version = 1.2",
        f"{F}: tls.min_version: expected a string, got float",
    ),
    (
        "addresses-string",
        '[listener.mx]\naddresses = "127.0.0.1:25"',
        f"{F}: listener.mx.addresses: expected an array of strings, got string",
    ),
    (
        "addresses-item-integer",
        '[listener.mx]\naddresses = ["127.0.0.1:25", 25]',
        f"{F}: listener.mx.addresses[1]: expected a string, got integer",
    ),
    (
        "certificate-table-not-array",
        '[tls.certificate]\ncert = "a.pem"\nkey = "a.key"',
        f"{F}: tls.certificate: expected an array of tables ([[tls.certificate]]), got table",
    ),
    (
        "aliases-not-a-table",
        '[local]\naliases = ["a@localhost"]',
        f"{F}: local.aliases: expected a table, got array",
    ),
    (
        "alias-target-integer",
        '[local.aliases]\n"a@localhost" = 1',
        f'{F}: local.aliases."a@localhost": expected a string, got integer',
    ),
    (
        "log-level-datetime",
        "[log]\nlevel = 2024-01-01T00:00:00Z",
        f"{F}: log.level: expected a string, got datetime",
    ),
    # --- values ----------------------------------------------------------------------------
    (
        "mx-tls-typo",
        '[listener.mx]\ntls = "mayb"',
        f'{F}: listener.mx.tls: unknown value "mayb" (expected: opportunistic, required)',
    ),
    (
        "mx-tls-implicit",
        '[listener.mx]\ntls = "implicit"',
        f'{F}: listener.mx.tls: unknown value "implicit" (expected: opportunistic, required)',
    ),
    (
        "hostname-invalid",
        '[server]\nhostname = "bad_host"',
        f'{F}: server.hostname: invalid domain "bad_host"',
    ),
    ("user-empty", '[server]\nuser = ""', f"{F}: server.user: must be a non-empty name"),
    ("workers-zero", "[server]\nworkers = 0", f"{F}: server.workers: must be at least 1, got 0"),
    (
        "workers-too-many",
        "[server]\nworkers = 257",
        f"{F}: server.workers: must be at most 256, got 257",
    ),
    (
        "shutdown-grace-bad-unit",
        '[server]\nshutdown_grace = "30sec"',
        f'{F}: server.shutdown_grace: unknown duration unit "sec" in "30sec"'
        " (expected one of: ms, s, m, h, d)",
    ),
    (
        "size-abbreviated-unit",
        '[limits]\nmax_message_size = "50M"',
        f'{F}: limits.max_message_size: unknown size unit "M" in "50M"'
        " (expected one of: B, KB, KiB, MB, MiB, GB, GiB)",
    ),
    (
        "size-fraction",
        '[limits]\nmax_message_size = "1.5GiB"',
        f'{F}: limits.max_message_size: invalid size "1.5GiB"'
        " (expected a whole number and one of: B, KB, KiB, MB, MiB, GB, GiB)",
    ),
    (
        "size-zero",
        "[limits]\nmax_message_size = 0",
        f'{F}: limits.max_message_size: must be greater than 0, got "0"',
    ),
    (
        "duration-negative",
        "[limits]\ncommand_timeout = -5",
        f"{F}: limits.command_timeout: invalid duration -5 (expected 0 to 999999999999999999)",
    ),
    (
        "duration-zero",
        '[limits]\ndata_timeout = "0s"',
        f'{F}: limits.data_timeout: must be greater than 0, got "0s"',
    ),
    (
        "max-recipients-zero",
        "[limits]\nmax_recipients = 0",
        f"{F}: limits.max_recipients: must be at least 1, got 0",
    ),
    (
        "per-ip-above-total",
        "[limits]\nmax_connections = 10\nmax_connections_per_ip = 11",
        f"{F}: limits.max_connections_per_ip: must not exceed limits.max_connections (10)",
    ),
    (
        "min-version-unknown",
        '[tls]\nmin_version = "1.4"',
        f'{F}: tls.min_version: unknown value "1.4" (expected: 1.0, 1.1, 1.2, 1.3)',
    ),
    (
        "min-version-1.1-without-legacy-opt-in",
        '[tls]\nmin_version = "1.1"',
        f'{F}: tls.min_version: "1.1" is a legacy TLS version (RFC 8996);'
        " it needs tls.allow_legacy_tls_versions = true",
    ),
    (
        "min-version-1.0-with-opt-in-false",
        '[tls]\nmin_version = "1.0"\nallow_legacy_tls_versions = false',
        f'{F}: tls.min_version: "1.0" is a legacy TLS version (RFC 8996);'
        " it needs tls.allow_legacy_tls_versions = true",
    ),
    (
        "certificate-without-key",
        '[[tls.certificate]]\ncert = "a.pem"',
        f"{F}: tls.certificate[0].key: missing (each [[tls.certificate]] needs cert and key)",
    ),
    (
        "second-certificate-empty-path",
        '[[tls.certificate]]\ncert = "a.pem"\nkey = "a.key"\n'
        '[[tls.certificate]]\ncert = ""\nkey = "b.key"',
        f"{F}: tls.certificate[1].cert: must be a non-empty name",
    ),
    (
        "address-without-port",
        '[listener.mx]\naddresses = ["127.0.0.1:25", "localhost"]',
        f'{F}: listener.mx.addresses[1]: invalid address "localhost" (expected "IPv4:port",'
        ' "[IPv6]:port", "localhost:port" or "*:port")',
    ),
    (
        "address-port-out-of-range",
        '[listener.mx]\naddresses = ["127.0.0.1:70000"]',
        f'{F}: listener.mx.addresses[0]: invalid port "70000" in "127.0.0.1:70000"'
        " (expected 0-65535)",
    ),
    (
        "address-ipv6-unbracketed",
        '[listener.submission]\naddresses = ["::1:587"]',
        f'{F}: listener.submission.addresses[0]: IPv6 address in "::1:587" must be in'
        " brackets, e.g. [::1]:25",
    ),
    (
        "address-host-name",
        '[listener.submissions]\naddresses = ["mail.example.org:465"]',
        f'{F}: listener.submissions.addresses[0]: invalid address "mail.example.org:465"'
        ' (expected "IPv4:port", "[IPv6]:port", "localhost:port" or "*:port";'
        " host names are not accepted)",
    ),
    (
        "address-repeated-in-listener",
        '[listener.mx]\naddresses = ["127.0.0.1:25", "127.0.0.1:25"]',
        f"{F}: listener.mx.addresses[1]: duplicate of listener.mx.addresses[0]",
    ),
    (
        "address-shared-across-listeners",
        '[listener.submission]\naddresses = ["127.0.0.1:2525"]',
        f'{F}: listener.submission.addresses[0]: "127.0.0.1:2525" conflicts with'
        ' "127.0.0.1:2525" at listener.mx.addresses[0]',
    ),
    (
        "wildcard-overlaps-other-listener",
        '[listener.submissions]\naddresses = ["[::1]:2465", "*:2587"]',
        f'{F}: listener.submissions.addresses[1]: "*:2587" conflicts with'
        ' "127.0.0.1:2587" at listener.submission.addresses[0]',
    ),
    (
        "enabled-listener-without-addresses",
        "[listener.mx]\naddresses = []",
        f"{F}: listener.mx.addresses: an enabled listener needs at least one address",
    ),
    (
        "domain-invalid",
        '[local]\ndomains = ["example.org", "exa mple.org"]',
        f'{F}: local.domains[1]: invalid domain "exa mple.org"',
    ),
    (
        "domain-repeated-in-other-case",
        '[local]\ndomains = ["example.org", "Example.ORG"]',
        f"{F}: local.domains[1]: duplicate of local.domains[0]",
    ),
    (
        "mailbox-without-at",
        '[local]\ndomains = ["example.org"]\nmailboxes = ["alice"]',
        f'{F}: local.mailboxes[0]: invalid mailbox "alice" (expected local-part@domain)',
    ),
    (
        "mailbox-in-foreign-domain",
        '[local]\ndomains = ["example.org"]\nmailboxes = ["a@example.org", "b@example.net"]',
        f'{F}: local.mailboxes[1]: domain "example.net" is not in local.domains',
    ),
    (
        "mailbox-without-domains-key",
        '[local]\nmailboxes = ["test@localhost"]',
        f'{F}: local.mailboxes[0]: domain "localhost" is not in local.domains',
    ),
    (
        "alias-to-non-mailbox",
        '[local]\ndomains = ["example.org"]\nmailboxes = ["alice@example.org"]\n'
        '[local.aliases]\n"postmaster@example.org" = "bob@example.org"',
        f'{F}: local.aliases."postmaster@example.org": target "bob@example.org"'
        " is not in local.mailboxes",
    ),
    (
        "alias-in-foreign-domain",
        '[local]\ndomains = ["example.org"]\nmailboxes = ["alice@example.org"]\n'
        '[local.aliases]\n"postmaster@example.net" = "alice@example.org"',
        f'{F}: local.aliases."postmaster@example.net": alias domain "example.net"'
        " is not in local.domains",
    ),
    (
        "alias-shadows-mailbox",
        '[local]\ndomains = ["example.org"]\nmailboxes = ["alice@example.org"]\n'
        '[local.aliases]\n"Alice@example.org" = "alice@example.org"',
        f'{F}: local.aliases."Alice@example.org": "alice@example.org" is a mailbox in'
        " local.mailboxes, it cannot be an alias",
    ),
    (
        "alias-repeated-in-other-case",
        '[local]\ndomains = ["example.org"]\nmailboxes = ["alice@example.org"]\n'
        '[local.aliases]\n"abuse@example.org" = "alice@example.org"\n'
        '"ABUSE@example.org" = "alice@example.org"',
        f'{F}: local.aliases."ABUSE@example.org": duplicate alias "abuse@example.org"'
        " (aliases are case-insensitive)",
    ),
    (
        "log-level-unknown",
        '[log]\nlevel = "trace"',
        f'{F}: log.level: unknown value "trace" (expected: debug, info, warning, error)',
    ),
    (
        "log-format-unknown",
        '[log]\nformat = "xml"',
        f'{F}: log.format: unknown value "xml" (expected: text, json)',
    ),
    (
        "control-character-stays-on-one-line",
        '[log]\nformat = "a\\nb"',
        f'{F}: log.format: unknown value "a\\nb" (expected: text, json)',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=name) for name, text, expected in BAD_CONFIGS],
)
def test_bad_value_names_file_and_key(load: Loader, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert str(caught.value) == expected
    assert "\n" not in str(caught.value)
    assert caught.value.path == CONFIG_NAME


# (table header or "" for the top level, allowed keys in the order the error lists them)
TABLES = [
    ("", "server, limits, tls, listener, local, queue, delivery, auth, log"),
    ("server", "hostname, data_dir, user, group, shutdown_grace, workers"),
    (
        "limits",
        "max_message_size, max_recipients, idle_timeout, command_timeout, data_timeout,"
        " max_connections, max_connections_per_ip",
    ),
    ("tls", "min_version, allow_legacy_tls_versions, watch_interval, certificate"),
    ("listener", "mx, submission, submissions"),
    ("listener.mx", "enabled, addresses, tls, auth"),
    ("listener.submission", "enabled, addresses, allow_plaintext"),
    ("listener.submissions", "enabled, addresses"),
    ("local", "domains, mailboxes, aliases, maildir_root, mailbox_quota"),
    (
        "queue",
        "first_retry, max_backoff, max_lifetime, delay_warning, min_free_disk, concurrency,"
        " per_destination_concurrency, lease, scan_interval, group_commit",
    ),
    ("delivery", "default, lmtp, routes"),
    ("delivery.lmtp", "address, socket, tls, ca_file, server_name, lhlo_domain"),
    (
        "auth",
        "accounts_file, received_shows_identity, mechanisms, max_failures_per_ip,"
        " max_failures_per_account, failure_window, lockout, base_delay, max_delay, oauth",
    ),
    (
        "auth.oauth",
        "jwks_file, jwks_url, allow_insecure_jwks_url, issuer, audience, algorithms,"
        " identity_claim, introspection_url, introspection_client_id,"
        " introspection_client_secret_file, cache_ttl",
    ),
    ("log", "format, level"),
]


@pytest.mark.parametrize(
    ("table", "allowed"), [pytest.param(t, a, id=t or "top-level") for t, a in TABLES]
)
def test_unknown_key_is_an_error_at_every_level(load: Loader, table: str, allowed: str) -> None:
    header = f"[{table}]\n" if table else ""
    key = f"{table}.bogus" if table else "bogus"
    with pytest.raises(ConfigError) as caught:
        load(f"{header}bogus = 1\n")
    assert str(caught.value) == f"{F}: {key}: unknown key (expected: {allowed})"
    assert caught.value.key == key


def test_unknown_key_in_a_certificate_names_its_index(load: Loader) -> None:
    text = '[[tls.certificate]]\ncert = "a"\nkey = "b"\n[[tls.certificate]]\nchain = "c"\n'
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert str(caught.value) == f"{F}: tls.certificate[1].chain: unknown key (expected: cert, key)"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        pytest.param("listener.smtp", "listener.smtp", id="unknown-listener-name"),
        pytest.param("relay", "relay", id="unknown-top-level-table"),
        pytest.param("server.tls", "server.tls", id="unknown-sub-table"),
    ],
)
def test_unknown_table_is_an_error(load: Loader, table: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(f"[{table}]\nenabled = true\n")
    assert caught.value.key == key
    assert caught.value.message.startswith("unknown key (expected: ")


def test_tls_mode_is_settable_on_mx_only(load: Loader) -> None:
    with pytest.raises(ConfigError) as caught:
        load('[listener.submission]\ntls = "opportunistic"\n')
    assert str(caught.value) == (
        f"{F}: listener.submission.tls: unknown key (expected: enabled, addresses, allow_plaintext)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "[server]\nhostname = \n", f"{F}: line 2, column 12: Invalid value", id="missing-value"
        ),
        pytest.param(
            '[log]\nlevel = "info', f"{F}: end of document: Unterminated string", id="unterminated"
        ),
        pytest.param(
            "[log]\n[log]\n", f"{F}: line 2, column 5: Cannot declare ('log',) twice", id="twice"
        ),
    ],
)
def test_toml_syntax_error_names_line_and_column(load: Loader, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert str(caught.value) == expected
    assert caught.value.key == ""


def test_missing_file_is_a_config_error(workdir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(Path("missing.toml"))
    assert str(caught.value) == "missing.toml: cannot read: No such file or directory"


def test_directory_instead_of_file_is_a_config_error(workdir: Path) -> None:
    (workdir / "dir.toml").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_config(Path("dir.toml"))
    assert str(caught.value) == "dir.toml: cannot read: Is a directory"


def test_non_utf8_file_is_a_config_error(workdir: Path) -> None:
    CONFIG_NAME.write_bytes(b'[server]\nhostname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIG_NAME, data_dir_override=workdir)
    assert str(caught.value) == f"{F}: not valid UTF-8 (byte 24)"


def test_data_dir_is_required_without_an_override(load: Loader) -> None:
    with pytest.raises(ConfigError) as caught:
        load('[server]\nhostname = "mx.example.org"\n', data_dir_override=None)
    assert str(caught.value) == (
        f"{F}: server.data_dir: missing (set it, or pass a data directory)"
    )


@pytest.mark.parametrize(
    ("path", "key", "message", "expected"),
    [
        pytest.param(Path("a.toml"), "log.level", "bad", "a.toml: log.level: bad", id="full"),
        pytest.param(Path("a.toml"), "", "bad", "a.toml: bad", id="no-key"),
        pytest.param(None, "log.level", "bad", "log.level: bad", id="no-file"),
    ],
)
def test_config_error_renders_one_line(
    path: Path | None, key: str, message: str, expected: str
) -> None:
    error = ConfigError(path, key, message)
    assert str(error) == expected
    assert (error.path, error.key, error.message) == (path, key, message)
