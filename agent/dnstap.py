"""Knot's mod-dnstap, read on a unix socket: the Frame Streams reader side of the
bidirectional handshake and a hand decoder for the few dnstap protobuf fields
the agent needs (the agent cannot take compiled protobuf packages).

The decoder is the agent's hot path (a busy server sends tens of thousands of
frames a second): it reads what Knot's writer has queued in one large recv(),
walks each frame's protobuf keys in place, and hands on the query's DNS bytes
and Knot's time in microseconds, a batch per read."""
import grp
import logging
import os
import re
import socket
import struct
import threading
import time

log = logging.getLogger("agent.dnstap")

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
# Frame Streams control frame types and the one control field.
CONTROL_ACCEPT, CONTROL_START, CONTROL_STOP, CONTROL_READY, CONTROL_FINISH = 1, 2, 3, 4, 5
FIELD_CONTENT_TYPE = 1
MAX_CONTROL_BYTES = 512
MAX_FRAME_BYTES = 1 << 20
# One recv() takes all Knot's writer has queued (its socket holds about 200 KiB): few system calls,
# and the reader is back at the socket as soon as it has counted.
READ_BYTES = 1 << 20
# Knot's dnstap writer (libfstrm) delivers a frame up to about 2 s after the query.
WRITER_FLUSH_SECONDS = 2.5
# dnstap.proto keys (field number << 3 | wire type) the decoder looks for.
KEY_DNSTAP_MESSAGE = 14 << 3 | 2
KEY_MESSAGE_TYPE = 1 << 3 | 0
KEY_QUERY_TIME_SEC = 8 << 3 | 0
KEY_QUERY_TIME_NSEC = 9 << 3 | 5
KEY_QUERY_MESSAGE = 10 << 3 | 2
WIRE_VARINT, WIRE_FIXED64, WIRE_BYTES, WIRE_FIXED32 = 0, 1, 2, 5
LENGTH = struct.Struct(">I")
# A query Message as Knot writes it (libprotobuf-c: fields in number order, one-byte keys): a query
# type (odd), socket family and protocol, IPv4 or IPv6 addresses, ports, query time (seconds as a
# varint of up to 5 bytes, nanoseconds fixed32), then the query's length (under 16 KiB). The groups
# are the time's two fields and the length; the query's bytes follow the match.
QUERY_MESSAGE = re.compile(
    rb"\x08[\x01\x03\x05\x07\x09\x0b\x0d\x0f]"
    rb"(?:\x10[\x00-\x7f])?(?:\x18[\x00-\x7f])?"
    rb"(?:\x22(?:\x04.{4}|\x10.{16}))?(?:\x2a(?:\x04.{4}|\x10.{16}))?"
    rb"(?:\x30[\x80-\xff]{0,2}[\x00-\x7f])?(?:\x38[\x80-\xff]{0,2}[\x00-\x7f])?"
    rb"\x40([\x80-\xff]{0,4}[\x00-\x7f])\x4d(.{4})\x52([\x80-\xff]?[\x00-\x7f])",
    re.DOTALL,
)


class ProtocolError(ValueError):
    """The writer broke the Frame Streams protocol or sent an undecodable frame."""


# --- protobuf -------------------------------------------------------------------------


