"""The fleet list, answered from a copy of the fleet in memory that is never stale.

The list is the API's busiest call, and its query (a substring search over
every name, a sort, a count, a page) cost the database ~4 ms a call on two
cores. Each inventory process keeps the rows the list shows, in list order.

A trigger adds a ``fleet_changes`` row (transaction id, server id) for every
server a transaction changes, itself or through a component. Each call reads,
in one statement, its snapshot and the servers of the changes that the
snapshot the copy last read at did not see (an index range from that
snapshot's xmin: any transaction it did not see has an id at or above it),
then reloads just those servers' rows (a server gone is dropped) into place.
So a list after a committed change always shows it, in any replica, and a
heartbeat storm that changes 96 servers a second costs a few rows a call
instead of reloading 10,000 (150-220 ms of Python). Re-applying a change is
harmless, so a copy may read the same change twice.

Changes older than ``CHANGES_KEPT`` are pruned by a timer (a TRUNCATE loses
them too); ``fleet_changes_pruned`` keeps which transaction did it last and
the newest it deleted. A copy that may miss one of them (read before that
prune, with a transaction at least as old as the change still open), an
empty one, and one read in another database (a live restore swaps one in by
name) reload in full. The last few searches are kept too, since a user pages
through one, and changes are applied to them as well.
"""
from bisect import bisect_left, insort
from collections import OrderedDict, namedtuple
from datetime import timedelta

from sqlalchemy import Interval, bindparam, text

from shared.schemas.servers import requests_status

# key, state, os and runtime are what a search filters on; row is what the list shows.
Entry = namedtuple("Entry", "id key state os runtime row")


def list_row(server_id, name, address, state, versions, requests=0):
    """What the fleet list shows of one server (read-only once made: pages share them)."""
    return {
        "id": server_id,
        "name": name,
        "address": address,
        "requests": requests,
        "requests_status": requests_status(requests),
        "versions": versions,
        "state": state,
    }


_SERVERS = """
SELECT s.id, s.name, s.name_key, s.address, s.state, s.os, s.runtime,
    coalesce((SELECT jsonb_object_agg(c.name, c.version) FROM inventory.server_components c
              WHERE c.server_id = s.id AND c.state = 'running' AND c.version IS NOT NULL), '{}') AS versions
FROM inventory.servers s
"""
_FLEET = text(_SERVERS + "ORDER BY s.name_key, s.id")
_SOME = text(_SERVERS + "WHERE s.id = ANY(:ids)")
# The statement's own snapshot, and the servers of the changes the snapshot ``seen`` did not see:
# those are of transactions with an id at or above its xmin, so the index on xid finds them. None of
# them was pruned if every pruned one was older than that xmin, or if the last prune was seen itself
# (it deleted only changes committed before it).
# The database's oid tells a restored one swapped in by name (backup's live restore) from the one read.
_CHANGES = text("""
SELECT pg_current_snapshot()::text AS snapshot,
    (SELECT oid FROM pg_database WHERE datname = current_database()) AS database,
    (SELECT below <= :since OR pg_visible_in_snapshot(pruned_by::text::xid8, CAST(:seen AS pg_snapshot))
     FROM inventory.fleet_changes_pruned WHERE id = 1) AS complete,
    ARRAY(SELECT DISTINCT server_id FROM inventory.fleet_changes
          WHERE xid >= :since AND NOT pg_visible_in_snapshot(xid::text::xid8, CAST(:seen AS pg_snapshot))) AS changed
""")
_NOTHING = {"since": 2**63 - 1, "seen": "3:3:"}  # for an empty copy, which reloads in full anyway
_PRUNE = text("""
WITH gone AS (DELETE FROM inventory.fleet_changes WHERE at < now() - :kept RETURNING xid)
INSERT INTO inventory.fleet_changes_pruned (id, below, pruned_by)
SELECT 1, max(xid) + 1, pg_current_xact_id()::text::bigint FROM gone HAVING count(*) > 0
ON CONFLICT (id) DO UPDATE
SET below = greatest(inventory.fleet_changes_pruned.below, excluded.below), pruned_by = excluded.pruned_by
""").bindparams(bindparam("kept", type_=Interval()))
CHANGES_KEPT = timedelta(minutes=10)  # a copy idle longer than this reloads in full
SEARCHES_KEPT = 32


