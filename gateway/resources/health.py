import time
from concurrent.futures import ThreadPoolExecutor

import falcon
from kombu import Connection

from shared.errors import StewardError


class Health:
    """GET /healthz: is the broker reachable, and does each service answer?"""

    public = True

    def __init__(self, amqp_uri, rpc, services, timeout=2.0):
        self.amqp_uri = amqp_uri
        self.rpc = rpc
        self.services = services
        self.timeout = timeout
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(services)), thread_name_prefix="health")

    def _broker(self):
        started = time.perf_counter()
        connection = Connection(self.amqp_uri, connect_timeout=self.timeout)
        try:
            connection.connect()
            return {"reachable": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
        except Exception as exc:
            return {"reachable": False, "error": str(exc) or type(exc).__name__}
        finally:
            connection.release()

    def _service(self, name):
        started = time.perf_counter()
        try:
            self.rpc.call(name, "health", timeout=self.timeout)
            return {"reachable": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
        except StewardError as exc:
            return {"reachable": False, "error": exc.message}

    def on_get(self, req, resp):
        broker = self._broker()
        services = dict(zip(self.services, self.pool.map(self._service, self.services))) if broker["reachable"] else {
            name: {"reachable": False, "error": "broker unreachable"} for name in self.services
        }
        healthy = broker["reachable"] and all(s["reachable"] for s in services.values())
        resp.media = {"status": "ok" if healthy else "degraded", "broker": broker, "services": services}
        resp.status = falcon.HTTP_200 if healthy else falcon.HTTP_503