def _varint(buffer, offset):
    result = shift = 0
    while True:
        if offset >= len(buffer) or shift > 63:
            raise ProtocolError("truncated varint")
        byte = buffer[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, offset
        shift += 7


def _skip(buffer, offset, key):
    """The offset past the value of a field with ``key``, whose key ends just before ``offset``."""
    wire_type = key & 7
    if wire_type == WIRE_BYTES:
        length = buffer[offset]
        if length & 0x80:
            length, offset = _varint(buffer, offset)
            return offset + length
        return offset + 1 + length
    if wire_type == WIRE_VARINT:
        while buffer[offset] & 0x80:
            offset += 1
        return offset + 1
    if wire_type == WIRE_FIXED32:
        return offset + 4
    if wire_type == WIRE_FIXED64:
        return offset + 8
    raise ProtocolError("unsupported wire type %d" % wire_type)


def _query_at(buffer, offset, end):
    """(query DNS bytes, Knot's query time in µs or None) of the dnstap frame in buffer[offset:end],
    or None when it carries no query (a response, another message type).
    Raises ProtocolError or IndexError for a frame that is not a dnstap protobuf.

    Written for speed (a call per query): keys of fields 1-15 are one byte and lengths under 128
    one byte, handled inline; anything longer goes through _varint. The Message itself is matched
    by QUERY_MESSAGE in one step when it is laid out as Knot writes queries, else walked field by field."""
    message = None
    while offset < end:  # Dnstap: identity, version, extra, message, type
        key = buffer[offset]
        if key & 0x80:
            key, offset = _varint(buffer, offset)
        else:
            offset += 1
        if key & 7 == WIRE_BYTES:
            length = buffer[offset]
            if length & 0x80:
                length, offset = _varint(buffer, offset)
            else:
                offset += 1
            if key == KEY_DNSTAP_MESSAGE:
                message = offset
                offset += length
                break  # only the Dnstap type (a varint) follows in the writers' field order
            offset += length
        else:
            offset = _skip(buffer, offset, key)
    if message is None or offset > end:
        if offset > end:
            raise ProtocolError("truncated field")
        return None
    offset, end = message, offset
    if not buffer[offset + 1] & 1 and buffer[offset] == KEY_MESSAGE_TYPE:
        return None  # a response: the most common frame that is not a query, told apart cheaply
    layout = QUERY_MESSAGE.match(buffer, offset, end)
    if layout is not None:
        seconds, nanos, length = layout.groups()
        offset = layout.end()
        length = length[0] if len(length) == 1 else (length[0] & 0x7F) | (length[1] << 7)
        if offset + length > end:
            raise ProtocolError("truncated query")
        return buffer[offset:offset + length], _seconds(seconds) * 1000000 + int.from_bytes(nanos, "little") // 1000
    return _walk_message(buffer, offset, end)


def _seconds(varint):
    """The value of a varint of at most 5 bytes (seconds until the year 3058), without a loop."""
    raw = int.from_bytes(varint, "little")
    return (raw & 0x7F) | (raw >> 1 & 0x3F80) | (raw >> 2 & 0x1FC000) | (raw >> 3 & 0xFE00000) | (raw >> 4 & 0x7F0000000)


def _walk_message(buffer, offset, end):
    """_query_at's Message, field by field: any field order, unknown fields, long varints."""
    query = seconds = None
    nanos = 0
    while offset < end:
        key = buffer[offset]
        if key & 0x80:
            key, offset = _varint(buffer, offset)
        else:
            offset += 1
        wire_type = key & 7
        if wire_type == WIRE_BYTES:  # addresses, the query, the response
            length = buffer[offset]
            if length & 0x80:
                length, offset = _varint(buffer, offset)
            else:
                offset += 1
            if key == KEY_QUERY_MESSAGE:
                query = buffer[offset:offset + length]
                offset += length
                if seconds is not None:
                    break  # the response fields follow in the writers' field order
            else:
                offset += length
        elif key == KEY_MESSAGE_TYPE:
            # Query types are the odd Message.Type values (AUTH_QUERY=1, CLIENT_QUERY=5, ...); responses
            # may repeat the query and must not count twice.
            if not buffer[offset] & 1:
                return None
            offset = _skip(buffer, offset, key)
        elif key == KEY_QUERY_TIME_SEC:
            seconds, offset = _varint(buffer, offset)
        elif key == KEY_QUERY_TIME_NSEC:
            nanos = int.from_bytes(buffer[offset:offset + 4], "little")
            offset += 4
        elif wire_type == WIRE_VARINT:  # family, protocol, ports
            while buffer[offset] & 0x80:
                offset += 1
            offset += 1
        else:
            offset = _skip(buffer, offset, key)
    if offset > end:
        raise ProtocolError("truncated field")
    if query is None:
        return None
    return query, (None if seconds is None else seconds * 1000000 + nanos // 1000)


def decode_query(payload):
    """The (query DNS bytes, query time in µs since the epoch or None) in one dnstap frame,
    or None for frames that carry no query (responses, other types)."""
    try:
        return _query_at(payload, 0, len(payload))
    except IndexError:
        raise ProtocolError("truncated frame") from None


def decode_frames(buffer, wires, times):
    """Append the query of each complete data frame at the start of ``buffer`` to ``wires`` (its DNS
    bytes) and ``times`` (Knot's time in µs, or None); the offset where decoding stopped (an
    incomplete frame, a control frame, the end) and how many undecodable frames were skipped.
    Two flat lists, not a list of pairs: thousands of pairs a read would keep the garbage collector busy."""
    offset, size, skipped = 0, len(buffer), 0
    while offset + 4 <= size:
        length = LENGTH.unpack_from(buffer, offset)[0]
        if length == 0:
            break
        if length > MAX_FRAME_BYTES:
            raise ProtocolError("data frame of %d bytes" % length)
        end = offset + 4 + length
        if end > size:
            break
        try:
            # A copy of the frame: its offsets then stay small ints, which Python does not allocate.
            query = _query_at(buffer[offset + 4:end], 0, length)
        except (ProtocolError, IndexError):
            skipped += 1
            query = None
        if query is not None:
            wires.append(query[0])
            times.append(query[1])
        offset = end
    return offset, skipped


# --- Frame Streams --------------------------------------------------------------------


def encode_control(control_type, content_types=()):
    body = struct.pack(">I", control_type)
    for content_type in content_types:
        body += struct.pack(">II", FIELD_CONTENT_TYPE, len(content_type)) + content_type
    return struct.pack(">II", 0, len(body)) + body


def _control_at(buffer, offset):
    """(control type, content types, offset past it) of the escaped control frame at ``offset``,
    or None while it is incomplete."""
    if offset + 8 > len(buffer):
        return None
    escape, length = struct.unpack_from(">II", buffer, offset)
    if escape != 0:
        raise ProtocolError("expected a control frame")
    if not 4 <= length <= MAX_CONTROL_BYTES:
        raise ProtocolError("control frame of %d bytes" % length)
    end = offset + 8 + length
    if end > len(buffer):
        return None
    body = buffer[offset + 8:end]
    control_type = struct.unpack_from(">I", body)[0]
    content_types, field_offset = [], 4
    while field_offset + 8 <= len(body):
        field, size = struct.unpack_from(">II", body, field_offset)
        field_offset += 8
        if field == FIELD_CONTENT_TYPE:
            content_types.append(body[field_offset:field_offset + size])
        field_offset += size
    return control_type, content_types, end


def _receive(connection, buffer):
    chunk = connection.recv(READ_BYTES)
    if not chunk:
        raise EOFError("writer closed the connection")
    return buffer + chunk if buffer else chunk


def _read_control(connection, buffer):
    while True:
        control = _control_at(buffer, 0)
        if control is not None:
            control_type, content_types, end = control
            return control_type, content_types, buffer[end:]
        buffer = _receive(connection, buffer)


def read_queries(connection, on_queries):
    """Handshake as the reader on an accepted connection, then call ``on_queries(wires, times)`` with
    the queries of each read's complete frames (see decode_frames), until the writer's STOP."""
    control_type, offered, buffer = _read_control(connection, b"")
    if control_type != CONTROL_READY:
        raise ProtocolError("expected READY, got control type %d" % control_type)
    if CONTENT_TYPE not in offered:
        raise ProtocolError("writer offers %r, not %r" % (offered, CONTENT_TYPE))
    connection.sendall(encode_control(CONTROL_ACCEPT, [CONTENT_TYPE]))
    control_type, _, buffer = _read_control(connection, buffer)
    if control_type != CONTROL_START:
        raise ProtocolError("expected START, got control type %d" % control_type)
    while True:
        wires, times = [], []
        offset, skipped = decode_frames(buffer, wires, times)
        if skipped:
            log.warning("%d undecodable dnstap frames skipped", skipped)
        if wires:
            on_queries(wires, times)
        escaped = offset + 4 <= len(buffer) and LENGTH.unpack_from(buffer, offset)[0] == 0
        control = _control_at(buffer, offset) if escaped else None
        if control is not None:
            if control[0] == CONTROL_STOP:
                connection.sendall(encode_control(CONTROL_FINISH))
                return
            buffer = buffer[control[2]:]  # another control frame mid-stream: nothing to do
            continue
        buffer = _receive(connection, buffer[offset:])


class DnstapListener:
    """Listens on the unix socket Knot writes to and hands each batch of queries (see read_queries)
    to ``on_queries``, in the reader thread: it must return quickly and never wait on I/O."""

    def __init__(self, path, on_queries, socket_group="knot"):
        self.path = path
        self.on_queries = on_queries
        self.socket_group = socket_group
        self._server = None
        self._stopping = threading.Event()
        self._writers = 0
        self._writers_lock = threading.Lock()

    def start(self):
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        if os.path.exists(self.path):
            os.unlink(self.path)  # a stale socket from an earlier run
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._allow_knot()
        self._server.listen(8)
        thread = threading.Thread(target=self._accept_loop, name="dnstap-accept", daemon=True)
        thread.start()
        log.info("dnstap reader listening on %s", self.path)

    def _allow_knot(self):
        # knotd runs as its own user: let its group write to the socket, and nobody else.
        os.chmod(self.path, 0o660)
        try:
            os.chown(self.path, -1, grp.getgrnam(self.socket_group).gr_gid)
        except (KeyError, PermissionError):
            log.info("no group %r to share %s with; knotd must run as this user", self.socket_group, self.path)

    def stop(self):
        self._stopping.set()
        if self._server is not None:
            self._server.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), name="dnstap-reader", daemon=True).start()

    def wait_for_writers_to_flush(self):
        """On the way out: give a connected Knot the time to deliver the queries it already answered."""
        if self._writers:
            time.sleep(WRITER_FLUSH_SECONDS)

    def _serve(self, connection):
        log.info("dnstap writer connected")
        with self._writers_lock:
            self._writers += 1
        try:
            self._read(connection)
        finally:
            with self._writers_lock:
                self._writers -= 1

    def _read(self, connection):
        with connection:
            try:
                read_queries(connection, self.on_queries)
            except EOFError:
                log.info("dnstap writer disconnected")
            except (ProtocolError, OSError) as error:
                log.warning("dnstap connection dropped: %s", error)
