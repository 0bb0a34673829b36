from shared.runner import run

from services.monitoring_ingest.service import MonitoringIngestService  # noqa: E402  (after the runner's monkey-patching)

run(MonitoringIngestService)
