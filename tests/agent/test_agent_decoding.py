"""Unit tests: DNS questions, dnstap protobuf, Frame Streams, /proc parsing, configuration."""
import datetime
import json
import os
import socket
import struct
import threading

import pytest

from agent.config import ConfigError, load_config
from agent.dns_stats import DnsCounter, MalformedQuery, microseconds, parse_question
from agent.dnstap import (
    CONTENT_TYPE, CONTROL_ACCEPT, CONTROL_FINISH, CONTROL_READY, CONTROL_START, CONTROL_STOP,
    ProtocolError, decode_query, encode_control, read_queries,
)
from agent.system_stats import SystemStats


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number, value, wire=None):
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    if wire == 5:
        return varint(number << 3 | 5) + struct.pack("<I", value)
    return varint(number << 3) + varint(value)


def dnstap_frame(wire, message_type=5, seconds=None, nanos=0):
    message = field(1, message_type) + field(2, 1) + field(4, b"\x7f\x00\x00\x01")
    if seconds is not None:
        message += field(8, seconds) + field(9, nanos, wire=5)
    message += field(10, wire)
    return field(1, b"knot") + field(2, b"Knot DNS 3.2.6") + field(14, message) + field(15, 1)


def query_wire(name, qtype, qid=0x1234):
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\x00"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, 1)


def test_question_names_are_lower_case_and_fully_qualified():
    assert parse_question(query_wire("WWW.Example.COM", 28)) == ("www.example.com.", "AAAA")
    assert parse_question(query_wire("pvverify.test", 16)) == ("pvverify.test.", "TXT")
    assert parse_question(query_wire("odd.test", 65280)) == ("odd.test.", "TYPE65280")
    # Type bytes that read as capital letters (HTTPS is 0x0041, "A") are not lower-cased with the name.
    assert parse_question(query_wire("Svc.Test", 65)) == ("svc.test.", "HTTPS")
    assert parse_question(query_wire("svc.test", 0x4142)) == ("svc.test.", "TYPE16706")


def test_compression_pointers_are_followed():
    # Question name "www" + pointer to "example.com" stored later in the message (offset 12 + 4 + 2 + 4 = 22).
    header = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0)
    wire = header + b"\x03www\xc0\x16" + struct.pack(">HH", 1, 1) + b"\x07example\x03com\x00"
    assert parse_question(wire) == ("www.example.com.", "A")


def test_pointer_loops_and_truncation_are_malformed():
    header = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0)
    with pytest.raises(MalformedQuery):
        parse_question(header + b"\xc0\x0c" + struct.pack(">HH", 1, 1))  # points at itself
    with pytest.raises(MalformedQuery):
        parse_question(header + b"\x05ab")
    with pytest.raises(MalformedQuery):
        parse_question(struct.pack(">HHHHHH", 1, 0, 0, 0, 0, 0))


def test_dnstap_frame_gives_the_query_and_knots_time():
    frame = dnstap_frame(query_wire("www.test", 1), seconds=1795000000, nanos=250000000)
    wire, when = decode_query(frame)
    assert parse_question(wire) == ("www.test.", "A")
    assert when == microseconds(datetime.datetime(2026, 11, 18, 11, 6, 40, 250000, tzinfo=datetime.timezone.utc))


def test_responses_are_not_counted_as_queries():
    assert decode_query(dnstap_frame(query_wire("www.test", 1), message_type=6)) is None
    with pytest.raises(ProtocolError):
        decode_query(dnstap_frame(query_wire("www.test", 1))[:-5])


def test_counter_counts_hits_total_and_last_access_per_period():
    moments = iter(datetime.datetime(2026, 1, 1, 0, 0, s, tzinfo=datetime.timezone.utc) for s in range(60))
    counter = DnsCounter(clock=lambda: next(moments))  # period starts at :00
    at = lambda s: datetime.datetime(2026, 1, 1, 0, 0, s, tzinfo=datetime.timezone.utc)  # noqa: E731
    for second in (3, 9, 5):
        counter.count([query_wire("www.test", 1)], [microseconds(at(second))])
    counter.count([query_wire("WWW.test", 28), b"\x00\x01"], [microseconds(at(4))] * 2)  # no question: in the total only
    collected_at, data = counter.take()  # clock :01
    assert data == {
        "period_start": "2026-01-01T00:00:00+00:00",
        "total": 5,
        "records": [
            {"name": "www.test.", "type": "A", "hits": 3, "last_access": "2026-01-01T00:00:09+00:00"},
            {"name": "www.test.", "type": "AAAA", "hits": 1, "last_access": "2026-01-01T00:00:04+00:00"},
        ],
    }
    _, following = counter.take()  # clock :02, nothing since
    assert following == {"period_start": collected_at.isoformat(), "total": 0, "records": []}


def test_distinct_records_are_bounded_per_period_but_the_total_is_not():
    counter = DnsCounter(max_records=2)
    for name in ("a.test", "b.test", "c.test", "a.test"):
        counter.count([query_wire(name, 1)], [None])
    _, data = counter.take()
    assert data["total"] == 4
    assert [(r["name"], r["hits"]) for r in data["records"]] == [("a.test.", 2), ("b.test.", 1)]


