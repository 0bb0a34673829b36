"""``python -m scripts.container proxy --wait-up N``: counts what HAProxy's CSV statistics call UP, nothing else
(a replica draining, going down or not yet found is not up), against a real HTTP server."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts.container import proxy_gateways, wait_for_proxy

# The columns that matter, in HAProxy 2.6's order, and its statuses during a rolling restart.
HEADER = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,"


def rows(*statuses):
    lines = [HEADER, "api,FRONTEND,,,0,1,2000,5,,,,,,,,,,OPEN,,"]
    lines += [f"gateways,gateway{n},0,0,0,1,,3,,,,,,0,0,0,0,{status},1," for n, status in enumerate(statuses, 1)]
    lines += ["gateways,BACKEND,0,0,0,1,200,5,,,,,,0,0,0,0,UP,2,", "stats,FRONTEND,,,1,1,2000,9,,,,,,,,,,OPEN,,"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def haproxy():
    """A stand-in for HAProxy's statistics page, serving whatever ``page["csv"]`` holds."""
    page = {"csv": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = page["csv"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield page, f"http://127.0.0.1:{server.server_port}/stats;csv"
    server.shutdown()


def test_each_gateway_with_its_status(haproxy):
    page, url = haproxy
    page["csv"] = rows("UP", "DRAIN (agent)", "MAINT (resolution)", "UP 1/2")
    assert proxy_gateways(url) == {"gateway1": "UP", "gateway2": "DRAIN (agent)", "gateway3": "MAINT (resolution)",
                                   "gateway4": "UP 1/2"}


@pytest.mark.parametrize("statuses", [("UP", "DRAIN (agent)"), ("UP", "UP 1/2"), ("UP", "DOWN"),
                                      ("UP", "MAINT (resolution)"), ("UP",)])
def test_a_gateway_draining_going_down_or_missing_is_not_up(haproxy, statuses, capsys):
    page, url = haproxy
    page["csv"] = rows(*statuses)
    assert wait_for_proxy(url, up=2, timeout=0) == 1
    assert "has not counted 2 gateways up" in capsys.readouterr().err


def test_it_returns_once_both_are_up(haproxy):
    page, url = haproxy
    page["csv"] = rows("UP", "DOWN")
    threading.Timer(1.0, lambda: page.update(csv=rows("UP", "UP"))).start()
    assert wait_for_proxy(url, up=2, timeout=30) == 0


def test_a_proxy_that_does_not_answer_fails_with_its_address(capsys):
    assert wait_for_proxy("http://127.0.0.1:9/stats;csv", up=1, timeout=0) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err
