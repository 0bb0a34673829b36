"""Records what knotd's mod-dnstap writes to its reader, for the decoder's tests:
``PYTHONPATH=.:tests/agent .venv/bin/python tests/agent/capture_knot_frames.py``.

knotd logs queries and responses (with the query repeated, so that a decoder that
counts responses counts wrong) while the lab's PLAN is sent over UDP and again over
TCP; then knotd stops, closing the stream with STOP. Written to data/: the Frame
Streams bytes as received (READY, START, the data frames, STOP) and, as JSON, the
knotd version and per record the sender's moments around its last query."""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

from agent.dnstap import read_queries
from agent_lab import PLAN, Knot, send_queries

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


class Recording:
    """The accepted connection, keeping every byte the writer sent."""

    def __init__(self, connection):
        self.connection = connection
        self.received = bytearray()

    def recv(self, size):
        chunk = self.connection.recv(size)
        self.received += chunk
        return chunk

    def sendall(self, data):
        self.connection.sendall(data)


def main():
    version = subprocess.run(["knotd", "--version"], capture_output=True, text=True, check=True).stdout.split()[-1]
    with tempfile.TemporaryDirectory(prefix="capture-dnstap-") as directory:
        path = os.path.join(directory, "dnstap.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(1)
        os.makedirs(os.path.join(directory, "knot"))
        knot = Knot(os.path.join(directory, "knot"), path, log_responses=True).start()
        connection, _ = server.accept()
        recording, queries = Recording(connection), []
        reader = threading.Thread(target=read_queries, args=(recording, queries.extend))
        reader.start()
        last = {}
        for tcp in (False, True):
            last.update(send_queries(knot, PLAN, tcp=tcp))
        knot.stop()
        reader.join(30)
    name = "knotd-%s" % version
    with open(os.path.join(DATA, name + ".fstrm"), "wb") as handle:
        handle.write(bytes(recording.received))
    with open(os.path.join(DATA, name + ".json"), "w") as handle:
        json.dump({"knotd": version, "plan_times": 2, "last_query": {
            "%s %s" % key: [before.isoformat(), after.isoformat()] for key, (before, after) in sorted(last.items())
        }}, handle, indent=1)
    print("%d bytes, %d queries decoded, into %s/%s.*" % (len(recording.received), len(queries), DATA, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
