"""Eventlet for the services (and the tests that host them): one monkey patch, and
psycopg2 made to cooperate with it.

nameko's runner monkey-patches a service process before it imports anything, and
every service's ``DatabaseSession`` makes psycopg2 cooperate (``cooperate()``) as
its container sets up. ``patch()`` does both for a process that hosts containers
itself: ``tests/conftest.py`` calls it on its first lines.

The wait callback is psycogreen's, plus one step. libpq opens its socket in C,
where eventlet does not see it. When that number was last used by a socket that
was closed while a green thread still waited on it (paramiko closes its socket
under its own transport thread: eventlet#94), the hub still holds that thread's
listener, and the new connection's first wait fails with "Second simultaneous
read on fileno N". Eventlet clears such leftovers for the sockets it opens
itself (``notify_opened``); the callback does the same for each socket libpq
opens while it connects.
"""
import eventlet
from eventlet.hubs import notify_opened, trampoline
from psycopg2 import OperationalError, extensions


def patch():
    eventlet.monkey_patch()
    cooperate()


def cooperate():
    """psycopg2 waits for its sockets through eventlet's hub (idempotent)."""
    extensions.set_wait_callback(wait)


def wait(conn, timeout=None):
    connecting, opened = conn.status == extensions.STATUS_SETUP, None
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        fd = conn.fileno()
        if connecting and fd != opened:
            notify_opened(fd)  # libpq may try several addresses, each on a new socket
            opened = fd
        if state == extensions.POLL_READ:
            trampoline(fd, read=True)
        elif state == extensions.POLL_WRITE:
            trampoline(fd, write=True)
        else:
            raise OperationalError(f"bad result from poll: {state!r}")
