from shared.runner import run

from services.notifier.service import NotifierService  # noqa: E402  (after the runner's monkey-patching)

run(NotifierService)
