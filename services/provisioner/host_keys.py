"""Pinned SSH host keys: the key a server showed on first contact; another key is refused."""
import base64

from services.provisioner.models import HostKey
from shared.ssh import fingerprint


class HostKeys:
    def __init__(self, session_factory):
        self.Session = session_factory

    def pinned(self, server_id):
        """(key_type, base64) or None."""
        with self.Session() as session:
            row = session.get(HostKey, server_id)
            return (row.key_type, row.key_base64) if row else None

    def pin(self, server_id, address, port, key):
        with self.Session() as session:
            session.merge(HostKey(server_id=server_id, address=address, port=port, key_type=key.get_name(),
                                  key_base64=base64.b64encode(key.asbytes()).decode(), fingerprint=fingerprint(key)))
            session.commit()

    def forget(self, server_id):
        with self.Session() as session:
            row = session.get(HostKey, server_id)
            if row is not None:
                session.delete(row)
            session.commit()
            return row is not None