def _entry(row):
    # name_key is lower(name) in collation "C": Python's str order is that byte order.
    return Entry(row.id, row.name_key, row.state, row.os, row.runtime,
                 list_row(row.id, row.name, row.address, row.state, row.versions))


def _order(entry):
    return entry.key, entry.id


def _matches(query, entry):
    """Whether a search (lower-cased text, state, os, runtime; None: the whole list) lists the entry."""
    if query is None:
        return True
    search, state, os, runtime = query
    return ((not search or search in entry.key) and (not state or entry.state == state)
            and (not os or entry.os == os) and (not runtime or entry.runtime == runtime))


def prune_changes(connection, kept=CHANGES_KEPT):
    """Forget the changes older than ``kept``; a copy that had not read them yet will reload in full."""
    connection.execute(_PRUNE, {"kept": kept})


class FleetCopy:
    def __init__(self):
        self.snapshot = None  # what the copy is current at (a pg_snapshot's text); None: empty
        self.database = None  # and in which database (its oid)
        self.entries = []  # in list order: (name_key, id)
        self.by_id = {}
        self.searches = OrderedDict()  # (search, state, os, runtime) -> matching entries, in name order
        self.installs = 0  # bumped by every change of the above: a reader that saw another number reads again
        self.full_reloads = 0
        self.servers_reloaded = 0

    def _current(self, connection):
        while True:
            installs, seen = self.installs, self.snapshot
            since = int(seen.split(":")[0]) if seen else None
            now = connection.execute(_CHANGES, {"since": since, "seen": seen} if seen else _NOTHING).one()
            if seen is None or not now.complete or now.database != self.database:
                rows, changed = connection.execute(_FLEET).all(), None
            else:
                changed = now.changed
                rows = connection.execute(_SOME, {"ids": changed}).all() if changed else []
            # From here to the return nothing waits, so no other green thread changes the copy in between;
            # one that changed it while this one read may have put older rows in: read again from there.
            if self.installs != installs:
                continue
            if changed is None:
                self._reload(rows)
            elif changed:
                self._apply(changed, rows)
            self.snapshot, self.database = now.snapshot, now.database
            return self.entries, self.searches

    def _reload(self, rows):
        self.entries = [_entry(row) for row in rows]
        self.by_id = {entry.id: entry for entry in self.entries}
        self.searches = OrderedDict()
        self.installs += 1
        self.full_reloads += 1

    def _apply(self, changed, rows):
        """Put the changed servers' rows in their places (a server without a row is gone), in the list and in
        every kept search: a heartbeat storm changes a few servers between two calls, and a search costs ~1 ms."""
        gone, new = [], [_entry(row) for row in rows]
        for server_id in changed:
            old = self.by_id.pop(server_id, None)
            if old is not None:
                gone.append(old)
        for query, found in [(None, self.entries), *self.searches.items()]:
            for entry in gone:
                if _matches(query, entry):
                    del found[bisect_left(found, _order(entry), key=_order)]
            for entry in new:
                if _matches(query, entry):
                    insort(found, entry, key=_order)
        self.by_id.update((entry.id, entry) for entry in new)
        self.installs += 1
        self.servers_reloaded += len(changed)

    def matching(self, connection, search=None, state=None, os=None, runtime=None):
        """Servers whose name holds ``search`` (any case), in ``state``, on ``os``, with ``runtime``, in name order."""
        entries, searches = self._current(connection)
        query = (search.lower() if search else None, state, os, runtime)
        found = searches.get(query)
        if found is None:
            found = [e for e in entries if _matches(query, e)]
            searches[query] = found
            if len(searches) > SEARCHES_KEPT:
                searches.popitem(last=False)
        else:
            searches.move_to_end(query)
        return found

    def page(self, connection, search=None, sort="name", state=None, page=1, per_page=25, os=None, runtime=None):
        """(entries of one page, total)."""
        found = self.matching(connection, search, state, os, runtime)
        start, stop = (page - 1) * per_page, page * per_page
        if sort == "-name":  # by name_key, then id, both descending: the same list backwards
            chosen = found[::-1][start:stop]
        else:
            chosen = found[start:stop]
        return chosen, len(found)


FLEET = FleetCopy()  # one per process: nameko's workers are green threads of it
