#!/usr/bin/env python3
"""Verification probes run on the managed server (standard library only).

    python3 pv_probes.py dns  [--server 127.0.0.1] [--port 53]
    python3 pv_probes.py dhcp [--server 127.0.0.1] [--relay 127.0.0.2]

dns: a TXT query for pvverify.test must answer PVOK.
dhcp: a relayed DISCOVER/REQUEST exchange must get an ACK for an address in
198.51.100.0/24 (the lease is released afterwards). Kea answers a relay at
giaddr port 67, so the probe binds the relay address on port 67 (root).
Each prints what it saw and exits 0 on success, 1 on failure.
"""
import argparse
import ipaddress
import os
import random
import socket
import struct
import sys

VERIFY_NAME = "pvverify.test"
VERIFY_TEXT = "PVOK"
INTERNAL_POOL = ipaddress.ip_network("198.51.100.0/24")
TXT = 16


class ProbeFailed(Exception):
    pass


# -- DNS -------------------------------------------------------------------
def dns_query(name, qtype, query_id):
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # RD set, one question
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", qtype, 1)


def _skip_name(message, offset):
    while True:
        length = message[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += length + 1


def txt_answers(message, query_id):
    """The TXT strings in a DNS response's answer section."""
    if len(message) < 12:
        raise ProbeFailed("short DNS response")
    rid, flags, qdcount, ancount = struct.unpack("!HHHH", message[:8])
    if rid != query_id:
        raise ProbeFailed("DNS response for another query")
    rcode = flags & 0x0F
    if rcode:
        raise ProbeFailed("DNS server answered rcode %d" % rcode)
    offset = 12
    for _ in range(qdcount):
        offset = _skip_name(message, offset) + 4
    texts = []
    for _ in range(ancount):
        offset = _skip_name(message, offset)
        rtype, _class, _ttl, rdlength = struct.unpack("!HHIH", message[offset:offset + 10])
        offset += 10
        rdata = message[offset:offset + rdlength]
        offset += rdlength
        if rtype == TXT:
            i = 0
            while i < len(rdata):
                texts.append(rdata[i + 1:i + 1 + rdata[i]].decode("ascii", "replace"))
                i += 1 + rdata[i]
    return texts


def probe_dns(server="127.0.0.1", port=53, timeout=2.0, attempts=3):
    last = None
    for _ in range(attempts):
        query_id = random.randint(0, 0xFFFF)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.sendto(dns_query(VERIFY_NAME, TXT, query_id), (server, port))
                reply, _ = sock.recvfrom(4096)
            except OSError as exc:
                last = ProbeFailed("no DNS answer from %s:%d: %s" % (server, port, exc))
                continue
        texts = txt_answers(reply, query_id)
        if VERIFY_TEXT in texts:
            return "%s TXT %s from %s:%d" % (VERIFY_NAME, VERIFY_TEXT, server, port)
        raise ProbeFailed("%s TXT answered %r, not %s" % (VERIFY_NAME, texts, VERIFY_TEXT))
    raise last


# -- DHCP ------------------------------------------------------------------
DISCOVER, OFFER, REQUEST, ACK, NAK, RELEASE = 1, 2, 3, 5, 6, 7
MAGIC = b"\x63\x82\x53\x63"


def dhcp_packet(message_type, xid, mac, giaddr, requested=None, server_id=None, ciaddr="0.0.0.0"):
    packet = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 1,  # BOOTREQUEST, ethernet, 6-byte address, one hop (the relay)
        xid, 0, 0,
        socket.inet_aton(ciaddr), b"\x00" * 4, b"\x00" * 4, socket.inet_aton(giaddr),
        mac + b"\x00" * 10, b"", b"",
    )
    options = bytes([53, 1, message_type])
    if requested:
        options += bytes([50, 4]) + socket.inet_aton(requested)
    if server_id:
        options += bytes([54, 4]) + socket.inet_aton(server_id)
    options += bytes([61, 7, 1]) + mac
    return packet + MAGIC + options + b"\xff"


def dhcp_reply(data):
    """(message type, yiaddr, options) of a BOOTREPLY."""
    if len(data) < 240 or data[236:240] != MAGIC:
        raise ProbeFailed("malformed DHCP reply")
    xid = struct.unpack("!I", data[4:8])[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    options, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        options[data[i]] = data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return xid, options.get(53, b"\x00")[0], yiaddr, options


def _exchange(sock, packet, xid, server, wanted, timeout):
    sock.settimeout(timeout)
    sock.sendto(packet, (server, 67))
    while True:
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            raise ProbeFailed("no DHCP answer from %s (waited %.1f s)" % (server, timeout)) from None
        rxid, kind, yiaddr, options = dhcp_reply(data)
        if rxid != xid:
            continue
        if kind == NAK:
            raise ProbeFailed("DHCP server refused the request (NAK)")
        if kind != wanted:
            raise ProbeFailed("unexpected DHCP message type %d" % kind)
        return yiaddr, options


def probe_dhcp(server="127.0.0.1", relay="127.0.0.2", timeout=3.0):
    mac = b"\x02\x50\x56" + os.urandom(3)  # locally administered
    xid = random.getrandbits(32)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((relay, 67))
        except OSError as exc:
            raise ProbeFailed("cannot bind the relay address %s:67 (run as root): %s" % (relay, exc)) from None
        offered, options = _exchange(sock, dhcp_packet(DISCOVER, xid, mac, relay), xid, server, OFFER, timeout)
        server_id = socket.inet_ntoa(options[54]) if 54 in options else server
        leased, _ = _exchange(
            sock, dhcp_packet(REQUEST, xid, mac, relay, requested=offered, server_id=server_id), xid, server, ACK, timeout
        )
        if ipaddress.ip_address(leased) not in INTERNAL_POOL:
            raise ProbeFailed("leased %s, which is outside %s" % (leased, INTERNAL_POOL))
        # Give the address back so repeated checks do not drain the pool.
        sock.sendto(dhcp_packet(RELEASE, random.getrandbits(32), mac, relay, server_id=server_id, ciaddr=leased),
                    (server, 67))
    return "leased %s from %s (pool %s)" % (leased, server_id, INTERNAL_POOL)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Verify a Steward component from the managed server")
    sub = parser.add_subparsers(dest="probe", required=True)
    dns = sub.add_parser("dns", help="TXT pvverify.test must answer PVOK")
    dns.add_argument("--server", default="127.0.0.1")
    dns.add_argument("--port", type=int, default=53)
    dhcp = sub.add_parser("dhcp", help="a relayed DISCOVER/REQUEST must lease from 198.51.100.0/24")
    dhcp.add_argument("--server", default="127.0.0.1")
    dhcp.add_argument("--relay", default="127.0.0.2")
    args = parser.parse_args(argv)
    try:
        if args.probe == "dns":
            print(probe_dns(args.server, args.port))
        else:
            print(probe_dhcp(args.server, args.relay))
    except ProbeFailed as exc:
        print("verification failed: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
