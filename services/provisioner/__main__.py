from shared.runner import run

from services.provisioner.service import ProvisionerService  # noqa: E402  (after the runner's monkey-patching)

run(ProvisionerService)
