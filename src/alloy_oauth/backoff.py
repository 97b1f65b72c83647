"""Waiting between retries (token refreshes, webhook deliveries, proxied calls)."""

from __future__ import annotations

import math
import random


def backoff(base: float, failures: int, cap: float = math.inf) -> float:
    """Seconds to wait after `failures` failures in a row: `base` doubling with each failure,
    capped at `cap`, then jittered between half and all of it, so that many callers failing
    at once do not retry at once."""
    delay = min(cap, base * 2.0 ** max(0, failures - 1))
    return delay / 2 + random.uniform(0, delay / 2)
