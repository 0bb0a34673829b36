"""Idempotency keys: a creating call sent again with the same ``Idempotency-Key`` gets its first answer.

A client (the CLI, a script that retries) sends the header with a create; the gateway hands the key
to the owning service with the RPC (shared/rpc.py), and the service keeps it in an
``idempotency_keys`` table of its own schema. Every create runs through one helper,
``RequestKey.answer(session, principal, request, create)``:

* it claims the key in ``session``'s transaction (an insert, so two requests with one key take turns
  on its row); a key already kept answers with the stored answer instead of running the create
  again, and a key kept for another request body is refused (422);
* otherwise it runs ``create()`` in that same transaction, stores the answer in the key's row and
  commits once: the change, its outbox events (shared/outbox.py) and its answer commit together or
  not at all. ``create`` must not commit (the helper refuses a commit before the answer is kept:
  a process dying between the two would leave a change without its answer, and a key that answers
  "still running" for a day).

So a retry after a lost reply, and the same RPC redelivered by the broker after the service's
reply was lost, both get the first answer rather than a 409 or a second object. A create that fails
keeps nothing (its transaction rolls back with the claim), so a retry runs it again. Keys are
scoped to the caller and the operation, and forgotten after ``KEY_RETENTION``.
"""
import hashlib
import hmac
import json
import os
from datetime import timedelta

from sqlalchemy import event as sqlalchemy_event

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB, insert

from shared.crypto import SecretBox
from shared.db import NAMING_CONVENTION
from shared.errors import IdempotencyKeyReused, RequestInProgress

KEY_RETENTION = timedelta(hours=24)  # how long a key answers a repeat; later it is a new request
MAX_KEY_LENGTH = 255
_FORGET_BATCH = 100  # expired keys one create deletes, at most
# A test hook: a keyed create dies right after the first commit that holds its claimed key, before it
# answers (as a process killed there would), so a test can retry it with the same key.
CRASH_AFTER_COMMIT = "STEWARD_TEST_CRASH_AFTER_KEYED_COMMIT"


class CrashedAfterCommit(Exception):
    """Raised by the CRASH_AFTER_COMMIT test hook: the request's caller gets no answer."""


class CommittedBeforeAnswer(RuntimeError):
    """A create committed its change before ``RequestKey.answer`` kept its answer (a programming error)."""


def idempotency_keys_table(metadata):
    """The kept keys in ``metadata``'s schema (a service's models; its migration creates it the same way)."""
    return Table(
        "idempotency_keys", metadata,
        Column("key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("caller", String(128), primary_key=True),  # the principal's name: keys are per caller
        Column("operation", String(64), primary_key=True),  # the RPC method: one key may serve two operations
        Column("request_digest", String(64), nullable=False),
        Column("answer", JSONB),  # set in the create's own commit (null only in rows kept before that was so)
        Column("sealed", JSONB),  # the answer's fields kept sealed (a new token's secret), by name
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )


def create_in_migration(op, schema):
    """A service's migration creates the table as its models define it."""
    idempotency_keys_table(MetaData(schema=schema, naming_convention=NAMING_CONVENTION)).create(op.get_bind())


def request_digest(secret_key, request):
    """What identifies a request's content: an HMAC of its arguments as canonical JSON, keyed with the
    SECRET_KEY, since a body may hold a password that a plain hash would let anyone guess offline."""
    canonical = json.dumps(request, sort_keys=True, default=str).encode()
    return hmac.new(secret_key.encode(), canonical, hashlib.sha256).hexdigest()


class RequestKey:
    """One request's Idempotency-Key in a service (``key`` None: the caller sent none, and nothing is kept)."""

    def __init__(self, table, key, operation, secret_key):
        self.table, self.key, self.operation = table, key, operation
        self.secret_key, self.box = secret_key, SecretBox(secret_key) if key else None
        self._claim = None  # (session, caller) once this request holds the key

    def answer(self, session, principal, request, create, sealed=()):
        """The answer to a create: the one kept for this key, or ``create()``'s, run now in ``session``'s
        transaction and committed with its key and answer in one commit. ``request`` is what identifies the
        request's content (its arguments); ``sealed`` names the answer's fields kept sealed (a new token)."""
        first = self._first_answer(session, principal, request)
        if first is not None:
            return first
        sqlalchemy_event.listen(session, "before_commit", _refuse_commit)
        try:
            answer = create()
        finally:
            sqlalchemy_event.remove(session, "before_commit", _refuse_commit)
        self._keep(answer, sealed)
        session.commit()
        return answer

    def _first_answer(self, session, principal, request):
        """The answer kept for this key, or None when this request is the first and must run (its key is
        claimed in ``session``'s transaction). A key kept for another body is IdempotencyKeyReused."""
        if not self.key:
            return None
        table, caller, digest = self.table, principal.get("name") or "", request_digest(self.secret_key, request)
        mine = (table.c.key == self.key) & (table.c.caller == caller) & (table.c.operation == self.operation)
        cutoff = func.now() - KEY_RETENTION
        session.execute(delete(table).where(mine & (table.c.created_at < cutoff)))  # an expired key is a new one
        # A few other expired keys go too; rows another create is deleting are left to it.
        session.execute(text(
            f"DELETE FROM {table.fullname} WHERE ctid IN (SELECT ctid FROM {table.fullname} WHERE created_at < now() - :kept"
            f" LIMIT {_FORGET_BATCH} FOR UPDATE SKIP LOCKED)"), {"kept": KEY_RETENTION})
        claimed = session.execute(
            insert(table).values(key=self.key, caller=caller, operation=self.operation, request_digest=digest)
            .on_conflict_do_nothing().returning(table.c.key)).first()
        if claimed is not None:
            self._claim = (session, caller)
            if os.environ.get(CRASH_AFTER_COMMIT):
                sqlalchemy_event.listen(session, "after_commit", _crash, once=True)
            return None
        kept = session.execute(select(table.c.request_digest, table.c.answer, table.c.sealed).where(mine)).one()
        if kept.request_digest != digest:
            raise IdempotencyKeyReused(
                f"this Idempotency-Key was used for a different {self.operation} request; send a new key",
                {"idempotency_key": ["used before with another body"]})
        if kept.answer is None:
            raise RequestInProgress(
                f"the {self.operation} request with this Idempotency-Key is still running; ask again later",
                {"idempotency_key": ["its request has not finished"]})
        return {**kept.answer, **{name: self.box.open(kept.answer[name]) for name in kept.sealed or ()}}

    def _keep(self, answer, sealed=()):
        """Stores ``answer`` with the claimed key, in the transaction that is about to commit; returns it.
        The fields named in ``sealed`` (secrets: a new token) are kept sealed with the SECRET_KEY."""
        if self._claim is not None:
            session, caller = self._claim
            table = self.table
            kept = {**answer, **{name: self.box.seal(answer[name]) for name in sealed}}
            session.execute(update(table).where(
                (table.c.key == self.key) & (table.c.caller == caller) & (table.c.operation == self.operation))
                .values(answer=kept, sealed=list(sealed) or None))
        return answer

def _refuse_commit(session):
    if session.in_nested_transaction():
        return  # a savepoint released (a flush that may fail), not a commit
    raise CommittedBeforeAnswer("a keyed create committed before its answer was kept; let RequestKey.answer commit")


def _crash(session):
    raise CrashedAfterCommit(f"test hook {CRASH_AFTER_COMMIT}: died after the commit, before answering")
