"""Whose address a request comes from, for the sign-in limit: the connection's peer, unless that peer is a
trusted proxy (``gateway.trusted_proxies``), and then the right-most X-Forwarded-For hop that is not one.

Each proxy appends the address it took the request from, so the hops right of the first untrusted one were
written by trusted proxies and that one is the client as the outermost of them saw it; everything to its left
is whatever the client chose to send and proves nothing. With no trusted proxies (the default) the header is
never read, so a client cannot pick the address it is counted under.

A trusted proxy is named by its network (``198.19.240.0/24``, ``127.0.0.1``) or by a host name (``proxy``: the
compose stack's HAProxy, whose container address changes when it is re-created), which is looked up again
every ``NAME_TTL_SECONDS``; a name that does not resolve trusts nobody until it does.
"""
import ipaddress
import re
import socket
import threading
import time

NAME_TTL_SECONDS = 10.0
_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
                        re.IGNORECASE)


def parse_trusted(value):
    """The setting, a list or a comma-separated string (as the environment gives it): (networks, host names)."""
    items = (value.split(",") if isinstance(value, str) else value) if value else ()
    networks, names = [], []
    for item in (str(item).strip() for item in items):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            if "/" in item or ":" in item or not _HOST_NAME.match(item) or item.replace(".", "").isdigit():
                raise ValueError(f"gateway.trusted_proxies: {item!r} is neither a network nor a host name: {exc}") \
                    from None
            names.append(item)
    return tuple(networks), tuple(names)


def _address(text):
    """An IP address, or None for anything else (a name, a port, garbage a client sent)."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return address.ipv4_mapped or address if address.version == 6 else address


def resolve(name):
    """Every address ``name`` has now; none when it does not resolve."""
    try:
        return {_address(info[4][0]) for info in socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return set()


class ClientAddress:
    def __init__(self, trusted=((), ()), resolver=resolve, clock=time.monotonic):
        self.networks, self.names = trusted
        self.resolver = resolver
        self.clock = clock
        self._named = (set(), float("-inf"))  # the names' addresses, and when they were looked up
        self._lock = threading.Lock()

    def _named_addresses(self):
        addresses, looked_up = self._named
        if self.names and self.clock() - looked_up > NAME_TTL_SECONDS:
            with self._lock:
                addresses, looked_up = self._named
                if self.clock() - looked_up > NAME_TTL_SECONDS:
                    addresses = set().union(*(self.resolver(name) for name in self.names))
                    self._named = (addresses, self.clock())
        return addresses

    def _trusted(self, address):
        if address is None:
            return False
        return any(address in network for network in self.networks) or address in self._named_addresses()

    def of(self, peer, forwarded_for):
        """The client's address given the connection's ``peer`` and the X-Forwarded-For header (or None)."""
        peer_address = _address(peer or "")
        if not forwarded_for or not (self.networks or self.names) or not self._trusted(peer_address):
            return str(peer_address) if peer_address else (peer or "unknown")
        client = peer_address
        for hop in reversed(forwarded_for.split(",")):
            hop_address = _address(hop)
            if hop_address is None:  # no proxy writes this: the last hop a trusted proxy vouched for stands
                break
            client = hop_address
            if not self._trusted(hop_address):
                break
        return str(client)
