"""The provisioner's nameko dependency: shared/'s task runner, running install tasks."""
from urllib.parse import urlsplit

from services.provisioner.cleanup import Cleanup
from services.provisioner.host_keys import HostKeys
from services.provisioner.install import Installer
from services.provisioner.issuing import BundleIssuer
from services.provisioner.models import Lease, Task, TaskStep
from shared.config import public_url
from shared.crypto import SecretBox
from shared.task_runner import TaskRunner, TaskWorkers


class Provisioning(TaskWorkers):
    """What the service's entrypoints use: the task store, the issuer, cleanup, host keys, and ``kick``."""

    def __init__(self, runner):
        super().__init__(runner)
        self.issuer = runner.issuer
        self.secret_box = runner.secret_box
        self.cleanup = runner.cleanup
        self.host_keys = runner.host_keys


class InstallRunner(TaskRunner):
    task_model, step_model, lease_model = Task, TaskStep, Lease
    kinds = ("install",)
    finished_event = "install_finished"
    section = "provisioner"
    slots_option = "max_parallel_installs"

    def setup(self):
        super().setup()
        config = self.container.config
        self.host_keys = HostKeys(self.Session)
        # Installs reach inventory through the container's RPC client (shared/'s one way).
        inventory = self.rpc.client().service("inventory")
        amqp = urlsplit(config["AMQP_URI"])
        self.secret_box = SecretBox(config["SECRET_KEY"])  # opens what inventory hands over sealed
        self.issuer = BundleIssuer(self.Session, inventory, self.secret_box, public_url(config),
                                   self.options.get("rabbitmq_management_url") or None,
                                   (amqp.username or "guest", amqp.password or "guest"), secret_key=config["SECRET_KEY"],
                                   own_broker_host=amqp.hostname or "127.0.0.1",
                                   monitoring=self.rpc.client().service("monitoring_ingest"))
        self.cleanup = Cleanup(self.Session, self.host_keys, inventory, self.issuer.rabbitmq_users, self.secret_box)
        self.installer = Installer(self.store, self.host_keys, self.issuer, self.task_client("inventory"), self.emit, self.secret_box,
                                   holder=self.holder, may_act=self.lease.held,
                                   cancel_point=self.cancel_point)

    def run(self, task_id):
        self.installer.run(task_id)

    def get_dependency(self, worker_ctx):
        return Provisioning(self)
