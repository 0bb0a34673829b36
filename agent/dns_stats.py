"""Per-record DNS hit counts: the question of each query Knot logged over dnstap,
counted per (name, type) with the last access time, taken once per DNS interval."""
import logging
import struct
import threading

from agent.messages import iso, utc_now

log = logging.getLogger("agent.dns_stats")

QUERY_TYPES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT", 17: "RP",
    18: "AFSDB", 24: "SIG", 25: "KEY", 28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR", 36: "KX",
    37: "CERT", 39: "DNAME", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG",
    47: "NSEC", 48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA",
    55: "HIP", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB",
    65: "HTTPS", 99: "SPF", 108: "EUI48", 109: "EUI64", 249: "TKEY", 250: "TSIG", 251: "IXFR",
    252: "AXFR", 255: "ANY", 256: "URI", 257: "CAA",
}
HEADER = struct.Struct(">HHHHHH")
MAX_POINTERS = 64
MAX_NAME_CHARS = 255  # the control plane's limit; longer only with escaped bytes
MAX_RECORDS = 50000  # per period: a random-subdomain flood must not grow the message without bound


class MalformedQuery(ValueError):
    """The DNS message has no parsable question."""


def _label_text(label):
    # Presentation format: letters lower-cased, dots, backslashes and unprintable bytes escaped.
    out = []
    for byte in label.lower():
        if byte in (0x2E, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            out.append(chr(byte))
        else:
            out.append("\\%03d" % byte)
    return "".join(out)


def read_name(wire, offset):
    """The name at ``offset`` (compression pointers followed) and the offset just past it."""
    labels, end, jumps = [], None, 0
    while True:
        if offset >= len(wire):
            raise MalformedQuery("name runs past the message")
        length = wire[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire) or jumps >= MAX_POINTERS:
                raise MalformedQuery("bad compression pointer")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | wire[offset + 1]
            jumps += 1
        elif length & 0xC0:
            raise MalformedQuery("unknown label type")
        elif length == 0:
            name = ".".join(_label_text(label) for label in labels) + "."
            return name, (end if end is not None else offset + 1)
        else:
            if offset + 1 + length > len(wire):
                raise MalformedQuery("label runs past the message")
            labels.append(wire[offset + 1:offset + 1 + length])
            offset += 1 + length


def parse_question(wire):
    """(name, type mnemonic) of a DNS message's first question."""
    if len(wire) < HEADER.size:
        raise MalformedQuery("shorter than a DNS header")
    if HEADER.unpack_from(wire)[2] < 1:
        raise MalformedQuery("no question")
    name, offset = read_name(wire, HEADER.size)
    if offset + 4 > len(wire):
        raise MalformedQuery("question without type")
    if len(name) > MAX_NAME_CHARS:
        raise MalformedQuery("name longer than %d characters" % MAX_NAME_CHARS)
    qtype = struct.unpack_from(">H", wire, offset)[0]
    return name, QUERY_TYPES.get(qtype, "TYPE%d" % qtype)


class DnsCounter:
    """Hits per (name, type) since the last ``take``; fed by the dnstap reader threads.
    The total counts every query, also those without a usable question or beyond ``max_records``."""

    def __init__(self, clock=utc_now, max_records=MAX_RECORDS):
        self.clock = clock
        self.max_records = max_records
        self._lock = threading.Lock()
        self._period_start = clock()
        self._reset()

    def _reset(self):
        self._hits = {}
        self._last_access = {}
        self._total = 0
        self._untracked = 0

    def count(self, query):
        """Count one query (a dnstap.DnstapQuery); its time is Knot's, else the time it arrived."""
        when = query.query_time or self.clock()
        try:
            key = parse_question(query.wire)
        except MalformedQuery as error:
            log.debug("query without a usable question: %s", error)
            key = None
        with self._lock:
            self._total += 1
            if key is None:
                return
            if key not in self._hits and len(self._hits) >= self.max_records:
                self._untracked += 1  # still in the total
                return
            self._hits[key] = self._hits.get(key, 0) + 1
            if key not in self._last_access or when > self._last_access[key]:
                self._last_access[key] = when

    def take(self):
        """The period since the last take as the ``dns`` message's (collected_at, data); starts a new one."""
        with self._lock:
            now = self.clock()
            hits, last_access, total, period_start = self._hits, self._last_access, self._total, self._period_start
            untracked = self._untracked
            self._reset()
            self._period_start = now
        if untracked:
            log.warning("%d queries for names beyond %d distinct records were counted in the total only",
                        untracked, self.max_records)
        records = [
            {"name": name, "type": qtype, "hits": count, "last_access": iso(last_access[(name, qtype)])}
            for (name, qtype), count in sorted(hits.items())
        ]
        return now, {"period_start": iso(period_start), "total": total, "records": records}
