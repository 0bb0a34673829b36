"""Knot's mod-dnstap, read on a unix socket: the Frame Streams reader side of the
bidirectional handshake and a hand decoder for the few dnstap protobuf fields
the agent needs (the agent cannot take compiled protobuf packages)."""
import datetime
import grp
import logging
import os
import socket
import struct
import threading
import time

log = logging.getLogger("agent.dnstap")

CONTENT_TYPE = b"protobuf:dnstap.Dnstap"
# Frame Streams control frame types and the one control field.
CONTROL_ACCEPT, CONTROL_START, CONTROL_STOP, CONTROL_READY, CONTROL_FINISH = 1, 2, 3, 4, 5
FIELD_CONTENT_TYPE = 1
MAX_FRAME_BYTES = 1 << 20
READ_BUFFER_BYTES = 1 << 16
# Knot's dnstap writer (libfstrm) delivers a frame up to about 2 s after the query.
WRITER_FLUSH_SECONDS = 2.5
# dnstap.proto field numbers.
DNSTAP_MESSAGE = 14
MESSAGE_TYPE, MESSAGE_QUERY_TIME_SEC, MESSAGE_QUERY_TIME_NSEC, MESSAGE_QUERY = 1, 8, 9, 10
WIRE_VARINT, WIRE_FIXED64, WIRE_BYTES, WIRE_FIXED32 = 0, 1, 2, 5
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
FIXED_FORMATS = {WIRE_FIXED64: struct.Struct("<Q"), WIRE_FIXED32: struct.Struct("<I")}


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


def protobuf_fields(buffer):
    """Yield (field number, value) of one protobuf message: ints for numeric wire types, bytes otherwise."""
    offset = 0
    while offset < len(buffer):
        key, offset = _varint(buffer, offset)
        number, wire_type = key >> 3, key & 7
        if wire_type == WIRE_VARINT:
            value, offset = _varint(buffer, offset)
        elif wire_type in FIXED_FORMATS:
            layout = FIXED_FORMATS[wire_type]
            _need(buffer, offset, layout.size)
            value, offset = layout.unpack_from(buffer, offset)[0], offset + layout.size
        elif wire_type == WIRE_BYTES:
            length, offset = _varint(buffer, offset)
            _need(buffer, offset, length)
            value, offset = bytes(buffer[offset:offset + length]), offset + length
        else:
            raise ProtocolError("unsupported wire type %d" % wire_type)
        yield number, value


def _need(buffer, offset, size):
    if offset + size > len(buffer):
        raise ProtocolError("truncated field")


class DnstapQuery:
    """What the agent needs from one dnstap frame: the query's DNS wire bytes and its time."""

    __slots__ = ("wire", "query_time")

    def __init__(self, wire, query_time):
        self.wire = wire
        self.query_time = query_time


def decode_query(payload):
    """The query in a dnstap frame, or None for frames that carry no query (responses, other types)."""
    message = None
    for number, value in protobuf_fields(payload):
        if number == DNSTAP_MESSAGE and isinstance(value, bytes):
            message = value
    if message is None:
        return None
    fields = dict(protobuf_fields(message))
    # Query types are the odd Message.Type values (AUTH_QUERY=1, CLIENT_QUERY=5, ...); responses
    # may repeat the query and must not count twice.
    if fields.get(MESSAGE_TYPE, 0) % 2 != 1 or not isinstance(fields.get(MESSAGE_QUERY), bytes):
        return None
    query_time = None
    if isinstance(fields.get(MESSAGE_QUERY_TIME_SEC), int):
        # timedelta, not float seconds: exact to the microsecond.
        query_time = EPOCH + datetime.timedelta(
            seconds=fields[MESSAGE_QUERY_TIME_SEC], microseconds=fields.get(MESSAGE_QUERY_TIME_NSEC, 0) // 1000
        )
    return DnstapQuery(fields[MESSAGE_QUERY], query_time)


# --- Frame Streams --------------------------------------------------------------------


def _read_exact(reader, size):
    data = reader.read(size)  # a buffered reader: many frames per recv() under load
    if len(data) < size:
        raise EOFError("writer closed the connection")
    return data


def encode_control(control_type, content_types=()):
    body = struct.pack(">I", control_type)
    for content_type in content_types:
        body += struct.pack(">II", FIELD_CONTENT_TYPE, len(content_type)) + content_type
    return struct.pack(">II", 0, len(body)) + body


def _read_control(reader, escaped=False):
    if not escaped and struct.unpack(">I", _read_exact(reader, 4))[0] != 0:
        raise ProtocolError("expected a control frame")
    length = struct.unpack(">I", _read_exact(reader, 4))[0]
    if not 4 <= length <= 512:
        raise ProtocolError("control frame of %d bytes" % length)
    body = _read_exact(reader, length)
    control_type = struct.unpack_from(">I", body)[0]
    content_types, offset = [], 4
    while offset + 8 <= len(body):
        field, size = struct.unpack_from(">II", body, offset)
        offset += 8
        if field == FIELD_CONTENT_TYPE:
            content_types.append(body[offset:offset + size])
        offset += size
    return control_type, content_types


def read_frames(connection):
    """Handshake as the reader on an accepted connection, then yield every data frame until STOP."""
    reader = connection.makefile("rb", buffering=READ_BUFFER_BYTES)
    control_type, offered = _read_control(reader)
    if control_type != CONTROL_READY:
        raise ProtocolError("expected READY, got control type %d" % control_type)
    if CONTENT_TYPE not in offered:
        raise ProtocolError("writer offers %r, not %r" % (offered, CONTENT_TYPE))
    connection.sendall(encode_control(CONTROL_ACCEPT, [CONTENT_TYPE]))
    control_type, _ = _read_control(reader)
    if control_type != CONTROL_START:
        raise ProtocolError("expected START, got control type %d" % control_type)
    while True:
        length = struct.unpack(">I", _read_exact(reader, 4))[0]
        if length == 0:
            control_type, _ = _read_control(reader, escaped=True)
            if control_type == CONTROL_STOP:
                connection.sendall(encode_control(CONTROL_FINISH))
                return
            continue
        if length > MAX_FRAME_BYTES:
            raise ProtocolError("data frame of %d bytes" % length)
        yield _read_exact(reader, length)


class DnstapListener:
    """Listens on the unix socket Knot writes to and hands every query to ``on_query(DnstapQuery)``."""

    def __init__(self, path, on_query, socket_group="knot"):
        self.path = path
        self.on_query = on_query
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
                for frame in read_frames(connection):
                    try:
                        query = decode_query(frame)
                    except ProtocolError as error:
                        log.warning("undecodable dnstap frame skipped: %s", error)
                        continue
                    if query is not None:
                        self.on_query(query)
            except EOFError:
                log.info("dnstap writer disconnected")
            except (ProtocolError, OSError) as error:
                log.warning("dnstap connection dropped: %s", error)
