"""The inventory's nameko dependency: its database, handed to each worker as the domain speaks it."""
from services.inventory.admin_settings import AdminSettings
from services.inventory.identity import Identity
from services.inventory.models import processed_events
from services.inventory.servers import Servers
from shared.config import amqp_vhost
from shared.crypto import SecretBox
from shared.dependencies import DatabaseSession
from shared.outbox import first_delivery


class InventoryData:
    """One worker's inventory: servers, identity and admin settings over the worker's session."""

    def __init__(self, session, secret_box, setting_defaults=None):
        self.session = session
        self.box = secret_box  # also seals the secrets a reply carries (shared/crypto.py: seal_for)
        self.identity = Identity(session)
        self.servers = Servers(session, secret_box, self.identity)
        self.settings = AdminSettings(session, secret_box, setting_defaults)

    def first_delivery(self, name, event):
        """False for an event this inventory handled already (the outbox delivers at least once)."""
        return first_delivery(self.session, processed_events, name, event)

    def commit(self):
        self.session.commit()

    def rollback(self):
        self.session.rollback()


class InventoryDatabase(DatabaseSession):
    """``db = InventoryDatabase(Base)``: a session per worker (DatabaseSession), handed over wrapped in
    InventoryData with the deployment's SecretBox, so no entrypoint builds its domain objects itself."""

    def setup(self):
        super().setup()
        self.box = SecretBox(self.container.config["SECRET_KEY"])
        # Agents use the control plane's own vhost unless an admin says otherwise: a second stack on
        # another vhost must not make its agents' broker users on the first one's.
        self.setting_defaults = {"rabbitmq": {"vhost": amqp_vhost(self.container.config["AMQP_URI"])}}

    def get_dependency(self, worker_ctx):
        return InventoryData(super().get_dependency(worker_ctx), self.box, self.setting_defaults)
