"""The gateway's gunicorn worker: gthread, but a slow client never holds a thread.

gthread hands a connection to a thread as soon as its first bytes arrive, and the thread then blocks until
the whole request head is in: a client that sends half a head and waits holds that thread for as long as
it likes, and a few dozen of them stop the gateway. Here the main loop reads each request's head, and a
body of up to ``MAX_JSON_BYTES``, itself, without blocking, and hands the connection to a thread only
once that much has arrived; a client that has not sent it within ``HEAD_TIMEOUT_SECONDS`` is answered 408
and closed. A larger body (an image upload) is read by the thread, which gives up on a client silent for
``IDLE_TIMEOUT_SECONDS`` (Falcon's handler answers 408). gunicorn's own error answers (a malformed
request line, a header too large) are JSON like every other error, and no answer names the server software.

A connection that ends is closed as RFC 9112 9.6 asks (FIN first, then what the client still sends is read
and dropped until it closes, so unread bytes do not turn the close into a reset that truncates the answer),
but by the main loop's poller: gthread's own lingering close waits up to 2 s for each client on the main
loop, so a client that keeps its end open after a ``Connection: close`` answer stopped the whole worker.

Agents' heartbeats are answered on the main loop itself, without a thread: for the fleet's most frequent
request, gthread's hand-off to a thread and back and gunicorn's own request and response objects cost more
than the app, and a thread that waits for its own broker confirm costs more again (docs/capacity.md). A
heartbeat whose head and body are all the main loop read, with nothing unusual in its head, goes to the
app as it is; the app raises ``WouldBlock`` where it would wait on another process (gateway/main_loop.py),
and the request then goes to a thread like any other. Its message goes out through one ``LoopPublisher``
per worker, and the answer is sent when the broker has confirmed it: a 503 if the broker did not take it.
Until that publisher is connected, and when ``gateway.heartbeats_on_main_loop`` is false, threads answer.

On SIGTERM the worker stops as gunicorn's gthread does (in-flight requests finish within graceful_timeout),
but first takes in the connections already queued on its listener and then closes the listener at once: a
rolling restart then resets no request that had reached the gateway (gateway/gunicorn.conf.py drains the
proxy before this, and docker/haproxy/haproxy.cfg retries what was refused).
"""
import contextvars
import io
import json
import logging
import os
import re
import selectors
import socket
import sys
import time
from functools import partial

from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.workers import gthread

from gateway.main_loop import WouldBlock, running_on_main_loop
from gateway.resources import MAX_JSON_BYTES
from gateway.routes import PREFIX
from shared.config import load_settings
from shared.publisher import LoopPublisher
from shared.schemas.agent import EXCHANGE as AGENT_EXCHANGE

log = logging.getLogger("gateway.worker")

HEAD_TIMEOUT_SECONDS = float(os.environ.get("STEWARD_GATEWAY_HEAD_TIMEOUT", "10"))
IDLE_TIMEOUT_SECONDS = float(os.environ.get("STEWARD_GATEWAY_IDLE_TIMEOUT", "30"))
# How long, and for how many bytes, a closing connection waits for the client's own close (gthread's figures).
LINGER_SECONDS = 2.0
LINGER_BYTES = 64 * 1024
# A head longer than this is handed to gunicorn's parser, which refuses it by its limit_request_* settings.
MAX_HEAD_BYTES = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,12})[ \t]*\r\n", re.IGNORECASE)
_ERROR_CODES = {400: "invalid_request", 403: "permission_denied", 408: "request_timeout", 414: "uri_too_long",
                417: "expectation_failed", 431: "header_too_large", 500: "internal_error", 501: "not_implemented"}

wsgi.SERVER = "steward"  # the Server header: no software name or version for a scanner to match


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's own error answer (util.write_error writes HTML), as the API's JSON error."""
    body = json.dumps({"error": _ERROR_CODES.get(status_int, "http_error"), "message": mesg or reason,
                       "details": {}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = write_json_error  # base.Worker.handle_error calls it by this name


def request_read(buffer):
    """Whether ``buffer`` holds as much of a request as the main loop reads: its head and a body of up to
    MAX_JSON_BYTES (a longer or chunked body, or a head too long, is the thread's, or the parser's, to deal with)."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return len(buffer) > MAX_HEAD_BYTES
    length = _CONTENT_LENGTH.search(buffer, 0, head_end + 2)
    if length is None:
        return True
    length = int(length[1])
    return length > MAX_JSON_BYTES or len(buffer) >= head_end + 4 + length


_HEARTBEAT_LINE = re.compile(rb"POST " + re.escape(f"{PREFIX}/monitoring/heartbeat".encode()) + rb" HTTP/1\.([01])\r\n")
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110's token
_NOT_ON_MAIN_LOOP = {"TRANSFER_ENCODING", "EXPECT", "UPGRADE"}
MAX_MAIN_LOOP_HEAD = 8190  # gunicorn's limit_request_field_size: a longer head is the parser's to judge


