"""The fleet list, answered from a copy of the fleet in memory that is never stale.

The list is the API's busiest call, and its query (a substring search over
every name, a sort, a count, a page) cost the database ~4 ms a call on two
cores. Each inventory process keeps the rows the list shows, in list order,
with the ``fleet_version`` they were read at. Every call reads the version
(one primary-key row, which a trigger sets to the id of any transaction that
changes a server or a component) and reloads the copy when it differs, so a
list after a committed change always shows it, in any replica. The last few
searches are kept too (until the next change), since a user pages through one.
"""
from collections import OrderedDict, namedtuple

from sqlalchemy import text

from shared.schemas.servers import requests_status

# key, state, os and runtime are what a search filters on; row is what the list shows.
Entry = namedtuple("Entry", "key state os runtime row")


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


_VERSION = text("SELECT version FROM inventory.fleet_version WHERE id = 1")
_FLEET = text("""
SELECT s.id, s.name, s.name_key, s.address, s.state, s.os, s.runtime,
    coalesce((SELECT jsonb_object_agg(c.name, c.version) FROM inventory.server_components c
              WHERE c.server_id = s.id AND c.state = 'running' AND c.version IS NOT NULL), '{}') AS versions
FROM inventory.servers s
ORDER BY s.name_key, s.id
""")
SEARCHES_KEPT = 32


class FleetCopy:
    def __init__(self):
        self.version = None
        self.entries = []
        self.searches = OrderedDict()  # (search, state) -> matching entries, in name order

    def _current(self, connection):
        version = connection.execute(_VERSION).scalar()
        if version is None or version != self.version:
            # name_key is lower(name) in collation "C": Python's str order is that byte order.
            entries = [Entry(row.name_key, row.state, row.os, row.runtime,
                             list_row(row.id, row.name, row.address, row.state, row.versions))
                       for row in connection.execute(_FLEET)]
            self.entries, self.searches, self.version = entries, OrderedDict(), version
        return self.entries, self.searches

    def matching(self, connection, search=None, state=None, os=None, runtime=None):
        """Servers whose name holds ``search`` (any case), in ``state``, on ``os``, with ``runtime``, in name order."""
        entries, searches = self._current(connection)
        key = (search.lower() if search else None, state, os, runtime)
        found = searches.get(key)
        if found is None:
            found = [e for e in entries if (not key[0] or key[0] in e.key) and (not state or e.state == state)
                     and (not os or e.os == os) and (not runtime or e.runtime == runtime)]
            searches[key] = found
            if len(searches) > SEARCHES_KEPT:
                searches.popitem(last=False)
        else:
            searches.move_to_end(key)
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
