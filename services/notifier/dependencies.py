"""nameko pieces of the notifier: its policy from the configuration, and a timer whose interval is configured."""
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider
from nameko.timer import Timer

from services.notifier.policy import Policy
from shared.config import public_url


def utcnow():
    return datetime.now(timezone.utc)


class Settings(DependencyProvider):
    """The notifier's policy and the public URL that links in messages point to."""

    def setup(self):
        self.policy = Policy.from_config(self.container.config.get("notifier"))
        self.public_url = public_url(self.container.config)

    def get_dependency(self, worker_ctx):
        return self


class PollTimer(Timer):
    """A timer that ticks every ``notifier.poll_seconds`` of the configuration."""

    def __init__(self, **kwargs):
        super().__init__(interval=Policy.poll_seconds, **kwargs)

    def setup(self):
        self.interval = Policy.from_config(self.container.config.get("notifier")).poll_seconds


poll_timer = PollTimer.decorator
