"""The backup-server daemon: runs on a backup server, standard library only (Python 3.8+).

It stores restic repositories behind restic's REST protocol, with users of its own
(an append-only user for the control plane, a prune user) in its own SQLite database,
checks stored objects against their names (restic names every object by its SHA-256)
and watches its disk. It never holds anything that decrypts a backup.
"""

VERSION = "1.0.0"
