"""The [delivery], [delivery.lmtp] and [delivery.routes] tables: defaults, values, every error
with its exact message, the delivery.lmtp.tls weakening, route_for, and the sample round trip.

Unknown keys are covered table-wide in test_load_errors.py's TABLES, sample keys in
test_sample.py's parametrisation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from postguard.config import (
    Config,
    ConfigError,
    DeliverySettings,
    LmtpSettings,
    Weakening,
    default_config,
    find_weakenings,
    load_config,
    render_sample,
)

from .conftest import Loader

F = "postguard.toml"
LOCAL = (
    '[server]\nhostname = "mx.example.org"\n'
    '[local]\ndomains = ["example.org", "example.net"]\n'
    'mailboxes = ["alice@example.org", "bob@example.org", "carol@example.net"]\n'
    '[local.aliases]\n"postmaster@example.org" = "alice@example.org"\n'
)
LMTP = '[delivery.lmtp]\naddress = "127.0.0.1:24"\n'
WEAKENING = "delivery.lmtp.tls"


def _round_trip(config: Config, path: Path) -> Config:
    path.write_text(render_sample(config), encoding="utf-8")
    return load_config(path)


# --- defaults and values -------------------------------------------------------------------


def test_delivery_defaults(tmp_path: Path) -> None:
    delivery = default_config(tmp_path).delivery
    assert delivery == DeliverySettings()
    assert delivery.default == "maildir"
    assert delivery.lmtp is None
    assert dict(delivery.routes) == {}
    assert isinstance(delivery.routes, MappingProxyType)


def test_lmtp_over_tcp_defaults(load: Loader, workdir: Path) -> None:
    config = load(LOCAL + LMTP)
    assert config.delivery.lmtp == LmtpSettings(
        address=("127.0.0.1", 24),
        socket=None,
        tls="opportunistic",
        ca_file=None,
        server_name=None,
        lhlo_domain="mx.example.org",  # server.hostname
    )
    assert config.delivery.default == "maildir"


def test_lhlo_domain_defaults_to_the_default_hostname(load: Loader) -> None:
    lmtp = load(LMTP).delivery.lmtp
    assert lmtp is not None
    assert lmtp.lhlo_domain == "localhost"


def test_lmtp_over_tcp_values_are_read(load: Loader, workdir: Path) -> None:
    lmtp = load(
        "[delivery.lmtp]\n"
        'address = "[2001:DB8::0:1]:2424"\n'
        'tls = "required"\n'
        'ca_file = "certs/lmtp-ca.pem"\n'
        'server_name = "LMTP.Example.ORG."\n'
        'lhlo_domain = "MX.Example.org"\n'
    ).delivery.lmtp
    assert lmtp == LmtpSettings(
        address=("2001:db8::1", 2424),
        tls="required",
        ca_file=workdir / "data" / "certs/lmtp-ca.pem",
        server_name="lmtp.example.org",
        lhlo_domain="mx.example.org",
    )


@pytest.mark.parametrize(
    ("text", "address"),
    [
        pytest.param("localhost:24", ("localhost", 24), id="localhost"),
        pytest.param("[::1]:24", ("::1", 24), id="ipv6-loopback"),
        pytest.param("192.0.2.7:65535", ("192.0.2.7", 65535), id="highest-port"),
    ],
)
def test_lmtp_address_forms(load: Loader, text: str, address: tuple[str, int]) -> None:
    lmtp = load(f'[delivery.lmtp]\naddress = "{text}"\n').delivery.lmtp
    assert lmtp is not None
    assert lmtp.address == address


@pytest.mark.parametrize(
    ("text", "server_name"),
    [
        pytest.param("192.0.2.7", "192.0.2.7", id="ipv4"),
        pytest.param("2001:DB8::1", "2001:db8::1", id="ipv6-compressed"),
    ],
)
def test_server_name_may_be_an_ip_address(load: Loader, text: str, server_name: str) -> None:
    lmtp = load(f'{LMTP}server_name = "{text}"\n').delivery.lmtp
    assert lmtp is not None
    assert lmtp.server_name == server_name


def test_absolute_ca_file_is_kept(load: Loader) -> None:
    lmtp = load(f'{LMTP}ca_file = "/etc/ssl/lmtp.pem"\n').delivery.lmtp
    assert lmtp is not None
    assert lmtp.ca_file == Path("/etc/ssl/lmtp.pem")


@pytest.mark.parametrize("tls", ["", 'tls = "none"\n'], ids=["tls-absent", "tls-none"])
def test_lmtp_over_a_unix_socket(load: Loader, workdir: Path, tls: str) -> None:
    lmtp = load(f'[delivery.lmtp]\nsocket = "run/lmtp"\n{tls}').delivery.lmtp
    assert lmtp == LmtpSettings(
        socket=workdir / "data" / "run/lmtp", tls="none", lhlo_domain="localhost"
    )


def test_absolute_socket_is_kept(load: Loader) -> None:
    lmtp = load('[delivery.lmtp]\nsocket = "/run/dovecot/lmtp"\n').delivery.lmtp
    assert lmtp is not None
    assert lmtp.socket == Path("/run/dovecot/lmtp")


def test_default_route_lmtp_with_an_lmtp_table(load: Loader) -> None:
    assert load(f'[delivery]\ndefault = "lmtp"\n{LMTP}').delivery.default == "lmtp"


def test_routes_are_read_lowercased_and_read_only(load: Loader) -> None:
    routes = load(
        LOCAL + LMTP + "[delivery.routes]\n"
        '"Example.NET" = "lmtp"\n'
        '"Bob@Example.org" = "lmtp"\n'
        '"postmaster@example.org" = "lmtp"\n'
        '"carol@example.net" = "maildir"\n'
    ).delivery.routes
    assert dict(routes) == {
        "example.net": "lmtp",
        "bob@example.org": "lmtp",
        "postmaster@example.org": "lmtp",
        "carol@example.net": "maildir",
    }
    with pytest.raises(TypeError):
        routes["alice@example.org"] = "lmtp"  # type: ignore[index]


def test_maildir_routes_need_no_lmtp_table(load: Loader) -> None:
    config = load('[delivery.routes]\nlocalhost = "maildir"\n"test@localhost" = "maildir"\n')
    assert dict(config.delivery.routes) == {"localhost": "maildir", "test@localhost": "maildir"}


def test_config_with_routes_is_hashable(load: Loader) -> None:
    config = load(LOCAL + LMTP + '[delivery.routes]\n"example.org" = "lmtp"\n')
    assert hash(config) == hash(load(LOCAL + LMTP + '[delivery.routes]\n"example.org" = "lmtp"\n'))


# --- route_for -----------------------------------------------------------------------------

ROUTES = DeliverySettings(
    default="maildir",
    lmtp=LmtpSettings(address=("127.0.0.1", 24), lhlo_domain="mx.example.org"),
    routes=MappingProxyType(
        {"example.net": "lmtp", "bob@example.org": "lmtp", "carol@example.net": "maildir"}
    ),
)


@pytest.mark.parametrize(
    ("mailbox", "route"),
    [
        pytest.param("bob@example.org", "lmtp", id="own-route"),
        pytest.param("alice@example.org", "maildir", id="no-route-is-the-default"),
        pytest.param("dave@example.net", "lmtp", id="domain-route"),
        pytest.param("carol@example.net", "maildir", id="own-route-beats-domain-route"),
        pytest.param("BOB@Example.ORG", "lmtp", id="case-insensitive-address"),
        pytest.param("Dave@EXAMPLE.net", "lmtp", id="case-insensitive-domain"),
        pytest.param("x@sub.example.net", "maildir", id="subdomain-is-not-the-domain"),
    ],
)
def test_route_for(mailbox: str, route: str) -> None:
    assert ROUTES.route_for(mailbox) == route


def test_route_for_falls_back_to_an_lmtp_default() -> None:
    delivery = dataclasses.replace(ROUTES, default="lmtp")
    assert delivery.route_for("alice@example.org") == "lmtp"
    assert delivery.route_for("carol@example.net") == "maildir"


def test_route_for_a_loaded_config(load: Loader) -> None:
    routes = '[delivery.routes]\n"example.net" = "maildir"\n'
    delivery = load(LOCAL + '[delivery]\ndefault = "lmtp"\n' + LMTP + routes).delivery
    assert delivery.route_for("alice@example.org") == "lmtp"
    assert delivery.route_for("carol@example.net") == "maildir"


# --- errors --------------------------------------------------------------------------------

ADDRESS_FORMS = '"IPv4:port", "[IPv6]:port" or "localhost:port"'
DELIVERY_ERRORS = [
    # --- [delivery] ------------------------------------------------------------------------
    ("delivery-not-a-table", "delivery = 1", "delivery: expected a table, got integer"),
    (
        "default-unknown",
        '[delivery]\ndefault = "mbox"',
        'delivery.default: unknown value "mbox" (expected: maildir, lmtp)',
    ),
    (
        "default-integer",
        "[delivery]\ndefault = 1",
        "delivery.default: expected a string, got integer",
    ),
    (
        "default-lmtp-without-lmtp-table",
        '[delivery]\ndefault = "lmtp"',
        'delivery.default: "lmtp" needs a [delivery.lmtp] table',
    ),
    (
        "lmtp-not-a-table",
        '[delivery]\nlmtp = "127.0.0.1:24"',
        "delivery.lmtp: expected a table, got string",
    ),
    (
        "routes-not-a-table",
        '[delivery]\nroutes = ["example.org"]',
        "delivery.routes: expected a table, got array",
    ),
    # --- [delivery.lmtp] -------------------------------------------------------------------
    (
        "lmtp-empty",
        "[delivery.lmtp]",
        "delivery.lmtp: exactly one of address, socket must be set",
    ),
    (
        "lmtp-without-target",
        '[delivery.lmtp]\ntls = "required"',
        "delivery.lmtp: exactly one of address, socket must be set",
    ),
    (
        "lmtp-address-and-socket",
        '[delivery.lmtp]\nsocket = "/run/lmtp"\naddress = "127.0.0.1:24"',
        "delivery.lmtp.socket: exactly one of address, socket must be set (found: address, socket)",
    ),
    (
        "address-port-zero",
        '[delivery.lmtp]\naddress = "127.0.0.1:0"',
        'delivery.lmtp.address: invalid port "0" in "127.0.0.1:0" (expected 1-65535)',
    ),
    (
        "address-port-out-of-range",
        '[delivery.lmtp]\naddress = "[::1]:65536"',
        'delivery.lmtp.address: invalid port "65536" in "[::1]:65536" (expected 1-65535)',
    ),
    (
        "address-without-port",
        '[delivery.lmtp]\naddress = "127.0.0.1"',
        f'delivery.lmtp.address: invalid address "127.0.0.1" (expected {ADDRESS_FORMS})',
    ),
    (
        "address-all-interfaces",
        '[delivery.lmtp]\naddress = "*:24"',
        'delivery.lmtp.address: invalid address "*:24" (* means all interfaces, not one server)',
    ),
    (
        "address-ipv4-unspecified",
        '[delivery.lmtp]\naddress = "0.0.0.0:24"',
        'delivery.lmtp.address: invalid address "0.0.0.0:24"'
        " (0.0.0.0 means all interfaces, not one server)",
    ),
    (
        "address-ipv6-unspecified",
        '[delivery.lmtp]\naddress = "[::]:24"',
        'delivery.lmtp.address: invalid address "[::]:24"'
        " (:: means all interfaces, not one server)",
    ),
    (
        "address-ipv6-unbracketed",
        '[delivery.lmtp]\naddress = "::1:24"',
        'delivery.lmtp.address: IPv6 address in "::1:24" must be in brackets, e.g. [::1]:25',
    ),
    (
        "address-host-name",
        '[delivery.lmtp]\naddress = "lmtp.example.org:24"',
        'delivery.lmtp.address: invalid address "lmtp.example.org:24"'
        f" (expected {ADDRESS_FORMS}; host names are not accepted)",
    ),
    (
        "address-array",
        '[delivery.lmtp]\naddress = ["127.0.0.1:24"]',
        "delivery.lmtp.address: expected a string, got array",
    ),
    (
        "socket-empty",
        '[delivery.lmtp]\nsocket = ""',
        "delivery.lmtp.socket: must be a non-empty name",
    ),
    (
        "tls-unknown",
        LMTP + 'tls = "implicit"',
        'delivery.lmtp.tls: unknown value "implicit" (expected: opportunistic, required, none)',
    ),
    ("tls-boolean", LMTP + "tls = false", "delivery.lmtp.tls: expected a string, got boolean"),
    (
        "socket-with-opportunistic-tls",
        '[delivery.lmtp]\nsocket = "/run/lmtp"\ntls = "opportunistic"',
        'delivery.lmtp.tls: "opportunistic" is not possible with socket'
        ' (a Unix socket has no TLS; set "none" or leave tls out)',
    ),
    (
        "socket-with-required-tls",
        '[delivery.lmtp]\nsocket = "/run/lmtp"\ntls = "required"',
        'delivery.lmtp.tls: "required" is not possible with socket'
        ' (a Unix socket has no TLS; set "none" or leave tls out)',
    ),
    (
        "socket-with-ca-file",
        '[delivery.lmtp]\nsocket = "/run/lmtp"\nca_file = "ca.pem"',
        "delivery.lmtp.ca_file: only meaningful with address (a Unix socket has no TLS)",
    ),
    (
        "socket-with-server-name",
        '[delivery.lmtp]\nsocket = "/run/lmtp"\nserver_name = "lmtp.example.org"',
        "delivery.lmtp.server_name: only meaningful with address (a Unix socket has no TLS)",
    ),
    (
        "tls-none-with-ca-file",
        LMTP + 'tls = "none"\nca_file = "ca.pem"',
        'delivery.lmtp.ca_file: only meaningful when tls is not "none"',
    ),
    (
        "tls-none-with-server-name",
        LMTP + 'tls = "none"\nserver_name = "lmtp.example.org"',
        'delivery.lmtp.server_name: only meaningful when tls is not "none"',
    ),
    (
        "ca-file-empty",
        LMTP + 'ca_file = ""',
        "delivery.lmtp.ca_file: must be a non-empty name",
    ),
    (
        "server-name-invalid",
        LMTP + 'server_name = "lmtp_server"',
        'delivery.lmtp.server_name: invalid server name "lmtp_server"'
        " (expected a domain or an IP address)",
    ),
    (
        "lhlo-domain-invalid",
        LMTP + 'lhlo_domain = "mx example.org"',
        'delivery.lmtp.lhlo_domain: invalid domain "mx example.org"',
    ),
    (
        "lhlo-domain-integer",
        LMTP + "lhlo_domain = 1",
        "delivery.lmtp.lhlo_domain: expected a string, got integer",
    ),
    # --- [delivery.routes] -----------------------------------------------------------------
    (
        "route-unknown-value",
        '[delivery.routes]\nlocalhost = "mbox"',
        'delivery.routes.localhost: unknown value "mbox" (expected: maildir, lmtp)',
    ),
    (
        "route-integer",
        '[delivery.routes]\n"test@localhost" = 1',
        'delivery.routes."test@localhost": expected a string, got integer',
    ),
    (
        "route-foreign-domain",
        LOCAL + '[delivery.routes]\n"example.com" = "maildir"',
        'delivery.routes."example.com": domain "example.com" is not in local.domains',
    ),
    (
        "route-unknown-address",
        LOCAL + '[delivery.routes]\n"dave@example.org" = "maildir"',
        'delivery.routes."dave@example.org": "dave@example.org" is not in local.mailboxes'
        " or local.aliases",
    ),
    (
        "route-address-in-foreign-domain",
        LOCAL + '[delivery.routes]\n"alice@example.com" = "maildir"',
        'delivery.routes."alice@example.com": "alice@example.com" is not in local.mailboxes'
        " or local.aliases",
    ),
    (
        "route-invalid-domain",
        '[delivery.routes]\n"exa mple.org" = "maildir"',
        'delivery.routes."exa mple.org": invalid domain "exa mple.org"',
    ),
    (
        "route-invalid-mailbox",
        '[delivery.routes]\n"@localhost" = "maildir"',
        'delivery.routes."@localhost": invalid mailbox "@localhost" (expected local-part@domain)',
    ),
    (
        "route-repeated-in-other-case",
        LOCAL + '[delivery.routes]\n"example.org" = "maildir"\n"EXAMPLE.org" = "maildir"',
        'delivery.routes."EXAMPLE.org": duplicate route "example.org"'
        " (routes are case-insensitive)",
    ),
    (
        "lmtp-route-without-lmtp-table",
        LOCAL + '[delivery.routes]\n"alice@example.org" = "lmtp"',
        'delivery.routes."alice@example.org": "lmtp" needs a [delivery.lmtp] table',
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in DELIVERY_ERRORS]
)
def test_bad_delivery_setting_names_file_and_key(load: Loader, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text + "\n")
    assert str(caught.value) == f"{F}: {expected}"
    assert "\n" not in str(caught.value)


def test_unknown_key_in_routes_is_a_route(load: Loader) -> None:
    """Any key of [delivery.routes] names a destination, so a typo is an unknown domain."""
    with pytest.raises(ConfigError) as caught:
        load('[delivery.routes]\ndefualt = "lmtp"\n')
    assert caught.value.key == "delivery.routes.defualt"
    assert caught.value.message == 'domain "defualt" is not in local.domains'


# --- the weakening -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lmtp", "weakened"),
    [
        pytest.param('address = "192.0.2.7:24"\ntls = "none"', True, id="remote-ipv4-no-tls"),
        pytest.param('address = "[2001:db8::7]:24"\ntls = "none"', True, id="remote-ipv6-no-tls"),
        pytest.param('address = "192.0.2.7:24"', False, id="remote-opportunistic"),
        pytest.param('address = "192.0.2.7:24"\ntls = "required"', False, id="remote-required"),
        pytest.param('address = "127.0.0.1:24"\ntls = "none"', False, id="ipv4-loopback"),
        pytest.param('address = "127.8.9.10:24"\ntls = "none"', False, id="whole-127-net"),
        pytest.param('address = "[::1]:24"\ntls = "none"', False, id="ipv6-loopback"),
        pytest.param(
            'address = "[::ffff:127.0.0.1]:24"\ntls = "none"', False, id="ipv4-mapped-loopback"
        ),
        pytest.param('address = "localhost:24"\ntls = "none"', False, id="localhost"),
        pytest.param('socket = "/run/lmtp"\ntls = "none"', False, id="unix-socket"),
    ],
)
def test_lmtp_without_tls_is_a_weakening_only_off_the_host(
    load: Loader, lmtp: str, weakened: bool
) -> None:
    config = load(f"[delivery.lmtp]\n{lmtp}\n")
    assert [w.key for w in find_weakenings(config)] == ([WEAKENING] if weakened else [])


def test_lmtp_weakening_names_file_key_and_threat(load: Loader) -> None:
    (weakening,) = find_weakenings(
        load('[delivery.lmtp]\naddress = "192.0.2.7:24"\ntls = "none"\n')
    )
    assert weakening == Weakening(
        key=WEAKENING,
        source=Path(F),
        message='LMTP delivery to a server on another host uses no TLS ("none"), so mail '
        "crosses the network in cleartext and the server is not authenticated",
    )


# --- the sample ----------------------------------------------------------------------------


def test_sample_without_lmtp_shows_it_commented_out(tmp_path: Path) -> None:
    sample = render_sample(default_config(tmp_path))
    comment = '# Route for local recipients not in [delivery.routes]: "maildir" or "lmtp".'
    assert f'\n[delivery]\n{comment}\ndefault = "maildir"\n' in sample
    assert "\n# [delivery.lmtp]\n" in sample
    assert "\n[delivery.lmtp]\n" not in sample
    assert '\n# address = "127.0.0.1:24"\n' in sample
    assert '\n# socket = "/run/dovecot/lmtp"\n' in sample
    assert '\n# tls = "opportunistic"\n' in sample
    assert '\n# lhlo_domain = "localhost"\n' in sample
    assert "\n[delivery.routes]\n" in sample


def test_sample_with_lmtp_and_routes_loads_back(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    data_dir = base.server.data_dir
    config = dataclasses.replace(
        base,
        server=dataclasses.replace(base.server, hostname="mx.example.org"),
        local=dataclasses.replace(
            base.local,
            domains=("example.org", "example.net"),
            mailboxes=("alice@example.org", "bob@example.net"),
            aliases=MappingProxyType({"postmaster@example.org": "alice@example.org"}),
        ),
        delivery=DeliverySettings(
            default="lmtp",
            lmtp=LmtpSettings(
                address=("2001:db8::24", 24),
                tls="required",
                ca_file=data_dir / "certs/ca.pem",
                server_name="lmtp.example.org",
                lhlo_domain="relay.example.org",
            ),
            routes=MappingProxyType(
                {
                    "example.net": "maildir",
                    "alice@example.org": "maildir",
                    "postmaster@example.org": "lmtp",
                }
            ),
        ),
    )
    assert _round_trip(config, tmp_path / "postguard.toml") == config
    sample = render_sample(config)
    assert "\n[delivery.lmtp]\n" in sample
    assert '\naddress = "[2001:db8::24]:24"\n' in sample
    assert '\nca_file = "certs/ca.pem"\n' in sample  # relative to data_dir, as loaded
    assert '\n# socket = "/run/dovecot/lmtp"\n' in sample
    assert '\nlhlo_domain = "relay.example.org"\n' in sample
    routes = '"example.net" = "maildir"\n"alice@example.org" = "maildir"\n'
    assert f"\n[delivery.routes]\n{routes}" in sample


def test_sample_keeps_a_default_lhlo_domain_commented_out(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    lmtp = LmtpSettings(address=("127.0.0.1", 24), lhlo_domain="localhost")
    config = dataclasses.replace(base, delivery=DeliverySettings(lmtp=lmtp))
    assert _round_trip(config, tmp_path / "postguard.toml") == config
    assert '\n# lhlo_domain = "localhost"\n' in render_sample(config)


def test_sample_with_a_socket_loads_back(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    lmtp = LmtpSettings(
        socket=base.server.data_dir / "lmtp.sock", tls="none", lhlo_domain="localhost"
    )
    config = dataclasses.replace(base, delivery=DeliverySettings(lmtp=lmtp))
    assert _round_trip(config, tmp_path / "postguard.toml") == config
    sample = render_sample(config)
    assert '\nsocket = "lmtp.sock"\n' in sample
    assert '\n# address = "127.0.0.1:24"\n' in sample
    assert find_weakenings(config) == []


def test_sample_with_the_weakening_on_writes_it_live(tmp_path: Path) -> None:
    base = default_config(tmp_path / "data")
    lmtp = LmtpSettings(address=("192.0.2.7", 24), tls="none", lhlo_domain="localhost")
    config = dataclasses.replace(base, delivery=DeliverySettings(lmtp=lmtp))
    loaded = _round_trip(config, tmp_path / "postguard.toml")
    assert loaded == config
    assert [w.key for w in find_weakenings(loaded)] == [WEAKENING]
    lines = render_sample(config).splitlines()
    index = lines.index('tls = "none"')
    assert lines[index - 1].startswith("# WEAKENS SECURITY: LMTP delivery")
