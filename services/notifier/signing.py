"""Webhook signatures: how Steward signs a POST and how a receiver checks it.

Every webhook POST carries two headers:

* ``X-Steward-Timestamp``: Unix time in seconds when it was signed;
* ``X-Steward-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with the
  channel's secret, of ``<timestamp>.<raw body>`` (bytes, as received).

A receiver verifies like this (``verify`` below does exactly this)::

    expected = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest("v1=" + expected, signature) and abs(time.time() - int(timestamp)) <= 300

The body is not to be re-serialised before checking. The timestamp bounds
replays to the tolerance; to refuse a replay within it, remember the
``X-Steward-Delivery`` id (a retry of one delivery sends the same id).
"""
import hashlib
import hmac

SIGNATURE_HEADER = "X-Steward-Signature"
TIMESTAMP_HEADER = "X-Steward-Timestamp"
DELIVERY_HEADER = "X-Steward-Delivery"
TOLERANCE_SECONDS = 300


def sign(secret, timestamp, body):
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret, timestamp, body, signature, now, tolerance=TOLERANCE_SECONDS):
    """True if ``signature`` is Steward's for ``body`` at ``timestamp`` and the timestamp is fresh."""
    try:
        age = abs(now - int(timestamp))
    except (TypeError, ValueError):
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature or "")
