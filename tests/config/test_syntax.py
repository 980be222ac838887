"""Listen and server addresses, local domains and mailboxes, server names, TOML quoting."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postguard.config.syntax import (
    addresses_conflict,
    format_address,
    is_loopback,
    normalize_domain,
    normalize_mailbox,
    normalize_server_name,
    parse_address,
    parse_server_address,
    quote,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:2525", ("127.0.0.1", 2525), id="ipv4"),
        pytest.param("[::1]:2525", ("::1", 2525), id="ipv6"),
        pytest.param("[0:0:0:0:0:0:0:1]:25", ("::1", 25), id="ipv6-compressed"),
        pytest.param("0.0.0.0:25", ("0.0.0.0", 25), id="ipv4-wildcard"),
        pytest.param("*:25", ("*", 25), id="all-interfaces"),
        pytest.param("localhost:587", ("localhost", 587), id="localhost"),
        pytest.param("127.0.0.1:0", ("127.0.0.1", 0), id="any-free-port"),
        pytest.param("[fe80::1%eth0]:25", ("fe80::1%eth0", 25), id="ipv6-scoped"),
    ],
)
def test_parse_address_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    ["127.0.0.1", ":25", "127.0.0.1:", "127.0.0.1:-1", "127.0.0.1:65536", "[::1:25",
     "256.0.0.1:25", "[nope]:25", "example.org:25", "::1:25", "127.0.0.1:\uff12\uff15"],
    ids=["no-port", "no-host", "empty-port", "negative-port", "port-too-big",
         "unclosed-bracket", "bad-ipv4", "bad-ipv6", "host-name", "unbracketed-ipv6",
         "non-ascii-digits"],
)  # fmt: skip
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize(
    "text", ["127.0.0.1:2525", "[::1]:2525", "*:25", "localhost:0", "[fe80::1%eth0]:25"]
)
def test_format_address_reverses_parse_address(text: str) -> None:
    assert format_address(parse_address(text)) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1:24", ("127.0.0.1", 24), id="ipv4"),
        pytest.param("[0:0::1]:24", ("::1", 24), id="ipv6-compressed"),
        pytest.param("localhost:1", ("localhost", 1), id="localhost-lowest-port"),
        pytest.param("192.0.2.1:65535", ("192.0.2.1", 65535), id="highest-port"),
    ],
)
def test_parse_server_address_accepts(text: str, expected: tuple[str, int]) -> None:
    assert parse_server_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("127.0.0.1:0", 'invalid port "0" in "127.0.0.1:0" (expected 1-65535)',
                     id="port-zero"),
        pytest.param("127.0.0.1:65536",
                     'invalid port "65536" in "127.0.0.1:65536" (expected 1-65535)',
                     id="port-too-big"),
        pytest.param("*:24", 'invalid address "*:24" (* means all interfaces, not one server)',
                     id="all-interfaces"),
        pytest.param("0.0.0.0:24",
                     'invalid address "0.0.0.0:24" (0.0.0.0 means all interfaces, not one server)',
                     id="ipv4-unspecified"),
        pytest.param("[::0]:24",
                     'invalid address "[::0]:24" (:: means all interfaces, not one server)',
                     id="ipv6-unspecified"),
        pytest.param("24", 'invalid address "24" (expected "IPv4:port", "[IPv6]:port" or'
                     ' "localhost:port")', id="no-host"),
        pytest.param("lmtp.example.org:24",
                     'invalid address "lmtp.example.org:24" (expected "IPv4:port",'
                     ' "[IPv6]:port" or "localhost:port"; host names are not accepted)',
                     id="host-name"),
    ],
)  # fmt: skip
def test_parse_server_address_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_server_address(text)
    assert str(caught.value) == message


def test_listen_addresses_still_allow_port_zero_and_all_interfaces() -> None:
    assert parse_address("*:0") == ("*", 0)
    with pytest.raises(ValueError, match=r"\(expected 0-65535\)"):
        parse_address("127.0.0.1:65536")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        pytest.param("localhost", True, id="localhost"),
        pytest.param("127.0.0.1", True, id="ipv4"),
        pytest.param("127.255.0.9", True, id="whole-127-net"),
        pytest.param("::1", True, id="ipv6"),
        pytest.param("::ffff:127.0.0.1", True, id="ipv4-mapped"),
        pytest.param("192.0.2.1", False, id="ipv4-remote"),
        pytest.param("2001:db8::1", False, id="ipv6-remote"),
        pytest.param("::ffff:192.0.2.1", False, id="ipv4-mapped-remote"),
        pytest.param("fe80::1%eth0", False, id="link-local"),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("LMTP.Example.org.", "lmtp.example.org", id="domain"),
        pytest.param("192.0.2.1", "192.0.2.1", id="ipv4"),
        pytest.param("2001:DB8:0::1", "2001:db8::1", id="ipv6"),
    ],
)
def test_normalize_server_name_accepts(text: str, expected: str) -> None:
    assert normalize_server_name(text) == expected


@pytest.mark.parametrize("text", ["", "[::1]", "lmtp example.org", "caf\u00e9.example"])
def test_normalize_server_name_rejects(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_server_name(text)
    assert str(caught.value) == (
        f"invalid server name {quote(text)} (expected a domain or an IP address)"
    )


@pytest.mark.parametrize(
    ("first", "second", "conflict"),
    [
        pytest.param("127.0.0.1:25", "127.0.0.1:25", True, id="same"),
        pytest.param("127.0.0.1:25", "127.0.0.1:26", False, id="other-port"),
        pytest.param("127.0.0.1:0", "127.0.0.1:0", False, id="port-zero"),
        pytest.param("*:25", "[::1]:25", True, id="all-covers-ipv6"),
        pytest.param("127.0.0.2:25", "*:25", True, id="all-covers-ipv4"),
        pytest.param("0.0.0.0:25", "127.0.0.1:25", True, id="ipv4-wildcard"),
        pytest.param("0.0.0.0:25", "[::1]:25", False, id="ipv4-wildcard-not-ipv6"),
        pytest.param("[::]:25", "[::1]:25", True, id="ipv6-wildcard"),
        pytest.param("[::]:25", "0.0.0.0:25", False, id="v6only-wildcards"),
        pytest.param("[::]:25", "localhost:25", True, id="localhost-is-both-families"),
        pytest.param("127.0.0.1:25", "127.0.0.2:25", False, id="different-hosts"),
    ],
)
def test_addresses_conflict(first: str, second: str, conflict: bool) -> None:
    a, b = parse_address(first), parse_address(second)
    assert addresses_conflict(a, b) is conflict
    assert addresses_conflict(b, a) is conflict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Example.ORG", "example.org", id="lowercased"),
        pytest.param("example.org.", "example.org", id="trailing-dot"),
        pytest.param("xn--bcher-kva.example", "xn--bcher-kva.example", id="a-label"),
        pytest.param("localhost", "localhost", id="single-label"),
    ],
)
def test_normalize_domain_accepts(text: str, expected: str) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("bücher.example", 'invalid domain "bücher.example" (write it in A-label'
                     " form, xn--...)", id="u-label"),
        pytest.param("-a.example", 'invalid domain "-a.example"', id="leading-hyphen"),
        pytest.param("a..example", 'invalid domain "a..example"', id="empty-label"),
        pytest.param("a" * 64 + ".example", f'invalid domain "{"a" * 64}.example"',
                     id="label-too-long"),
        pytest.param("", 'invalid domain ""', id="empty"),
    ],
)  # fmt: skip
def test_normalize_domain_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_domain(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Alice@Example.org", "alice@example.org", id="case-folded"),
        pytest.param("first.last+tag@example.org", "first.last+tag@example.org", id="dot-atom"),
        pytest.param("jürgen@example.org", "jürgen@example.org", id="utf8-local-part"),
    ],
)
def test_normalize_mailbox_accepts(text: str, expected: str) -> None:
    assert normalize_mailbox(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("alice", 'invalid mailbox "alice" (expected local-part@domain)', id="no-at"),
        pytest.param("@example.org", 'invalid mailbox "@example.org" (expected local-part@domain)',
                     id="empty-local-part"),
        pytest.param("a..b@example.org", 'invalid local-part "a..b" in "a..b@example.org"',
                     id="double-dot"),
        pytest.param('"a b"@example.org', 'invalid local-part "\\"a b\\"" in'
                     ' "\\"a b\\"@example.org"', id="quoted-string"),
        pytest.param("a" * 65 + "@x.org", f'invalid local-part "{"a" * 65}" in'
                     f' "{"a" * 65}@x.org"', id="local-part-too-long"),
        pytest.param("a@b_c", 'invalid domain "b_c" in "a@b_c"', id="bad-domain"),
    ],
)  # fmt: skip
def test_normalize_mailbox_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        normalize_mailbox(text)
    assert str(caught.value) == message


@given(st.text())
def test_quote_is_one_line_toml_that_reads_back(text: str) -> None:
    quoted = quote(text)
    assert "\n" not in quoted
    assert tomllib.loads(f"value = {quoted}")["value"] == text
