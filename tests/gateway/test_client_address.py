"""The sign-in limit's client address behind a proxy: X-Forwarded-For counts only when the connection comes from a
trusted proxy (``gateway.trusted_proxies``), and then only its right-most hop that is not a trusted proxy."""
import ipaddress

import pytest
from falcon import testing

from gateway.app import create_app
from gateway.client_address import ClientAddress, parse_trusted
from gateway.routes import PREFIX
from shared.config import Settings

PASSWORD = "a long enough password"
PROXY = "127.0.9.1"  # the trusted proxy's address, as the gateway sees its connections


@pytest.fixture(scope="module")
def proxied(settings, rpc):
    """The app with 127.0.9.0/24 as its trusted proxies' network."""
    gateway = dict(settings.section("gateway"), trusted_proxies="127.0.9.0/24")
    return testing.TestClient(create_app(Settings(dict(settings, gateway=gateway)), rpc=rpc))


def _attempt(client, name, password, peer, forwarded_for=None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.simulate_post(f"{PREFIX}/session", json={"name": name, "password": password}, remote_addr=peer,
                                headers=headers)


def _fail_five_times(client, peer, forwarded_for, prefix):
    """Five wrong passwords for five unknown names (so no name reaches its own limit) as one client."""
    for n in range(5):
        sent = forwarded_for(n) if callable(forwarded_for) else forwarded_for
        assert _attempt(client, f"{prefix}{n}", "wrong password", peer, sent).status_code == 401


def test_a_forwarded_for_header_from_an_untrusted_peer_is_ignored(proxied, client, auth, inventory):
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "ivy", "password": PASSWORD})
    # A client that is not a trusted proxy names a new address in every try: still counted as its own peer.
    _fail_five_times(proxied, "127.0.5.1", lambda n: f"127.0.6.{n + 1}", "spoofer")
    limited = _attempt(proxied, "ivy", PASSWORD, "127.0.5.1", "127.0.6.99")
    assert limited.status_code == 429 and limited.json["error"] == "too_many_attempts", limited.text
    # And the addresses it named were not held against anyone.
    assert _attempt(proxied, "ivy", PASSWORD, PROXY, "127.0.6.1").status_code == 200


def test_behind_a_trusted_proxy_each_client_is_counted_by_its_own_address(proxied, client, auth, inventory):
    client.simulate_post(f"{PREFIX}/users", headers=auth, json={"name": "jo", "password": PASSWORD})
    # One client behind the proxy fails five times; it also writes a header of its own, which the proxy appends to.
    _fail_five_times(proxied, PROXY, lambda n: f"127.0.8.{n + 1}, 127.0.7.1", "guesser")
    assert _attempt(proxied, "jo", PASSWORD, PROXY, "127.0.7.1").status_code == 429
    assert _attempt(proxied, "jo", PASSWORD, PROXY, "127.0.8.50, 127.0.7.1").status_code == 429
    # Another client through the same proxy is not held up.
    assert _attempt(proxied, "jo", PASSWORD, PROXY, "127.0.7.2").status_code == 200


def test_the_right_most_untrusted_hop_is_the_client():
    addresses = ClientAddress(parse_trusted("127.0.9.0/24, ::1"))
    assert addresses.of("127.0.9.1", "127.0.7.1") == "127.0.7.1"
    # Hops appended by further trusted proxies are skipped; what the client wrote left of its own hop is not read.
    assert addresses.of("127.0.9.1", "127.0.5.5, 127.0.7.1, 127.0.9.2") == "127.0.7.1"
    assert addresses.of("::1", " 127.0.7.3 ") == "127.0.7.3"
    # Garbage where an address should be: the last hop a trusted proxy vouched for.
    assert addresses.of("127.0.9.1", "127.0.7.1, not-an-address, 127.0.9.3") == "127.0.9.3"
    # Only trusted hops (a client inside the proxies' network): the left-most of them.
    assert addresses.of("127.0.9.1", "127.0.9.7") == "127.0.9.7"
    assert addresses.of("127.0.5.1", "127.0.7.1") == "127.0.5.1"
    assert addresses.of("127.0.9.1", None) == "127.0.9.1"
    assert ClientAddress(parse_trusted("")).of("127.0.9.1", "127.0.7.1") == "127.0.9.1"
    assert ClientAddress().of(None, "127.0.7.1") == "unknown"


def test_a_proxy_named_by_host_name_is_trusted_at_the_address_it_has_now():
    names = {"proxy": {"127.0.9.1"}}
    now = [0.0]
    addresses = ClientAddress(parse_trusted("proxy"), resolver=lambda name: set(map(ipaddress.ip_address, names[name])),
                              clock=lambda: now[0])
    assert addresses.of("127.0.9.1", "127.0.7.1") == "127.0.7.1"
    names["proxy"] = {"127.0.9.2"}  # the proxy's container re-created with another address
    assert addresses.of("127.0.9.2", "127.0.7.1") == "127.0.9.2"  # not trusted until the name is looked up again
    now[0] += 11
    assert addresses.of("127.0.9.2", "127.0.7.1") == "127.0.7.1"
    assert addresses.of("127.0.9.1", "127.0.7.1") == "127.0.9.1"
    assert ClientAddress(parse_trusted("localhost")).of("127.0.0.1", "127.0.7.1") == "127.0.7.1"  # the real lookup


@pytest.mark.parametrize("setting", ["127.0.9.0/24, 127.0.0.1/99", "300.1.2.3", "proxy, not a host!", "::1/200"])
def test_a_trusted_proxies_setting_that_names_no_network_or_host_is_refused_at_start(settings, rpc, setting):
    gateway = dict(settings.section("gateway"), trusted_proxies=setting)
    with pytest.raises(ValueError, match="is neither a network nor a host name"):
        create_app(Settings(dict(settings, gateway=gateway)), rpc=rpc)
