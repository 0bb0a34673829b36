"""Issuing a server's setup bundle: a fresh agent token, its own RabbitMQ user, the tar."""
from services.provisioner.bundle import BundleBuilder, agent_config, monitoring_url
from services.provisioner.components import default_versions
from services.provisioner.models import Bundle
from services.provisioner.rabbitmq_users import RabbitMQUsers


def management_url(configured, rabbitmq):
    return configured or f"http://{rabbitmq['host']}:15672"


class BundleIssuer:
    """``inventory`` is an RPC proxy (issue_agent_token, effective_settings); the rest is injected."""

    def __init__(self, session_factory, inventory, public_url, management_url_setting=None, fallback_credentials=None,
                 builder=None, users_factory=RabbitMQUsers):
        self.Session = session_factory
        self.inventory = inventory
        self.public_url = public_url
        self.management_url_setting = management_url_setting
        self.fallback_credentials = fallback_credentials or ("guest", "guest")
        self.builder = builder or BundleBuilder()
        self.users_factory = users_factory

    def rabbitmq_users(self, rabbitmq):
        user, password = rabbitmq["user"], rabbitmq.get("password")
        if not password:  # no admin password saved: the control plane's own broker account
            user, password = self.fallback_credentials
        return self.users_factory(management_url(self.management_url_setting, rabbitmq), user, password,
                                  rabbitmq["vhost"])

    def issue(self, server, purpose, created_by):
        """(filename, tar bytes, sha256) for ``server`` = {id, runtime, components, ssh_user, monitoring_api_ip}."""
        settings = self.inventory.effective_settings()
        rabbitmq, monitoring = settings["rabbitmq"], settings["monitoring"]
        rabbit_user, rabbit_password = self.rabbitmq_users(rabbitmq).ensure_agent_user(server["id"])
        token = self.inventory.issue_agent_token(server["id"])
        config = agent_config(
            server["id"], token["token"], monitoring,
            monitoring_url(server.get("monitoring_api_ip") or monitoring.get("default_api_ip"), self.public_url),
            {"host": rabbitmq["host"], "port": rabbitmq["port"], "vhost": rabbitmq["vhost"],
             "user": rabbit_user, "password": rabbit_password},
        )
        sudo_user = server["ssh_user"] if server["ssh_user"] != "root" else "steward"
        filename, data, sha256 = self.builder.build(server, config, default_versions(), sudo_user)
        with self.Session() as session:
            session.add(Bundle(server_id=server["id"], purpose=purpose, sha256=sha256, size_bytes=len(data),
                               agent_token_id=token["token_id"], rabbitmq_user=rabbit_user, created_by=created_by))
            session.commit()
        return filename, data, sha256