def main_loop_environ(buffer, client, server):
    """The WSGI environ of a heartbeat the main loop may answer: its head and JSON body are exactly ``buffer``
    (nothing of a next request), with no field the main loop leaves to gunicorn's parser; else None."""
    line = _HEARTBEAT_LINE.match(buffer)
    head_end = buffer.find(b"\r\n\r\n")
    if line is None or not 0 < head_end <= MAX_MAIN_LOOP_HEAD or not isinstance(client, tuple):
        return None  # (a client on a unix socket has no address: gunicorn's environ says what it has)
    environ = {"REQUEST_METHOD": "POST", "SCRIPT_NAME": "", "PATH_INFO": f"{PREFIX}/monitoring/heartbeat",
               "QUERY_STRING": "", "RAW_URI": f"{PREFIX}/monitoring/heartbeat",
               "SERVER_PROTOCOL": f"HTTP/1.{line[1].decode()}", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
               "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
               "wsgi.run_once": False, "SERVER_SOFTWARE": wsgi.SERVER}
    for field in bytes(buffer[line.end():head_end]).split(b"\r\n"):
        name, colon, value = field.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            return None
        key = name.decode("ascii").upper().replace("-", "_")
        if key in _NOT_ON_MAIN_LOOP:
            return None
        key = key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key
        if key in environ:  # a field twice: gunicorn's parser decides what that means
            return None
        environ[key] = value.strip(b" \t").decode("latin-1")
    length = environ.get("CONTENT_LENGTH", "")
    if not length.isdigit() or len(buffer) != head_end + 4 + int(length):
        return None
    environ["wsgi.input"] = io.BytesIO(bytes(buffer[head_end + 4:]))
    environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(client[0]), str(client[1])
    environ["SERVER_NAME"], environ["SERVER_PORT"] = str(server[0]), str(server[1])
    return environ


