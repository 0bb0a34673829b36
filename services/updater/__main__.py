from shared.runner import run

from services.updater.service import UpdaterService  # noqa: E402  (after the runner's monkey-patching)

run(UpdaterService)
