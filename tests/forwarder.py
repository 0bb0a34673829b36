"""A TCP forwarder that a test can cut and restore, to make a server unreachable for one client only.

    forwarder = Forwarder(("127.0.0.1", 5432))       # listens on a free loopback port
    ... point the client at forwarder.port ...
    forwarder.cut()        # open connections drop, new ones are refused
    forwarder.restore()    # the same port accepts again
"""
import socket
import threading


class Forwarder:
    def __init__(self, target, address="127.0.0.1", port=0):
        self.target = target
        self.address = address
        self.port = port
        self.open = []
        self.listener = None
        self.restore()

    def restore(self):
        self.listener = socket.create_server((self.address, self.port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except (OSError, EOFError):  # cut: the listener was shut down
                listener.close()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except (OSError, EOFError):  # cut: eventlet ends a recv on a socket closed under it with EOFError
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # Closed by its only reader: a socket closed under a waiting green thread leaves the hub a
            # listener on a number the kernel reuses (shared/green.py), and a later read there fails.
            source.close()

    def cut(self):
        """Refuse new connections and drop the open ones, as a server that went away."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread, which closes it
        except OSError:
            self.listener.close()
        for s in self.open:  # each pipe then sees the end and closes its own socket
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.open = []