def keeps_alive(environ):
    connection = environ.get("HTTP_CONNECTION", "").lower()
    if environ["SERVER_PROTOCOL"] == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def response_bytes(status, headers, body, keep_alive):
    head = [f"HTTP/1.1 {status}", f"Server: {wsgi.SERVER}", f"Date: {util.http_date()}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    head += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def _received(sock):
    """What a non-blocking client socket holds: bytes, b"" when the client closed (or failed), None for nothing yet."""
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class Connection(gthread.TConn):
    def __init__(self, *args, linger):
        super().__init__(*args)
        self.read_ahead = None  # bytes the main loop read; the parser takes them first
        self.linger = linger  # the worker's lingering close, run by its poller
        self.lingered = 0

    def close(self, graceful=False):
        if graceful:
            self.linger(self)
        else:
            super().close()

    def init(self):
        super().init()
        if self.read_ahead:
            self.parser.unreader.unread(bytes(self.read_ahead))
        self.read_ahead = None
        self.sock.settimeout(IDLE_TIMEOUT_SECONDS)  # gthread made it blocking without a limit


class GatewayWorker(gthread.ThreadWorker):
    def init_process(self):
        self.reading = {}  # connections whose request the main loop is reading: their deadline
        self.lingering = {}  # connections closed on our side, waiting for the client's close: their deadline
        super().init_process()

    def run(self):
        settings = load_settings()
        self.loop_publisher = None
        if settings.section("gateway").get("heartbeats_on_main_loop", True):  # YAML's booleans: false, no, off, 0
            self.loop_publisher = LoopPublisher(
                settings.amqp_uri, AGENT_EXCHANGE, call_soon=self.method_queue.defer,
                register=lambda sock, callback: self.poller.register(sock, selectors.EVENT_READ, callback),
                unregister=self.poller.unregister)
            self.loop_publisher.ready()  # connecting from now on
        try:
            super().run()
        finally:
            if self.loop_publisher is not None:
                self.loop_publisher.close()

    def accept(self, listener):
        self._accept_one(listener)

    def _accept_one(self, listener):
        """Takes one connection off ``listener``'s queue; False when the queue is empty."""
        try:
            client_sock, client_addr = listener.accept()
        except BlockingIOError:
            return False
        except ConnectionAbortedError:
            return True
        self.nr_conns += 1
        self._read_request(Connection(self.cfg, client_sock, client_addr, listener.getsockname(), linger=self._linger))
        return True

    def set_accept_enabled(self, enabled):
        stopping = not enabled and not self.alive and self._accepting
        if stopping:
            # Connections the kernel already queued have sent their request, or are sending it: closing
            # the listener would reset them, so they are taken in and answered like those in flight.
            for listener in self.sockets:
                while self._accept_one(listener):
                    pass
        super().set_accept_enabled(enabled)
        if stopping:
            # Closed now, not after the in-flight requests: a client (the proxy) that connects meanwhile is
            # refused, which it can safely retry elsewhere, instead of queued here and reset at the end.
            for listener in self.sockets:
                listener.close()

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request: read like a new one's."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_request(conn)

    def _read_request(self, conn):
        conn.sock.setblocking(False)
        conn.read_ahead = bytearray()
        self.reading[conn] = time.monotonic() + HEAD_TIMEOUT_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_request_bytes, conn))

    def _on_request_bytes(self, conn, sock):
        data = _received(sock)
        if data is None:
            return
        if not data:  # the client went away
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.read_ahead += data
        if request_read(conn.read_ahead):
            self._stop_reading(conn)
            if self._answer_on_main_loop(conn):
                return
            conn.data_ready = True  # gthread's own wait for a first byte is done
            self.enqueue_req(conn)

    def _answer_on_main_loop(self, conn):
        """A heartbeat answered here (see the module); False: a thread takes the request, as any other."""
        if self.loop_publisher is None or not self.alive:
            return False
        environ = main_loop_environ(conn.read_ahead, conn.client, conn.server)
        if environ is None or not self.loop_publisher.ready():
            return False
        answer = []

        def call_app():  # in a context of its own: what the app sets there (a request id) ends with it
            with running_on_main_loop() as publishes:
                body = b"".join(self.wsgi(environ, lambda status, headers, exc_info=None: answer.extend((status, headers))))
            return body, publishes

        try:
            body, publishes = contextvars.copy_context().run(call_app)
        except WouldBlock:
            return False
        except Exception:  # the app answers its own errors; this is a fault of the path itself: a thread tries
            log.exception("a heartbeat could not be answered on the main loop")
            return False
        status, headers = answer
        keep_alive = keeps_alive(environ) and self.cfg.keepalive > 0
        conn.read_ahead = None
        if not publishes:  # answered without a message (refused, invalid): at once
            self._send_answer(conn, status, headers, body, keep_alive)
            return True

        def confirmed(error):
            if error is None:
                self._send_answer(conn, status, headers, body, keep_alive)
                return
            log.warning("heartbeat answered 503 after all: %s", error,
                        extra={"request_id": dict(headers).get("X-Request-Id")})
            failed = json.dumps(error.to_dict()).encode()
            kept = [(n, v) for n, v in headers if n.lower() not in ("content-length", "content-type")]
            self._send_answer(conn, "503 Service Unavailable", kept + [
                ("Content-Type", "application/json"), ("Content-Length", str(len(failed)))], failed, False)

        (message, routing_key), = publishes
        self.loop_publisher.publish(message, routing_key, confirmed)
        return True

    def _send_answer(self, conn, status, headers, body, keep_alive):
        """The main loop's answer, then the connection kept alive as gthread keeps it, or closed (a stopping
        worker closes it: its answer says so)."""
        keep_alive = keep_alive and self.alive
        try:
            # Non-blocking: a small answer fits the socket's buffer, else the client is gone.
            conn.sock.sendall(response_bytes(status, headers, body, keep_alive))
            if keep_alive:
                conn.set_timeout()
                self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn))
                self.keepalived_conns.append(conn)
                return
        except (OSError, ValueError):  # the client went away (ValueError: its socket is closed)
            pass
        self.nr_conns -= 1
        conn.close(graceful=True)

    def _stop_reading(self, conn):
        self._forget(self.reading, conn)

    def _forget(self, waiting, conn):
        """``conn`` is no longer ``waiting`` (reading, lingering) for the poller."""
        waiting.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _linger(self, conn):
        """gthread's graceful close, without waiting on the main loop. gthread no longer counts the connection;
        it is counted again until it ends, so a stopping worker waits for it too (a socket closed with unread
        bytes is reset, which could cut the end of the answer)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            conn.sock.close()
            return
        conn.sock.setblocking(False)
        self.nr_conns += 1
        self.lingering[conn] = time.monotonic() + LINGER_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_linger_bytes, conn))

    def _on_linger_bytes(self, conn, sock):
        data = _received(sock)
        if data is None:
            return
        conn.lingered += len(data)
        if not data or conn.lingered >= LINGER_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn):
        self._forget(self.lingering, conn)
        self.nr_conns -= 1
        conn.sock.close()

    def murder_pending(self):
        super().murder_pending()
        if self.loop_publisher is not None:
            self.loop_publisher.expire()
        now = time.monotonic()
        for conn in [conn for conn, deadline in self.lingering.items() if deadline <= now]:
            self._end_linger(conn)
        for conn in [conn for conn, deadline in self.reading.items() if deadline <= now]:
            self._stop_reading(conn)
            self.nr_conns -= 1
            try:
                write_json_error(conn.sock, 408, "Request Timeout",
                                 f"the request did not arrive within {HEAD_TIMEOUT_SECONDS:g} s")
            except OSError:
                pass
            conn.close()
