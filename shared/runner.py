"""Run one nameko service with Steward's configuration and JSON logging.

``python -m services.<name>`` calls ``run(ServiceClass)``; several replicas may
run side by side as competing consumers.
"""
from shared import green

green.patch()  # noqa: E402 - must precede every other import

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402

from nameko.runners import ServiceRunner  # noqa: E402

from shared.config import load_settings  # noqa: E402
from shared.logs import configure_logging  # noqa: E402


def run(service_cls):
    parser = argparse.ArgumentParser(description=f"Run the Steward {service_cls.name} service")
    parser.add_argument("--config", help="YAML configuration (default: $STEWARD_CONFIG or config/steward.yaml)")
    args = parser.parse_args()
    settings = load_settings(args.config)
    configure_logging(service_cls.name, settings.get("LOG_LEVEL", "INFO"))
    log = logging.getLogger(service_cls.name)

    runner = ServiceRunner(settings)
    runner.add_service(service_cls)

    def shutdown(signum, frame):
        # Graceful: finish running workers; unacknowledged messages go back to the queue.
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    log.info("service started")
    runner.wait()
    log.info("service stopped")
