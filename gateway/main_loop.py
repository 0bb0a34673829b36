"""What the app may not do while the worker's main loop runs it: wait.

gateway/worker.py answers agents' heartbeats on its main loop instead of a thread (the worker's docstring
says why). The app runs there as it runs anywhere, with two differences: what would wait on another
process (an ``authenticate`` call for a token not in the cache, a refresh of the collector switches)
raises ``WouldBlock``, and the worker then hands the request to a thread like any other; and the
heartbeat's publish is handed back to the worker (``defer_publish``), which answers once the broker has
confirmed the message.
"""
import contextvars
from contextlib import contextmanager

_deferred = contextvars.ContextVar("steward_main_loop_publishes", default=None)


class WouldBlock(Exception):
    """The request needs a wait the main loop must not make: a thread takes it."""


def wait_allowed():
    """Raises WouldBlock on the main loop; call it before what would wait on another process."""
    if _deferred.get() is not None:
        raise WouldBlock()


def defer_publish(body, routing_key):
    """On the main loop: keep (body, routing_key) for the worker to publish, and True; elsewhere False."""
    publishes = _deferred.get()
    if publishes is None:
        return False
    publishes.append((body, routing_key))
    return True


@contextmanager
def running_on_main_loop():
    """While the app runs on the main loop: yields the list that receives its deferred publishes."""
    publishes = []
    token = _deferred.set(publishes)
    try:
        yield publishes
    finally:
        _deferred.reset(token)
