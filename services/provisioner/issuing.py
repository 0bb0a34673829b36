"""Issuing a server's setup bundle: a fresh agent token, its own RabbitMQ user, the tar, and (pull mode)
monitoring-ingest told where to fetch the statistics with that token."""
import hashlib
import logging

from services.provisioner.bundle import BundleBuilder, agent_config, default_versions, monitoring_url
from services.provisioner.models import Bundle
from services.provisioner.rabbitmq_users import RabbitMQUsers
from shared.crypto import AGENT_TOKEN, RABBITMQ_PASSWORD, backup_enrollment_token
from shared.errors import ServerNotFound, ServiceUnavailable

log = logging.getLogger("provisioner")


def communication_type(server, monitoring):
    """The server's own choice, or the monitoring settings' default."""
    return server.get("communication_type") or monitoring.get("communication_type") or "push"


def management_url(configured, rabbitmq, own_broker_host):
    """Where agents' users are made: the admin setting, the provisioner's, else the control plane's own broker.
    Never ``rabbitmq.host``: that is the agents' address, which the control plane's account may not use."""
    return rabbitmq.get("management_url") or configured or f"http://{own_broker_host}:15672"


class BundleIssuer:
    """``inventory`` is an RPC proxy (issue_agent_token, effective_settings, broker_settings), ``secret_box`` opens
    what its answers carry sealed; the rest is injected."""

    def __init__(self, session_factory, inventory, secret_box, public_url, management_url_setting=None,
                 fallback_credentials=None, builder=None, users_factory=RabbitMQUsers, secret_key=None,
                 own_broker_host="127.0.0.1", monitoring=None):
        self.Session = session_factory
        self.inventory = inventory
        self.secret_box = secret_box
        self.monitoring = monitoring  # RPC proxy of monitoring_ingest (set_pull_target, remove_pull_target)
        self.public_url = public_url
        self.management_url_setting = management_url_setting
        self.own_broker_host = own_broker_host
        self.fallback_credentials = fallback_credentials or ("guest", "guest")
        self.builder = builder or BundleBuilder()
        self.users_factory = users_factory
        self.secret_key = secret_key

    def rabbitmq_users(self, rabbitmq=None):
        """RabbitMQUsers for the agents' broker, as ``rabbitmq`` (inventory's broker_settings; asked if none) says."""
        rabbitmq = rabbitmq or self.inventory.broker_settings()
        user, password = rabbitmq["user"], self.secret_box.open_sealed(RABBITMQ_PASSWORD, rabbitmq.get("password"))
        if not password:  # no admin password saved: the control plane's own broker account
            user, password = self.fallback_credentials
        return self.users_factory(management_url(self.management_url_setting, rabbitmq, self.own_broker_host),
                                  user, password, rabbitmq["vhost"])

    def issue(self, server, purpose, created_by):
        """(filename, tar bytes, sha256) for ``server`` = {id, runtime, components, ssh_user, monitoring_api_ip}."""
        rabbitmq, monitoring = self.inventory.broker_settings(), self.inventory.effective_settings()["monitoring"]
        users = self.rabbitmq_users(rabbitmq)
        rabbit_user, rabbit_password = users.ensure_agent_user(server["id"])
        try:
            token = self.inventory.issue_agent_token(server["id"])
        except ServerNotFound:  # deleted meanwhile: its user must not outlive it
            users.delete_agent_user(server["id"])
            raise
        mode = communication_type(server, monitoring)
        config = agent_config(
            server["id"], self.secret_box.open_sealed(AGENT_TOKEN, token["token"]),
            dict(monitoring, communication_type=mode),
            monitoring_url(server.get("monitoring_api_ip") or monitoring.get("default_api_ip"), self.public_url),
            {"host": rabbitmq["host"], "port": rabbitmq["port"], "vhost": rabbitmq["vhost"],
             "user": rabbit_user, "password": rabbit_password},
        )
        self._pull_target(server, mode, token["token"], monitoring)  # sealed as inventory issued it
        sudo_user = server["ssh_user"] if server["ssh_user"] != "root" else "steward"
        backup = None
        if "backup" in server["components"]:
            # Only the hash ships: the backup service derives the token itself to enroll (shared/crypto.py).
            token_hash = hashlib.sha256(backup_enrollment_token(self.secret_key, server["id"]).encode()).hexdigest()
            backup = {"enrollment_token_sha256": token_hash}
        filename, data, sha256 = self.builder.build(server, config, default_versions(), sudo_user, backup)
        with self.Session() as session:
            session.add(Bundle(server_id=server["id"], purpose=purpose, sha256=sha256, size_bytes=len(data),
                               agent_token_id=token["token_id"], rabbitmq_user=rabbit_user, created_by=created_by))
            session.commit()
        return filename, data, sha256

    def _pull_target(self, server, mode, agent_token_sealed, monitoring):
        """Pull mode: monitoring-ingest polls the agent with the token just issued (older ones stop working).
        Push mode: a target left from an earlier pull-mode install goes."""
        if self.monitoring is None:
            return
        if mode == "pull":
            interval = min(monitoring.get("system_interval_seconds", 60), monitoring.get("dns_interval_seconds", 60))
            self.monitoring.set_pull_target(server["id"], server["address"], agent_token_sealed, interval)
            return
        try:
            self.monitoring.remove_pull_target(server["id"])
        except ServiceUnavailable as exc:  # push mode does not need monitoring-ingest to install
            log.warning("could not remove a pull target of server %s: %s", server["id"], exc.message)
