"""Per-record DNS hit counts: the question of each query Knot logged over dnstap,
counted per (name, type) with the last access time, taken once per DNS interval."""
import datetime
import logging
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
QUESTION = 12  # the question follows the 12-byte header
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
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


def read_labels(wire, offset):
    """The labels of the name at ``offset`` (compression pointers followed) and the offset just past it."""
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
            return labels, (end if end is not None else offset + 1)
        else:
            if offset + 1 + length > len(wire):
                raise MalformedQuery("label runs past the message")
            labels.append(wire[offset + 1:offset + 1 + length])
            offset += 1 + length


def question_key(wire):
    """The first question of a DNS message as counted: its name in wire format without compression,
    lower-cased, followed by its two type bytes. Cheap for the usual uncompressed question."""
    if len(wire) < QUESTION or not (wire[4] or wire[5]):
        raise MalformedQuery("no question" if len(wire) >= QUESTION else "shorter than a DNS header")
    offset = QUESTION
    try:
        length = wire[offset]
        while 0 < length < 0x40:
            offset += 1 + length
            length = wire[offset]
    except IndexError:
        raise MalformedQuery("name runs past the message") from None
    if length:  # a compression pointer (or a reserved label type): the long way
        labels, end = read_labels(wire, QUESTION)
        name = b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"
    else:
        end = offset + 1
        name = wire[QUESTION:end]
    if end + 4 > len(wire):
        raise MalformedQuery("question without type")
    # bytes.lower() changes only A-Z: label lengths (at most 63) stay as they are.
    return name.lower() + wire[end:end + 2]


def record_of(key):
    """(name, type mnemonic) of a question_key."""
    labels, offset = [], 0
    while key[offset]:
        labels.append(key[offset + 1:offset + 1 + key[offset]])
        offset += 1 + key[offset]
    name = ".".join(_label_text(label) for label in labels) + "."
    if len(name) > MAX_NAME_CHARS:
        raise MalformedQuery("name longer than %d characters" % MAX_NAME_CHARS)
    qtype = key[offset + 1] << 8 | key[offset + 2]
    return name, QUERY_TYPES.get(qtype, "TYPE%d" % qtype)


def parse_question(wire):
    """(name, type mnemonic) of a DNS message's first question."""
    return record_of(question_key(wire))


def microseconds(moment):
    """A timezone-aware datetime as µs since the epoch, the unit the dnstap reader hands on."""
    return (moment - EPOCH) // datetime.timedelta(microseconds=1)


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
        self._hits = {}  # question_key -> [hits, last access in µs]
        self._total = 0
        self._untracked = 0
        self._malformed = 0

    def count(self, wires, times):
        """Count a batch from the dnstap reader: each query's DNS bytes and Knot's time of it in µs
        (None: the time it is counted). Per query a dict update and no more parsing than the
        question's labels; names are spelled out once per record, in ``take``."""
        arrival = None
        with self._lock:
            hits = self._hits
            for wire, when in zip(wires, times):
                try:
                    key = question_key(wire)
                except MalformedQuery as error:
                    log.debug("query without a usable question: %s", error)
                    self._malformed += 1
                    continue
                if when is None:
                    if arrival is None:
                        arrival = microseconds(self.clock())
                    when = arrival
                entry = hits.get(key)
                if entry is not None:
                    entry[0] += 1
                    if when > entry[1]:
                        entry[1] = when
                elif len(hits) < self.max_records:
                    hits[key] = [1, when]
                else:
                    self._untracked += 1  # still in the total
            self._total += len(wires)

    def take(self):
        """The period since the last take as the ``dns`` message's (collected_at, data); starts a new one."""
        with self._lock:
            now = self.clock()
            hits, total, period_start = self._hits, self._total, self._period_start
            untracked, malformed = self._untracked, self._malformed
            self._reset()
            self._period_start = now
        if untracked:
            log.warning("%d queries for names beyond %d distinct records were counted in the total only",
                        untracked, self.max_records)
        if malformed:
            log.info("%d queries without a usable question were counted in the total only", malformed)
        records = {}
        for key, (count, last) in hits.items():
            try:
                record = record_of(key)
            except MalformedQuery as error:
                log.debug("query without a usable question: %s", error)
                continue
            records[record] = [count, last]
        return now, {"period_start": iso(period_start), "total": total, "records": [
            {"name": name, "type": qtype, "hits": count,
             "last_access": iso(EPOCH + datetime.timedelta(microseconds=last))}
            for (name, qtype), (count, last) in sorted(records.items())
        ]}
