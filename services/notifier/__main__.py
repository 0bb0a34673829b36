"""``python -m services.<name>``: nameko's runner with Steward's configuration (shared.config.run_service)."""
from shared.config import run_service

run_service(__package__)
