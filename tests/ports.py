"""A port nothing listens on at the moment, for a process a test starts (the kernel picks it)."""
import socket


def free_port(kind=socket.SOCK_STREAM, address="127.0.0.1"):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]
