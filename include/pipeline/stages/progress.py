"""Progress of long work in the log: counts and rates every few seconds, and a final line."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class Progress:
    """Logs counts and rates every few seconds, and a final line."""

    def __init__(self, what: str, every: float = 5.0) -> None:
        self.what, self.every = what, every
        self.count = 0
        self.started = self.logged = time.monotonic()

    def add(self, n: int) -> None:
        """Counts ``n`` more; logs the count and rate once the last line is a few seconds old."""
        self.count += n
        now = time.monotonic()
        if now - self.logged >= self.every:
            self.logged = now
            log.info("%s: %d so far (%.0f/s)", self.what, self.count, self.rate)

    @property
    def seconds(self) -> float:
        """Seconds since the work started."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Items per second so far."""
        return self.count / max(self.seconds, 1e-9)

    def done(self) -> None:
        """Logs the final line: the count, the time it took and the rate."""
        log.info("%s: %d in %.1fs (%.0f/s)", self.what, self.count, self.seconds, self.rate)
