"""The notifier's timing policy, from the ``notifier`` section of the configuration."""
import random
from dataclasses import dataclass, fields
from datetime import timedelta


@dataclass(frozen=True)
class Policy:
    # A channel's window stays open while events keep coming less than digest_window_seconds
    # apart, up to digest_max_seconds; what it collected goes out as one message (a digest if
    # more than one), so a burst of any length is one message and a lone event waits one window.
    digest_window_seconds: float = 5.0
    digest_max_seconds: float = 60.0
    # A server changing state more than flap_changes times within flap_window_seconds is flapping:
    # one notice, then silence until it has been stable for flap_window_seconds.
    flap_window_seconds: float = 600.0
    flap_changes: int = 4
    # Delivery: attempt, then wait backoff_base * 2^(n-1) (capped, with jitter); dead after max_attempts.
    max_attempts: int = 8
    backoff_base_seconds: float = 5.0
    backoff_max_seconds: float = 900.0
    poll_seconds: float = 1.0  # how often each replica looks for due deliveries
    received_retention_days: float = 7.0  # how long a seen event is remembered, to drop redeliveries

    @classmethod
    def from_config(cls, section):
        known = {f.name: f.type for f in fields(cls)}
        return cls(**{key: (int if known[key] in (int, "int") else float)(value)
                      for key, value in (section or {}).items() if key in known})

    @property
    def digest_window(self):
        return timedelta(seconds=self.digest_window_seconds)

    @property
    def digest_max(self):
        return timedelta(seconds=self.digest_max_seconds)

    @property
    def received_retention(self):
        return timedelta(days=self.received_retention_days)

    @property
    def flap_window(self):
        return timedelta(seconds=self.flap_window_seconds)

    def backoff(self, attempts, rng=random.random):
        """Delay before the next attempt after ``attempts`` failures: exponential, capped, equal jitter."""
        ceiling = min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (attempts - 1))
        return timedelta(seconds=ceiling / 2 + rng() * ceiling / 2)