def test_names_longer_than_the_control_plane_takes_are_refused():
    wire = struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + (b"\x3c" + b"\x01" * 60) * 4 + b"\x00" + struct.pack(">HH", 1, 1)
    with pytest.raises(MalformedQuery, match="longer than 255"):
        parse_question(wire)


def _writer(connection, frames, content_type=CONTENT_TYPE, replies=None):
    connection.sendall(encode_control(CONTROL_READY, [content_type]))
    replies.append(connection.recv(4096))
    connection.sendall(encode_control(CONTROL_START, [content_type]))
    for frame in frames:
        connection.sendall(struct.pack(">I", len(frame)) + frame)
    connection.sendall(encode_control(CONTROL_STOP))
    replies.append(connection.recv(4096))


def test_frame_streams_bidirectional_handshake():
    reader, writer = socket.socketpair()
    frames = [dnstap_frame(query_wire("a.test", 1)), dnstap_frame(query_wire("b.test", 16))]
    replies = []
    thread = threading.Thread(target=_writer, args=(writer, frames), kwargs={"replies": replies})
    thread.start()
    received = []
    read_queries(reader, lambda wires, times: received.extend(zip(wires, times)))
    thread.join()
    assert received == [decode_query(frame) for frame in frames]
    assert replies == [encode_control(CONTROL_ACCEPT, [CONTENT_TYPE]), encode_control(CONTROL_FINISH)]


def test_frame_streams_refuses_another_content_type():
    reader, writer = socket.socketpair()
    writer.sendall(encode_control(CONTROL_READY, [b"protobuf:other"]))
    with pytest.raises(ProtocolError):
        read_queries(reader, lambda wires, times: None)


def test_system_statistics_from_proc_files(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "loadavg").write_text("0.12 0.10 0.05 1/123 4567\n")
    (tmp_path / "filesystems").write_text("nodev\tproc\nnodev\ttmpfs\n\text4\nnodev\toverlay\n")
    (tmp_path / "mounts").write_text(
        "proc /proc proc rw 0 0\n/dev/vda / ext4 rw 0 0\noverlay /var/lib/with\\040space overlay rw 0 0\n"
        "tmpfs /run tmpfs rw 0 0\n/dev/vda /run/netns ext4 rw 0 0\n"
    )
    (tmp_path / "meminfo").write_text(
        "MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    600 kB\nSwapTotal:       200 kB\nSwapFree:        150 kB\n"
    )
    tcp_header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "net" / "tcp").write_text(
        tcp_header
        + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n"
        + "   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2\n"
    )
    (tmp_path / "net" / "tcp6").write_text(tcp_header + "   0: 0:1 0:0 06 0:0 0:0 0 0 0 3\n")

    class Usage:
        def __init__(self, blocks, free):
            self.f_blocks, self.f_bfree, self.f_frsize = blocks, free, 4096

    sizes = {"/": Usage(1000, 250), "/var/lib/with space": Usage(10, 10)}
    stats = SystemStats(proc=str(tmp_path), statvfs=lambda path: sizes[path]).collect()
    assert stats["load"] == [0.12, 0.10, 0.05]
    assert stats["disks"] == [
        {"mount": "/", "total_bytes": 4096000, "used_bytes": 3072000},
        {"mount": "/var/lib/with space", "total_bytes": 40960, "used_bytes": 0},
    ]
    assert stats["swap"] == {"total_bytes": 204800, "used_bytes": 51200}
    assert stats["memory"] == {"total_bytes": 1024000, "available_bytes": 614400, "used_bytes": 409600}
    assert (stats["connections"]["LISTEN"], stats["connections"]["ESTABLISHED"], stats["connections"]["TIME_WAIT"]) == (1, 1, 1)
    assert sum(stats["connections"].values()) == 3


def test_system_statistics_from_this_machine():
    stats = SystemStats().collect()
    assert len(stats["load"]) == 3
    assert any(disk["mount"] == "/" and disk["total_bytes"] > 0 for disk in stats["disks"])
    assert stats["memory"]["total_bytes"] > stats["memory"]["available_bytes"] > 0


def test_configuration_errors_name_the_key(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"server_id": 4, "agent_token": "t", "communication_type": "carrier-pigeon"}))
    with pytest.raises(ConfigError, match="communication_type"):
        load_config(str(path))
    path.write_text(json.dumps({"server_id": 4}))
    with pytest.raises(ConfigError, match="agent_token"):
        load_config(str(path))
    path.write_text(json.dumps({"server_id": 4, "agent_token": "t", "dns_interval": 5}))
    with pytest.raises(ConfigError, match="dns_interval"):
        load_config(str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(os.path.join(str(tmp_path), "missing.json"))
    path.write_text(json.dumps({"server_id": "4", "agent_token": "t", "rabbitmq": {"host": "mq", "password": "p"}}))
    config = load_config(str(path))
    assert (config.server_id, config.rabbitmq["host"], config.rabbitmq["port"], config.heartbeat_interval) == (4, "mq", 5672, 30.0)
