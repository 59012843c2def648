"""Which registry addresses are internal to the platform: the pure rules, as a table."""

from __future__ import annotations

import ipaddress

import pytest

from berth.domain.addresses import allowed, internal_reason, ip_literal, split_host_port

OWN = {ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("fd00::2")}


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:5000", "127.0.0.1", 5000),
        ("Reg.Example.com", "reg.example.com", None),
        ("[::1]:5000", "::1", 5000),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1", None),
        ("::1", "::1", None),
        ("https://reg.example.com:443/v2/", "reg.example.com", 443),
    ],
)
def test_split_host_port(address: str, host: str, port: int | None) -> None:
    assert split_host_port(address) == (host, port)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.1", "a loopback address"),
        ("2130706433", "a loopback address"),
        ("0x7f.1", "a loopback address"),
        ("0177.0.0.1", "a loopback address"),
        ("0x7f000001", "a loopback address"),
        ("::1", "a loopback address"),
        ("[::ffff:127.0.0.1]", "a loopback address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("0.0.0.0", "the unspecified address"),
        ("0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("192.0.2.2", "an address of a Berth host"),
        ("fd00::2", "an address of a Berth host"),
        ("203.0.113.9", None),
        ("2001:db8::1", None),
        ("10.1.2.3", None),
    ],
)
def test_internal_reason(host: str, reason: str | None) -> None:
    ip = ip_literal(host)
    assert ip is not None
    assert internal_reason(ip, OWN) == reason


@pytest.mark.parametrize(
    "host", ["reg.example.com", "localhost", "1.2.3.4.5", "256.1", "1e3", "my-registry"]
)
def test_names_are_not_literals(host: str) -> None:
    assert ip_literal(host) is None


@pytest.mark.parametrize(
    ("address", "allowlist", "ok"),
    [
        ("127.0.0.1:5000", ["127.0.0.1:5000"], True),
        ("127.0.0.1:5001", ["127.0.0.1:5000"], False),
        ("127.0.0.1:5001", ["127.0.0.1"], True),
        ("LOCALHOST:5000", ["localhost:5000"], True),
        ("[::1]:5000", ["[::1]:5000"], True),
        ("127.0.0.1:5000", [], False),
    ],
)
def test_allowlist(address: str, allowlist: list[str], ok: bool) -> None:
    assert allowed(address, allowlist) is ok
