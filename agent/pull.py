"""Pull mode: monitoring-ingest polls GET /v1/stats?after=<cursor>&limit=<n> with the
agent token; cursors are spool numbers, and asking ``after`` a cursor lets the
agent forget everything at or below it, so nothing is read twice or skipped."""
import hmac
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("agent.pull")

PATH = "/v1/stats"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadRequest(ValueError):
    pass


def _integer(query, name, default, low, high):
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise BadRequest("%s must be an integer" % name)
    if not low <= value <= high:
        raise BadRequest("%s must be between %d and %d" % (name, low, high))
    return value


def stats_page(spool, after, limit):
    """The JSON body for one poll; forgets what the poller confirmed by asking ``after``."""
    if after > spool.last_cursor():
        after = 0  # the spool was recreated since the poller's last cursor: start over rather than skip
    elif after:
        spool.remove_through(after)
    rows = spool.read(after, limit)
    next_cursor = rows[-1][0] if rows else after
    # The spooled bodies are JSON already: join them rather than decode and encode again.
    return '{"items":[%s],"next_cursor":%d}' % (",".join(body for _, body in rows), next_cursor)


def make_handler(spool, token):
    expected = ("Bearer " + token).encode()

    class StatsHandler(BaseHTTPRequestHandler):
        server_version = "steward-agent"

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path != PATH:
                return self._send(404, {"error": "not_found", "message": "no such path"})
            if not hmac.compare_digest(self.headers.get("Authorization", "").encode(), expected):
                return self._send(401, {"error": "not_authenticated", "message": "a valid agent token is required"})
            try:
                query = parse_qs(url.query)
                after = _integer(query, "after", 0, 0, 2 ** 63 - 1)
                limit = _integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
            except BadRequest as error:
                return self._send(400, {"error": "invalid_input", "message": str(error)})
            self._send(200, stats_page(spool, after, limit))

        def _send(self, status, body):
            payload = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format, *args):  # noqa: A002 - the base class's signature
            log.debug("%s %s", self.address_string(), format % args)

    return StatsHandler


class PullServer:
    def __init__(self, spool, token, listen, port):
        self.httpd = ThreadingHTTPServer((listen, port), make_handler(spool, token))
        self.httpd.daemon_threads = True

    @property
    def port(self):
        return self.httpd.server_address[1]

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, name="pull-http", daemon=True).start()
        log.info("serving %s on %s:%d", PATH, self.httpd.server_address[0], self.port)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
