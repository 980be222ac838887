"""Table tests of ``postguard.protocol.grammar``: the RFC 5321/6531 pieces of a command line.

Covers ``parse_domain``, ``parse_address_literal``, ``parse_mailbox``,
``parse_path``, ``split_path_and_params``, ``parse_esmtp_params``,
``parse_ehlo_argument`` and RFC 3461 xtext (tables plus a Hypothesis round
trip), including the size limits of RFC 5321 §4.5.3.1: 64-octet local part,
255-octet domain (63-octet labels), 256-octet path. Every parser must return a
value or raise ``GrammarError``; the property test at the end checks that no
other exception escapes on arbitrary text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postguard.protocol.grammar import (
    MAX_DOMAIN_OCTETS,
    MAX_LOCAL_PART_OCTETS,
    MAX_PATH_OCTETS,
    Address,
    GrammarError,
    decode_xtext,
    encode_xtext,
    parse_address_literal,
    parse_domain,
    parse_ehlo_argument,
    parse_esmtp_params,
    parse_mailbox,
    parse_path,
    split_path_and_params,
)


def domain_of(octets: int) -> str:
    """A valid domain of exactly ``octets`` octets (labels of at most 63)."""
    labels = []
    while octets > 63:
        labels.append("d" * 62)
        octets -= 63  # 62 octets and a dot
    labels.append("d" * octets)
    return ".".join(labels)


def path_of(octets: int) -> str:
    """A valid path "<local@domain>" of exactly ``octets`` octets."""
    local = "l" * MAX_LOCAL_PART_OCTETS
    return f"<{local}@{domain_of(octets - len(local) - 3)}>"


def test_size_builders_are_exact() -> None:
    assert len(domain_of(MAX_DOMAIN_OCTETS)) == 255
    assert len(path_of(MAX_PATH_OCTETS)) == 256


# ------------------------------------------------------------------ domain

VALID_DOMAINS = [
    pytest.param("example.org", id="two-labels"),
    pytest.param("a", id="one-letter"),
    pytest.param("EXAMPLE.Org", id="case-preserved"),
    pytest.param("a-b.c-d.example", id="hyphens-inside"),
    pytest.param("123.example", id="digit-label"),
    pytest.param("xn--bcher-kva.example", id="a-label"),
    pytest.param("l" * 63 + ".example", id="63-octet-label"),
    pytest.param(domain_of(255), id="255-octet-domain"),
]


@pytest.mark.parametrize("text", VALID_DOMAINS)
def test_valid_domain_is_returned_as_given(text: str) -> None:
    assert parse_domain(text) == text


INVALID_DOMAINS = [
    pytest.param("", id="empty"),
    pytest.param("-a.example", id="leading-hyphen"),
    pytest.param("a-.example", id="trailing-hyphen"),
    pytest.param("a..example", id="empty-label"),
    pytest.param(".example", id="leading-dot"),
    pytest.param("example.", id="trailing-dot"),
    pytest.param("a_b.example", id="underscore"),
    pytest.param("a b.example", id="space"),
    pytest.param("bücher.example", id="u-label-without-utf8"),
    pytest.param("l" * 64 + ".example", id="64-octet-label"),
    pytest.param(domain_of(256), id="256-octet-domain"),
]


@pytest.mark.parametrize("text", INVALID_DOMAINS)
def test_invalid_domain_is_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_domain(text)


def test_u_labels_need_utf8() -> None:
    assert parse_domain("bücher.example", utf8=True) == "bücher.example"
    assert parse_domain("παράδειγμα.δοκιμή", utf8=True) == "παράδειγμα.δοκιμή"


def test_utf8_limits_count_octets_not_characters() -> None:
    parse_domain("ü" * 31 + ".example", utf8=True)  # 62 octets
    with pytest.raises(GrammarError):
        parse_domain("ü" * 32 + ".example", utf8=True)  # 64 octets
    with pytest.raises(GrammarError):
        parse_domain(".".join(["ü" * 31] * 4) + ".abcd", utf8=True)  # 251 + 5 octets
    parse_domain(".".join(["ü" * 31] * 4) + ".abc", utf8=True)  # 255 octets, 131 characters


# --------------------------------------------------------- address literal

LITERALS = [
    pytest.param("[192.0.2.1]", "[192.0.2.1]", id="ipv4"),
    pytest.param("[0.0.0.0]", "[0.0.0.0]", id="ipv4-zeros"),
    pytest.param("[255.255.255.255]", "[255.255.255.255]", id="ipv4-max"),
    pytest.param("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]", id="ipv6"),
    pytest.param("[IPv6:2001:DB8:0:0:0:0:0:1]", "[IPv6:2001:db8::1]", id="ipv6-normalised"),
    pytest.param("[ipv6:::1]", "[IPv6:::1]", id="ipv6-tag-case"),
    pytest.param("[x-tag:some-thing]", "[x-tag:some-thing]", id="general-literal"),
]


@pytest.mark.parametrize(("text", "normalised"), LITERALS)
def test_address_literal_is_normalised(text: str, normalised: str) -> None:
    assert parse_address_literal(text) == normalised


BAD_LITERALS = [
    pytest.param("192.0.2.1", id="no-brackets"),
    pytest.param("[]", id="empty"),
    pytest.param("[192.0.2.1", id="unclosed"),
    pytest.param("[256.0.0.1]", id="ipv4-octet-over-255"),
    pytest.param("[192.0.2]", id="ipv4-three-parts"),
    pytest.param("[192.0.2.1.5]", id="ipv4-five-parts"),
    pytest.param("[IPv6:2001:db8::g]", id="ipv6-bad-hex"),
    pytest.param("[IPv6:1:2:3:4:5:6:7:8:9]", id="ipv6-nine-groups"),
    pytest.param("[IPv6:fe80::1%eth0]", id="ipv6-zone-id"),
    pytest.param("[IPv6:::1%é x]", id="ipv6-zone-id-non-ascii"),
    pytest.param("[IPv6:192.0.2.1]", id="ipv6-tag-with-ipv4"),
    pytest.param("[tag:]", id="general-empty-content"),
    pytest.param("[tag:a b]", id="general-space"),
    pytest.param("[tag:a[b]", id="general-bracket"),
    pytest.param("[tag-:x]", id="general-tag-trailing-hyphen"),
]


@pytest.mark.parametrize("text", BAD_LITERALS)
def test_malformed_address_literal_is_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_address_literal(text)


# ----------------------------------------------------------------- mailbox

MAILBOXES = [
    pytest.param("a@example.org", Address("a", "example.org"), id="simple"),
    pytest.param("first.last@example.org", Address("first.last", "example.org"), id="dotted"),
    pytest.param("a+tag@example.org", Address("a+tag", "example.org"), id="plus"),
    pytest.param(
        "!#$%&'*+/=?^_`{|}~-@example.org",
        Address("!#$%&'*+/=?^_`{|}~-", "example.org"),
        id="all-atext",
    ),
    pytest.param("a-b@example.org", Address("a-b", "example.org"), id="hyphen"),
    pytest.param('"john doe"@example.org', Address("john doe", "example.org"), id="quoted"),
    pytest.param('"a\\"b"@example.org', Address('a"b', "example.org"), id="quoted-pair-quote"),
    pytest.param('"a\\\\b"@example.org', Address("a\\b", "example.org"), id="quoted-backslash"),
    pytest.param('"a@b"@example.org', Address("a@b", "example.org"), id="quoted-at"),
    pytest.param('""@example.org', Address("", "example.org"), id="quoted-empty"),
    pytest.param("a@[192.0.2.1]", Address("a", "[192.0.2.1]"), id="ipv4-literal"),
    pytest.param("a@[IPv6:2001:db8::1]", Address("a", "[IPv6:2001:db8::1]"), id="ipv6-literal"),
    pytest.param("l" * 64 + "@x.example", Address("l" * 64, "x.example"), id="64-octet-local"),
]


@pytest.mark.parametrize(("text", "address"), MAILBOXES)
def test_mailbox_is_parsed(text: str, address: Address) -> None:
    assert parse_mailbox(text) == address


BAD_MAILBOXES = [
    pytest.param("a", id="no-at"),
    pytest.param("@example.org", id="no-local"),
    pytest.param("a@", id="no-domain"),
    pytest.param(".a@example.org", id="leading-dot"),
    pytest.param("a.@example.org", id="trailing-dot"),
    pytest.param("a..b@example.org", id="double-dot"),
    pytest.param("a b@example.org", id="space"),
    pytest.param("a@b@example.org", id="two-ats"),
    pytest.param('"a@example.org', id="unterminated-quote"),
    pytest.param('"a"b@example.org', id="junk-after-quote"),
    pytest.param('"a"', id="quoted-without-domain"),
    pytest.param('"a\tb"@example.org', id="quoted-tab"),
    pytest.param("a\x7fb@example.org", id="del-in-local"),
    pytest.param("a\x00@example.org", id="nul-in-local"),
    pytest.param("ü@example.org", id="utf8-without-smtputf8"),
    pytest.param("l" * 65 + "@x.example", id="65-octet-local"),
    pytest.param("a@[300.0.0.1]", id="bad-literal"),
]


@pytest.mark.parametrize("text", BAD_MAILBOXES)
def test_malformed_mailbox_is_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_mailbox(text)


UTF8_MAILBOXES = [
    pytest.param("ü@example.org", Address("ü", "example.org"), id="utf8-local"),
    pytest.param("a-ü.b@example.org", Address("a-ü.b", "example.org"), id="utf8-local-hyphen"),
    pytest.param("δοκιμή@παράδειγμα.δοκιμή", Address("δοκιμή", "παράδειγμα.δοκιμή"), id="greek"),
    pytest.param('"ü x"@example.org', Address("ü x", "example.org"), id="utf8-quoted"),
    pytest.param("用户@例子.广告", Address("用户", "例子.广告"), id="cjk"),
]


@pytest.mark.parametrize(("text", "address"), UTF8_MAILBOXES)
def test_utf8_mailbox_is_parsed_with_smtputf8(text: str, address: Address) -> None:
    assert parse_mailbox(text, utf8=True) == address
    assert address.is_utf8


def test_utf8_mode_still_rejects_ascii_controls() -> None:
    for text in ("a\x7fb@example.org", "a\x01@example.org", "a~\x7f@example.org"):
        with pytest.raises(GrammarError):
            parse_mailbox(text, utf8=True)


def test_utf8_local_part_limit_counts_octets() -> None:
    parse_mailbox("ü" * 32 + "@example.org", utf8=True)  # 64 octets
    with pytest.raises(GrammarError):
        parse_mailbox("ü" * 32 + "a@example.org", utf8=True)  # 65 octets


ADDRESS_STRINGS = [
    pytest.param(Address("a", "example.org"), "a@example.org", id="plain"),
    pytest.param(Address("john doe", "example.org"), '"john doe"@example.org', id="space"),
    pytest.param(Address('a"b', "example.org"), '"a\\"b"@example.org', id="quote"),
    pytest.param(Address("a\\b", "example.org"), '"a\\\\b"@example.org', id="backslash"),
    pytest.param(Address("", "example.org"), '""@example.org', id="empty"),
]


@pytest.mark.parametrize(("address", "text"), ADDRESS_STRINGS)
def test_address_str_quotes_when_needed_and_parses_back(address: Address, text: str) -> None:
    assert str(address) == text
    assert parse_mailbox(text) == address


def test_domain_key_is_lowercase() -> None:
    assert Address("A", "Example.ORG").domain_key == "example.org"


# -------------------------------------------------------------------- path

PATHS = [
    pytest.param("<a@example.org>", Address("a", "example.org"), id="simple"),
    pytest.param("<@relay.example:a@example.org>", Address("a", "example.org"), id="source-route"),
    pytest.param(
        "<@r1.example,@r2.example:a@example.org>", Address("a", "example.org"), id="route-2"
    ),
    pytest.param(path_of(256), parse_mailbox(path_of(256)[1:-1]), id="256-octet-path"),
]


@pytest.mark.parametrize(("text", "address"), PATHS)
def test_path_is_parsed_and_source_route_ignored(text: str, address: Address) -> None:
    assert parse_path(text) == address


def test_null_path_only_where_allowed() -> None:
    assert parse_path("<>", allow_null=True) is None
    with pytest.raises(GrammarError):
        parse_path("<>")


BAD_PATHS = [
    pytest.param("a@example.org", id="no-brackets"),
    pytest.param("<a@example.org", id="unclosed"),
    pytest.param("a@example.org>", id="unopened"),
    pytest.param("<", id="lone-bracket"),
    pytest.param("", id="empty"),
    pytest.param("<@relay.example:>", id="route-without-mailbox"),
    pytest.param("<<a@example.org>>", id="double-brackets"),
    pytest.param(path_of(257), id="257-octet-path"),
]


@pytest.mark.parametrize("text", BAD_PATHS)
def test_malformed_path_is_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_path(text, allow_null=True)


# ------------------------------------------------- path and parameters split

SPLITS = [
    pytest.param("<a@b.example>", ("<a@b.example>", ""), id="no-params"),
    pytest.param("<a@b.example> SIZE=1", ("<a@b.example>", "SIZE=1"), id="one-param"),
    pytest.param(" <a@b.example>", ("<a@b.example>", ""), id="leading-space"),
    pytest.param("<a@b.example>  SIZE=1  ", ("<a@b.example>", "SIZE=1"), id="extra-spaces"),
    pytest.param('<"a>b"@c.example> X', ('<"a>b"@c.example>', "X"), id="bracket-in-quotes"),
    pytest.param('<"a\\">"@c.example>', ('<"a\\">"@c.example>', ""), id="escaped-quote"),
    pytest.param("<>", ("<>", ""), id="null"),
]


@pytest.mark.parametrize(("text", "parts"), SPLITS)
def test_path_and_params_are_split(text: str, parts: tuple[str, str]) -> None:
    assert split_path_and_params(text) == parts


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a@b.example", id="no-bracket"),
        pytest.param("<a@b.example", id="unclosed"),
        pytest.param("<a@b.example>SIZE=1", id="no-space-before-params"),
        pytest.param('<"a>b@c.example', id="unclosed-quote"),
        pytest.param("", id="empty"),
    ],
)
def test_malformed_path_and_params_are_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        split_path_and_params(text)


# --------------------------------------------------------- ESMTP parameters

PARAMS = [
    pytest.param("", {}, id="none"),
    pytest.param("SIZE=100", {"SIZE": "100"}, id="one"),
    pytest.param("size=100 body=8BITMIME", {"SIZE": "100", "BODY": "8BITMIME"}, id="keys-upper"),
    pytest.param("SMTPUTF8", {"SMTPUTF8": None}, id="no-value"),
    pytest.param("A=1  B=2", {"A": "1", "B": "2"}, id="double-space"),
    pytest.param("X-FOO=a+2Bb", {"X-FOO": "a+2Bb"}, id="hyphen-key"),
    pytest.param("A=!~<>", {"A": "!~<>"}, id="value-edges"),
    pytest.param(" ".join(f"K{i}" for i in range(16)), {f"K{i}": None for i in range(16)}, id="16"),
]


@pytest.mark.parametrize(("text", "params"), PARAMS)
def test_esmtp_params_are_parsed(text: str, params: dict[str, str | None]) -> None:
    assert parse_esmtp_params(text) == params


BAD_PARAMS = [
    pytest.param("=1", id="no-key"),
    pytest.param("-X=1", id="key-leading-hyphen"),
    pytest.param("K_Y=1", id="key-underscore"),
    pytest.param("A=", id="empty-value"),
    pytest.param("A=b=c", id="equals-in-value"),
    pytest.param("A=b\x00", id="nul-in-value"),
    pytest.param("A=é", id="utf8-value-without-smtputf8"),
    pytest.param("A=1 a=2", id="duplicate"),
    pytest.param(" ".join(f"K{i}" for i in range(17)), id="17-parameters"),
]


@pytest.mark.parametrize("text", BAD_PARAMS)
def test_malformed_esmtp_params_are_rejected(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_esmtp_params(text)


def test_utf8_values_need_smtputf8() -> None:
    assert parse_esmtp_params("ORCPT=rfc822;ü@example.org", utf8=True) == {
        "ORCPT": "rfc822;ü@example.org"
    }


# -------------------------------------------------------------------- xtext

XTEXT = [
    pytest.param("abc", "abc", id="plain"),
    pytest.param("a+2Bb", "a+b", id="plus"),
    pytest.param("+3D", "=", id="equals"),
    pytest.param("a+20b", "a b", id="space"),
    pytest.param("", "", id="empty"),
    pytest.param("<>", "<>", id="null-sender"),
    pytest.param("+C3+BC", "ü", id="utf8-octets"),
    pytest.param("+F0+9F+98+80", "\U0001f600", id="four-octet-utf8"),
]


@pytest.mark.parametrize(("xtext", "text"), XTEXT)
def test_xtext_decodes(xtext: str, text: str) -> None:
    assert decode_xtext(xtext) == text


@pytest.mark.parametrize(("xtext", "text"), XTEXT)
def test_xtext_encodes(xtext: str, text: str) -> None:
    assert encode_xtext(text) == xtext


BAD_XTEXT = [
    pytest.param("+2b", id="lowercase-hex"),
    pytest.param("+2", id="short-escape"),
    pytest.param("+", id="lone-plus"),
    pytest.param("+GG", id="not-hex"),
    pytest.param("a=b", id="equals"),
    pytest.param("a b", id="space"),
    pytest.param("é", id="non-ascii"),
    pytest.param("+FF", id="invalid-utf8"),
    pytest.param("+C3", id="truncated-utf8"),
]


@pytest.mark.parametrize("xtext", BAD_XTEXT)
def test_malformed_xtext_is_rejected(xtext: str) -> None:
    with pytest.raises(GrammarError):
        decode_xtext(xtext)


@given(st.text())
def test_xtext_round_trips_any_text(text: str) -> None:
    encoded = encode_xtext(text)
    assert all("\x21" <= ch <= "\x7e" and ch != "=" for ch in encoded)
    assert decode_xtext(encoded) == text


# -------------------------------------------------------------- EHLO argument

EHLO_ARGUMENTS = [
    pytest.param("client.example.org", True, id="domain"),
    pytest.param("[192.0.2.1]", True, id="ipv4-literal"),
    pytest.param("[IPv6:2001:db8::1]", True, id="ipv6-literal"),
    pytest.param("WIN-PC", True, id="single-label"),
    pytest.param("my_host", False, id="underscore"),
    pytest.param("host.", False, id="trailing-dot"),
    pytest.param("[300.1.1.1]", False, id="bad-literal"),
]


@pytest.mark.parametrize(("text", "valid"), EHLO_ARGUMENTS)
def test_ehlo_argument_is_accepted_and_judged(text: str, valid: bool) -> None:
    assert parse_ehlo_argument(text) == (text, valid)


@pytest.mark.parametrize("text", ["", "a b", "a\tb", "é.example", "a\x00"])
def test_ehlo_argument_must_be_one_printable_token(text: str) -> None:
    with pytest.raises(GrammarError):
        parse_ehlo_argument(text)


# ------------------------------------------------------ no other exceptions

PARSERS = [
    pytest.param(lambda t: parse_domain(t, utf8=True), id="domain"),
    pytest.param(parse_address_literal, id="address-literal"),
    pytest.param(lambda t: parse_mailbox(t, utf8=True), id="mailbox"),
    pytest.param(lambda t: parse_path(t, utf8=True, allow_null=True), id="path"),
    pytest.param(split_path_and_params, id="split"),
    pytest.param(lambda t: parse_esmtp_params(t, utf8=True), id="params"),
    pytest.param(decode_xtext, id="xtext"),
    pytest.param(parse_ehlo_argument, id="ehlo"),
]

GRAMMAR_TEXT = (
    st.text(alphabet=st.sampled_from(list('<>@:.,[]"\\ =+-_aZ09%éü\x00\x7f'))) | st.text()
)


@pytest.mark.parametrize("parser", PARSERS)
@given(text=GRAMMAR_TEXT)
def test_parsers_raise_only_grammar_error(parser: Callable[[str], object], text: str) -> None:
    with contextlib.suppress(GrammarError):
        parser(text)
