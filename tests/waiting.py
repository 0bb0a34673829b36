"""Polling for what a test waits on (a row, a message, a process), with a bound."""
import time


def wait_for(predicate, timeout=15.0, interval=0.05, what="condition"):
    """The first truthy value of predicate(); AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
