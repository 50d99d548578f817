"""SSRF through other spellings of an address: every place a server hands us a URL (blob redirect,
upload ``Location``, token realm and its redirects, tag-list and referrers ``Link``, the ``/v2/`` ping's
redirects) refuses 169.254.169.254 / loopback / unspecified addresses in every spelling libcurl
connects to (``2852039166``, ``0xa9fea9fe``, ``169.254.43518``, ``127.1``, ``0``, ``127.0.0.1.``,
``[::ffff:a9fe:a9fe]``...) and DNS names that resolve to them (rebinding), before a byte is sent.

The attack tests run in a network namespace of their own (``tests/servers/netns.py``: ``unshare -n -m``,
169.254.169.254 on ``lo``, a canary listening on every address, a bind-mounted ``/etc/hosts``); they skip
where ``unshare`` is refused. The engine's socket guard is also proved on plain loopback (127.0.0.2)."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocitransport._urls import MAX_LOCATION, AddressGuard, address_kind, host_address, normalize_host
from ocitransport.client import Client
from ocitransport.exceptions import AddressRefused, RedirectError
from ocitransport.messages import Request, Response
from ocitransport.mirror import MirrorError
from ocitransport.mirror.session import resolve_location
from ocitransport.transport import TokenError
from ocitransport.transport.bearer import validate_realm
from tests.servers import netns
from tests.servers.faults import FaultServer

# ------------------------------------------------------------------------------------------- normaliser

SPELLED = [
    ("2852039166", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("0XA9FEA9FE", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("169.16689662", "169.254.169.254"),
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("169.254.169.254.", "169.254.169.254"),
    ("127.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("[::ffff:169.254.169.254]", "169.254.169.254"),
    ("[::ffff:a9fe:a9fe]", "169.254.169.254"),
    ("::ffff:7f00:1", "127.0.0.1"),
    ("[::a9fe:a9fe]", "169.254.169.254"),  # IPv4-compatible
    ("[64:ff9b::a9fe:a9fe]", "169.254.169.254"),  # NAT64 (RFC 6052)
    ("[fe80::1%25eth0]", "fe80::1"),
    ("fe80::1%eth0", "fe80::1"),
    ("[::1]", "::1"),
    ("[::]", "::"),
    ("10.1.2.3", "10.1.2.3"),
]


@pytest.mark.parametrize(("host", "address"), SPELLED)
def test_host_address_reads_every_spelling(host: str, address: str) -> None:
    assert str(host_address(host)) == address
    assert normalize_host(host) == address


@pytest.mark.parametrize("host", ["example.com", "08.1.1.1", "1.2.3.4.5", "256.1.1.1", "1.2.3.0x100",
                                  "0x1g", "0x", "0X.1", "1..2", "", "4294967296", "1.16777216", "[::g]",
                                  "metadata.test"])
def test_names_and_malformed_numbers_are_no_address(host: str) -> None:
    assert host_address(host) is None


@pytest.mark.parametrize(("host", "kind"), [
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("127.0.0.1", "loopback"),
    ("::1", "loopback"), ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"), ("10.0.0.1", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("100.64.0.1", "private"), ("fd00::1", "private"), ("8.8.8.8", ""),
    ("2606:4700::1", ""), ("::ffff:8.8.8.8", ""), ("example.com", "")])
def test_address_kinds(host: str, kind: str) -> None:
    assert address_kind(host) == kind


def _part(value: int, form: str) -> str:
    return {"dec": str(value), "oct": "0" + format(value, "o"), "hex": "0x" + format(value, "x"),
            "HEX": "0X" + format(value, "X")}[form]


@st.composite
def _ipv4_forms(draw: Any) -> str:
    n = draw(st.integers(1, 4))
    forms = st.sampled_from(["dec", "oct", "hex", "HEX"])
    parts = [_part(draw(st.integers(0, 0x1FF)), draw(forms)) for _ in range(n - 1)]
    parts.append(_part(draw(st.integers(0, (1 << (8 * (5 - n))) + 5)), draw(forms)))
    return ".".join(parts)


@given(_ipv4_forms())
def test_agrees_with_inet_aton_on_ipv4_forms(text: str) -> None:
    try:
        expected: str | None = socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        expected = None
    found = host_address(text)
    assert (str(found) if found is not None else None) == expected


@given(st.text(alphabet="0123456789abcdefxX.", min_size=1, max_size=20))
def test_agrees_with_inet_aton_on_any_numeric_looking_text(text: str) -> None:
    try:
        expected: str | None = socket.inet_ntoa(socket.inet_aton(text))
    except OSError:
        expected = None
    found = host_address(text.removesuffix(".")) if not text.endswith("..") else None
    if text.endswith(".") and not text.endswith(".."):
        return  # inet_aton refuses a trailing dot; libcurl strips it before resolving (checked above)
    assert (str(found) if isinstance(found, ipaddress.IPv4Address) else None) == expected


# ------------------------------------------------------------------------------------------- the rule

def test_the_registry_itself_is_always_fine() -> None:
    guard = AddressGuard("127.0.0.1:5000")
    assert guard.refusal("127.0.0.1") is None
    guard.check_url("http://2130706433:5001/x")  # the registry's own address, another spelling
    assert AddressGuard("[::1]:5000").refusal("::1") is None


@pytest.mark.parametrize("host", ["169.254.169.254", "127.0.0.2", "0.0.0.0", "10.0.0.1", "fd00::1", "::1",
                                  "224.0.0.1"])
def test_strict_rule_refuses_other_non_public_addresses(host: str) -> None:
    assert AddressGuard("r.example").refusal(host) is not None


def test_private_storage_allowed_by_option_only_for_private_addresses() -> None:
    guard = AddressGuard("r.example", private_storage=True)
    assert guard.refusal("10.0.0.1") is None
    assert guard.refusal("fd00::5") is None
    for never in ("169.254.169.254", "fe80::1", "0.0.0.0", "::", "224.0.0.1", "127.0.0.2"):
        assert guard.refusal(never) is not None, never


def test_private_storage_allowed_by_default_for_a_private_or_loopback_registry() -> None:
    assert AddressGuard("10.0.0.5:5000", private_storage=None).refusal("10.0.0.9") is None
    assert AddressGuard("127.0.0.1:5000", private_storage=None).refusal("192.168.1.2") is None
    assert AddressGuard("127.0.0.1:5000", private_storage=None).refusal("169.254.169.254") is not None
    # A public registry (by literal), or a name whose address is not known: strict.
    assert AddressGuard("11.0.0.1:5000", private_storage=None).refusal("10.0.0.9") is not None
    assert AddressGuard("never-seen.example", private_storage=None).refusal("10.0.0.9") is not None
    # ... unless the caller chose otherwise.
    assert AddressGuard("10.0.0.5:5000", private_storage=False).refusal("10.0.0.9") is not None


def test_a_name_registry_is_judged_by_the_address_its_connection_used() -> None:
    guard = AddressGuard("registry.corp.example:5000", private_storage=None)
    assert guard.refusal("10.1.1.1") is not None
    guard.learn({"primary_ip": "10.0.0.5"})
    assert guard.refusal("10.1.1.1") is None
    assert guard.refusal("10.0.0.5") is None  # its own address, whatever the spelling of the URL
    assert guard.refusal("169.254.169.254") is not None


def test_token_server_of_a_private_registry_may_be_private_by_name_only() -> None:
    from ocitransport.transport.bearer import _redirect_guard

    guard = _redirect_guard("10.0.0.5:5000", insecure=True)
    assert guard.refusal("10.0.0.7") is None  # gitlab.corp next to registry.corp, resolved at connect
    assert guard.refusal("169.254.169.254") is not None
    assert _redirect_guard("11.0.0.1:5000", insecure=True).refusal("10.0.0.7") is not None
    with pytest.raises(TokenError, match="private or link-local"):  # a literal stays refused (upstream)
        validate_realm("http://10.0.0.7/token", "10.0.0.5:5000", insecure=True)


@pytest.mark.parametrize("host", [h for h, a in SPELLED if a != "10.1.2.3" and (h[0] == "[" or ":" not in h)])
def test_realm_in_any_spelling_is_refused(host: str) -> None:
    with pytest.raises(TokenError, match="is a private or link-local address"):
        validate_realm(f"https://{host}/token", "r.example", insecure=False)


@pytest.mark.parametrize("host", ["2852039166", "0xa9fea9fe", "127.1", "0", "[::ffff:a9fe:a9fe]",
                                  "169.254.169.254."])
def test_upload_location_in_any_spelling_is_refused(host: str) -> None:
    response = Response(202, {"Location": f"http://{host}/upload"}, url="https://r.example/v2/a/blobs/uploads/")
    with pytest.raises(MirrorError, match="SSRF protection: Location header redirects to private"):
        resolve_location(response, "https://r.example/v2/a/blobs/uploads/")


def test_a_long_location_is_refused_at_once() -> None:
    response = Response(202, {"Location": "/v2/a/blobs/uploads/" + "x" * MAX_LOCATION},
                        url="https://r.example/v2/a/blobs/uploads/")
    with pytest.raises(MirrorError, match=f"Location header is {MAX_LOCATION + 20} bytes; at most 8192"):
        resolve_location(response, "https://r.example/v2/a/blobs/uploads/")


def test_a_long_redirect_location_is_refused_at_once(fault_server: FaultServer, client: Client) -> None:
    target = "/echo?" + "a" * MAX_LOCATION
    with pytest.raises(RedirectError, match="Location header is 8198 bytes; at most 8192 are followed"):
        client.request("GET", fault_server.url_for(f"/redirect?to={target}"))
    assert len(fault_server.requests) == 1


# ------------------------------------------------------------------------------------------- the engine

@pytest.fixture
def private() -> Iterator[FaultServer]:
    """A recording server on 127.0.0.2: another loopback address than the "registry" on 127.0.0.1."""
    with FaultServer(host="127.0.0.2") as server:
        yield server


def test_engine_refuses_before_connecting(private: FaultServer, client: Client) -> None:
    guard = AddressGuard("127.0.0.1:5000", what="blob redirect")
    url = private.url_for("/echo")
    with pytest.raises(AddressRefused, match=r'SSRF protection: blob redirect to "127.0.0.2:\d+" resolves to '
                                             r"127.0.0.2, a loopback address; refused") as caught:
        client.request("GET", url, extensions={"address_guard": guard})
    assert caught.value.address == "127.0.0.2" and caught.value.kind == "loopback"
    assert private.connections == 0


def test_engine_checks_a_reused_connection(private: FaultServer, client: Client) -> None:
    url = private.url_for("/echo")
    assert client.request("GET", url).status == 200  # unguarded: a pooled connection to 127.0.0.2 now
    with pytest.raises(AddressRefused, match="127.0.0.2, a loopback address"):
        client.request("GET", url, extensions={"address_guard": AddressGuard("127.0.0.1:5000")})
    assert len(private.requests) == 1  # the guarded request never went out on the pooled connection
    assert client.request("GET", url).status == 200  # the guard does not stick to the pooled handle


def test_engine_allows_what_the_guard_allows(private: FaultServer, client: Client) -> None:
    guard = AddressGuard("127.0.0.2:1")  # the registry's own address
    assert client.request("GET", private.url_for("/echo"), extensions={"address_guard": guard}).status == 200
    response = client.request("GET", private.url_for("/echo"), extensions={"primary_ip": True})
    assert response.extensions["primary_ip"] == "127.0.0.2"


def test_refusal_is_not_retried(private: FaultServer, client: Client) -> None:
    from ocitransport import transport

    rt = transport.new_retry(client, backoff=transport.Backoff(duration=0.01, factor=1.0, jitter=0, steps=4))
    request = Request("GET", private.url_for("/echo"), extensions={"address_guard": AddressGuard("r.example")})
    with pytest.raises(AddressRefused):
        rt.round_trip(request)
    assert private.connections == 0


# ------------------------------------------------------------------------------------------- in a namespace

@pytest.fixture(scope="module")
def attacks() -> dict[str, Any]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    return netns.run()


#: Every refusal names the address it resolves to and its kind, in one line.
CLEAR = (r"(SSRF protection: |is a private or link-local address).*(169\.254\.169\.254|127\.0\.0\.1|0\.0\.0\.0), "
         r"an? (link-local|loopback|unspecified) address")


@pytest.mark.parametrize("place", netns.PLACES)
@pytest.mark.parametrize("spelling", list(netns.SPELLINGS))
def test_no_spelling_reaches_the_canary(attacks: dict[str, Any], place: str, spelling: str) -> None:
    result = attacks[f"{place}/{spelling}"]
    assert result["canary"] == []
    kind, _, message = result["outcome"].partition(": ")
    assert kind in ("AddressRefused", "MirrorError", "TokenError", "RedirectError"), result
    assert re.search(CLEAR, message), message


def test_private_storage_refused_for_a_public_registry(attacks: dict[str, Any]) -> None:
    result = attacks["storage/public-registry"]
    assert result["outcome"] == ('AddressRefused: SSRF protection: blob redirect to "10.9.0.3:9000" resolves to '
                                 "10.9.0.3, a private address; refused")
    assert result["storage_hits"] == 0


@pytest.mark.parametrize("case", ["public-registry-allowed", "private-registry", "private-registry-by-name"])
def test_private_storage_allowed(attacks: dict[str, Any], case: str) -> None:
    result = attacks[f"storage/{case}"]
    assert result["outcome"] == f"ok: 200 {len(netns.LAYER)}"
    assert result["storage_hits"] == 1


@pytest.mark.parametrize("case", ["link-local", "loopback"])
def test_private_registry_storage_never_link_local_or_loopback(attacks: dict[str, Any], case: str) -> None:
    result = attacks[f"storage/private-registry-{case}"]
    assert result["outcome"].startswith("AddressRefused: SSRF protection: blob redirect to")
    assert result["canary"] == [] and result["storage_hits"] == 0


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    [line] = [x for x in stderr.splitlines() if x.startswith("ocitransport: error:")]
    return line


@pytest.mark.parametrize("where", ["blob", "upload"])
@pytest.mark.parametrize("label", ["decimal", "dns-metadata", "mapped-v6"])
def test_cli_copy_refuses_with_one_line(attacks: dict[str, Any], where: str, label: str) -> None:
    result = attacks[f"cli/{where}/{label}"]
    assert result["canary"] == []
    assert result["outcome"]["rc"] == 1
    line = _one_error_line(result["outcome"]["stderr"])
    assert "SSRF protection:" in line and "169.254.169.254, a link-local address" in line


def test_cli_redirect_chain_is_one_line(attacks: dict[str, Any]) -> None:
    result = attacks["cli/hops"]
    line = _one_error_line(result["outcome"]["stderr"])
    assert line.endswith("stopped after 10 redirects")
    assert result["requests"] <= 40  # ping, token-less reads and 11 hops per blob read (2 blobs)


@pytest.mark.parametrize(("case", "what"), [("long-location", "GET"), ("long-upload", "POST")])
def test_cli_long_location_is_refused_at_once(attacks: dict[str, Any], case: str, what: str) -> None:
    result = attacks[f"cli/{case}"]
    line = _one_error_line(result["outcome"]["stderr"])
    assert f"{what} http://{netns.PUBLIC}:500" in line and "; at most 8192 are followed" in line
    assert result["outcome"]["seconds"] < 10
    assert result["requests"] <= 12


def test_cli_private_storage_flag(attacks: dict[str, Any]) -> None:
    refused = attacks["cli/private-storage-refused"]
    assert "10.9.0.3, a private address; refused" in _one_error_line(refused["outcome"]["stderr"])
    allowed = attacks["cli/private-storage-flag"]
    assert allowed["outcome"]["rc"] == 0, allowed
    assert allowed["storage_hits"] == 2  # config and layer came from the private storage


# ------------------------------------------------------------------------------------------- options

def test_sync_file_key_per_registry() -> None:
    from ocitransport.mirror.sync import SyncConfig, SyncConfigError

    config = SyncConfig.from_dict({"destination": "d.example", "r.example": {
        "images": {"a": []}, "allow-private-storage": True}, "s.example": {"images": {"b": []}}})
    assert {s.registry: s.allow_private_storage for s in config.registries} == {"r.example": True,
                                                                               "s.example": False}
    with pytest.raises(SyncConfigError, match="allow-private-storage"):
        SyncConfig.from_dict({"destination": "d.example", "r.example": {
            "images": {"a": []}, "allow-private-storage": "yes please"}})


def test_session_keyword_names_registries() -> None:
    from ocitransport.mirror.session import Session

    with Client() as client:
        session = Session(client, allow_private_storage=["docker.io", "10.0.0.5:5000"])
        assert session.allow_private_storage == {"index.docker.io", "10.0.0.5:5000"}
        assert session.address_guard("index.docker.io", storage=True, what="x").refusal("10.1.1.1") is None
        assert session.address_guard("index.docker.io", storage=False, what="x").refusal("10.1.1.1") is not None
        assert session.address_guard("quay.io", storage=True, what="x").refusal("10.1.1.1") is not None


def test_cli_flag_is_validated() -> None:
    from ocitransport.cli import main

    assert main(["copy", "--allow-private-storage", "bad host!", "r.example/a:t", "d.example/a:t"]) == 2
