from shared.runner import run

from services.inventory.service import InventoryService  # noqa: E402  (after the runner's monkey-patching)

run(InventoryService)
