"""The dnstap decoder against what knotd really wrote (tests/agent/data, made by
capture_knot_frames.py): queries and responses with the query repeated, over UDP and
TCP, read back in any split the socket may deliver them in."""
import datetime
import json
import os
import socket
import threading

import pytest

from agent.dns_stats import DnsCounter
from agent.dnstap import (CONTENT_TYPE, CONTROL_ACCEPT, CONTROL_FINISH, LENGTH, decode_frames, decode_query,
                          encode_control, read_queries)
from agent_lab import EXPECTED_HITS

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
CAPTURE = "knotd-3.2.6"


@pytest.fixture(scope="module")
def capture():
    with open(os.path.join(DATA, CAPTURE + ".fstrm"), "rb") as handle:
        stream = handle.read()
    with open(os.path.join(DATA, CAPTURE + ".json")) as handle:
        return stream, json.load(handle)


def data_frames(stream):
    """The data frames of a recorded stream (between START and STOP), split by hand."""
    frames, offset = [], 0
    while offset < len(stream):
        length = LENGTH.unpack_from(stream, offset)[0]
        if length == 0:  # a control frame: escape, length, body
            offset += 8 + LENGTH.unpack_from(stream, offset + 4)[0]
            continue
        frames.append(stream[offset + 4:offset + 4 + length])
        offset += 4 + length
    return frames


def replay(stream, chunk_size):
    """Writes the recording to the reader ``chunk_size`` bytes at a time, as knotd would; returns
    what the reader counted and the control frames it answered with."""
    reader, writer = socket.socketpair()
    replies = []

    def write():
        for offset in range(0, len(stream), chunk_size):
            writer.sendall(stream[offset:offset + chunk_size])
        replies.append(writer.recv(4096))  # ACCEPT was sent long before, FINISH after STOP
        writer.shutdown(socket.SHUT_WR)
        while True:
            more = writer.recv(4096)
            if not more:
                return
            replies[-1] += more

    counter = DnsCounter()
    thread = threading.Thread(target=write)
    thread.start()
    read_queries(reader, counter.count)
    reader.close()
    thread.join(10)
    return counter.take()[1], replies


@pytest.mark.parametrize("chunk_size", [1, 7, 4096, 1 << 20])
def test_knotd_queries_are_counted_once_each_and_responses_not_at_all(capture, chunk_size):
    stream, recorded = capture
    data, replies = replay(stream, chunk_size)
    times = recorded["plan_times"]
    assert data["total"] == times * sum(EXPECTED_HITS.values())
    assert {(r["name"], r["type"]): r["hits"] for r in data["records"]} == {k: times * n for k, n in EXPECTED_HITS.items()}
    assert replies == [encode_control(CONTROL_ACCEPT, [CONTENT_TYPE]) + encode_control(CONTROL_FINISH)]


def test_last_access_is_knots_time_of_the_last_query(capture):
    stream, recorded = capture
    data, _ = replay(stream, 1 << 20)
    for record in data["records"]:
        before, after = (datetime.datetime.fromisoformat(t) for t in recorded["last_query"]["%s %s" % (record["name"], record["type"])])
        assert before <= datetime.datetime.fromisoformat(record["last_access"]) <= after


def test_knotd_frames_one_by_one(capture):
    stream, recorded = capture
    frames = data_frames(stream)
    decoded = [decode_query(frame) for frame in frames]
    queries = [query for query in decoded if query is not None]
    assert len(frames) == 2 * len(queries) == 2 * recorded["plan_times"] * sum(EXPECTED_HITS.values())
    # Each query's DNS bytes are the whole message Knot received: a header and one question.
    assert all(wire[4:6] == b"\x00\x01" and wire[2] & 0x80 == 0 for wire, _ in queries)


def test_an_undecodable_frame_is_skipped_and_the_rest_counted(capture):
    stream, _ = capture
    frames = data_frames(stream)
    assert decode_query(frames[0]) is not None
    mangled = frames[0][:30]  # identity and version whole, the message cut short
    body = b"".join(LENGTH.pack(len(f)) + f for f in [mangled] + frames[1:])
    wires, times = [], []
    offset, skipped = decode_frames(body, wires, times)
    assert (offset, skipped) == (len(body), 1)
    assert list(zip(wires, times)) == [q for q in map(decode_query, frames[1:]) if q is not None]
