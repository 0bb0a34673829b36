"""Reconcile and inspect: what the control plane stores beside what the fleet reports, and the
disagreements between them, fixing the safe ones.

A finding is ``{kind, server_id, detail, fixable}``. Fixable ones are those whose fix only makes
the stored side say what is true: a stored version set to what the server reports, a broker user
or an agent token of a server that no longer exists removed, a task of a replica that is gone
failed. Nothing here touches a server itself.
"""


def server_disagreements(stored, reported, broker_user_present):
    """Why a server's stored record and its reports disagree (texts; none: they agree)."""
    found = []
    stored_versions = {c["name"]: c["version"] for c in stored["components"] if c["state"] == "running"}
    if reported["state"] == "up" and reported["versions"] != stored_versions:
        found.append(f"stored running versions {stored_versions or 'none'} but it reports "
                     f"{reported['versions'] or 'none'}")
    expected = {"up": ("running", "stopped"), "down": ("down",), "unknown": ("unknown", "running", "stopped")}
    if stored["state"] not in expected[reported["state"]]:
        found.append(f"stored state {stored['state']} but its liveness is {reported['state']}")
    if reported["state"] != "unknown" and not broker_user_present:
        found.append("it sends heartbeats but has no broker user (its statistics are refused)")
    return found


class Reconciler:
    """``inventory`` and ``monitoring`` are RPC proxies; ``users()`` the agents' RabbitMQUsers;
    ``gone_holders()`` the replicas that are gone and left install tasks running, ``reap()`` fails those."""

    def __init__(self, inventory, monitoring, users, gone_holders, reap):
        self.inventory = inventory
        self.monitoring = monitoring
        self.users = users
        self.gone_holders = gone_holders
        self.reap = reap

    def findings(self):
        fleet = self.inventory.fleet_versions()
        reported = self.monitoring.fleet_status([s["id"] for s in fleet])
        found = []
        for server in fleet:
            status = reported.get(str(server["id"]))
            if status and status["state"] == "up" and status["versions"] != server["versions"]:
                found.append(_finding("stored_version_differs", server["id"],
                                      f"{server['name']}: stored {server['versions'] or 'none'}, "
                                      f"reported {status['versions'] or 'none'}", versions=status["versions"]))
        existing = {s["id"] for s in fleet}
        for server_id in self.users().leftover_server_ids(lambda: existing):
            found.append(_finding("broker_user_without_server", server_id,
                                  f"RabbitMQ user of server {server_id}, which no longer exists"))
        for token_id in self.inventory.orphan_agent_tokens():
            found.append(_finding("token_of_deleted_server", None, f"agent token {token_id} of no server",
                                  token_id=token_id))
        for replica in self.gone_holders():
            found.append(_finding("task_of_dead_replica", None,
                                  f"install tasks left running by replica {replica}, which is gone"))
        return found

    def fix(self, findings):
        """Fixes each finding; returns them with ``fixed`` (True, or False with ``problem``)."""
        kinds = {f["kind"] for f in findings}
        done = []
        for finding in findings:
            try:
                if finding["kind"] == "stored_version_differs":
                    self.inventory.record_reported_versions(finding["server_id"], finding.pop("versions"))
                elif finding["kind"] == "broker_user_without_server":
                    self.users().delete_agent_user(finding["server_id"])
                done.append(dict(finding, fixed=True))
            except Exception as exc:  # noqa: BLE001 - one fix failing must not hide the others
                done.append(dict(finding, fixed=False, problem=str(exc)))
        if "token_of_deleted_server" in kinds:
            self.inventory.orphan_agent_tokens(True)
        if "task_of_dead_replica" in kinds:
            self.reap()
        return done


def _finding(kind, server_id, detail, **extra):
    return dict({"kind": kind, "server_id": server_id, "detail": detail, "fixable": True}, **extra)
