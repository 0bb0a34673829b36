"""System statistics read from /proc: load, disks, swap, memory, TCP connections by state."""
import os

TCP_STATES = {
    "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
    "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN",
    "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}
# Filesystems without a block device that still hold data worth watching.
NODEV_DATA_FILESYSTEMS = {"overlay", "nfs", "nfs4", "cifs", "smb3", "ceph", "glusterfs", "zfs", "btrfs", "fuseblk"}


def _unescape_mount(path):
    # /proc/mounts writes space, tab, newline and backslash as octal escapes.
    for code in ("040", "011", "012", "134"):
        path = path.replace("\\" + code, chr(int(code, 8)))
    return path


class SystemStats:
    """Reads one ``system`` message's data; ``proc`` and ``statvfs`` are injectable for tests."""

    def __init__(self, proc="/proc", statvfs=os.statvfs):
        self.proc = proc
        self.statvfs = statvfs

    def _read(self, name):
        with open(os.path.join(self.proc, name)) as handle:
            return handle.read()

    def collect(self):
        return {
            "load": self.load(),
            "disks": self.disks(),
            "swap": self.swap(),
            "memory": self.memory(),
            "connections": self.connections(),
        }

    def load(self):
        return [float(value) for value in self._read("loadavg").split()[:3]]

    def _virtual_filesystems(self):
        virtual = set()
        for line in self._read("filesystems").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "nodev":
                virtual.add(parts[1])
        return virtual - NODEV_DATA_FILESYSTEMS

    def disks(self):
        virtual, seen, disks = self._virtual_filesystems(), set(), []
        for line in self._read("mounts").splitlines():
            parts = line.split()
            if len(parts) < 3 or parts[2] in virtual:
                continue
            mount = _unescape_mount(parts[1])
            # A block device mounted twice (bind mounts) is one disk; others are told apart by mount point.
            identity = parts[0] if parts[0].startswith("/dev/") else mount
            if identity in seen:
                continue
            seen.add(identity)
            try:
                usage = self.statvfs(mount)
            except OSError:
                continue  # unmounted meanwhile, or not ours to read
            if usage.f_blocks == 0:
                continue
            disks.append({
                "mount": mount,
                "total_bytes": usage.f_blocks * usage.f_frsize,
                "used_bytes": (usage.f_blocks - usage.f_bfree) * usage.f_frsize,
            })
        return disks

    def _meminfo(self):
        values = {}
        for line in self._read("meminfo").splitlines():
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields:
                values[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
        return values

    def swap(self):
        info = self._meminfo()
        return {"total_bytes": info.get("SwapTotal", 0), "used_bytes": info.get("SwapTotal", 0) - info.get("SwapFree", 0)}

    def memory(self):
        info = self._meminfo()
        total = info.get("MemTotal", 0)
        # MemAvailable exists since Linux 3.14; older kernels get the classic estimate.
        available = info.get("MemAvailable", info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0))
        return {"total_bytes": total, "available_bytes": available, "used_bytes": total - available}

    def connections(self):
        counts = dict.fromkeys(TCP_STATES.values(), 0)
        for table in ("net/tcp", "net/tcp6"):
            try:
                lines = self._read(table).splitlines()[1:]
            except OSError:
                continue  # no IPv6 on this host
            for line in lines:
                fields = line.split()
                if len(fields) > 3 and fields[3] in TCP_STATES:
                    counts[TCP_STATES[fields[3]]] += 1
        return counts
