"""Fault injection: the transport and server misbehaviour a robust Orb client has to survive."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass
from typing import Literal

from orb_source.sandbox.api import ApiError, Reply, error_reply

FaultKind = Literal["status", "slow", "drop", "malformed", "repeat_cursor"]
KINDS = ("status", "slow", "drop", "malformed", "repeat_cursor")
STATUS_ERRORS = {
    400: ("400-request-validation-errors", "Request validation error"),
    429: ("429-too-many-requests", "Too many requests"),
    500: ("500-internal-server-error", "Internal server error"),
    502: ("502-bad-gateway", "Bad gateway"),
    503: ("503-service-unavailable", "Service unavailable"),
    504: ("504-gateway-timeout", "Gateway timeout"),
}
MALFORMED_BODY = b'{"data": [{"id": "truncated", "name": '


@dataclass
class Fault:
    """One kind of misbehaviour, for requests whose path (without /v1) matches `path`.

    `times` caps how many requests it hits (None = unlimited); `probability` uses a seeded rng.
    `status` and `retry_after` apply to kind "status", `delay` to kind "slow".
    """

    kind: FaultKind
    path: str | None = None
    times: int | None = None
    probability: float = 1.0
    status: int = 500
    retry_after: float | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.kind == "status" and self.status not in STATUS_ERRORS:
            raise ValueError(f"unsupported fault status {self.status}")


@dataclass
class _Armed:
    fault: Fault
    pattern: re.Pattern[str] | None
    remaining: int | None


class FaultInjector:
    """Picks the fault, if any, that hits a request; thread-safe and deterministic for a seed."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self._armed: list[_Armed] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        pattern = None if fault.path is None else re.compile(fault.path)
        with self._lock:
            self._armed.append(_Armed(fault, pattern, fault.times))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def pick(self, path: str) -> Fault | None:
        """The first armed fault matching the path that fires now (using up one of its `times`)."""
        with self._lock:
            for armed in self._armed:
                if armed.remaining == 0 or (
                    armed.pattern is not None and not armed.pattern.search(path)
                ):
                    continue
                if self._rng.random() >= armed.fault.probability:
                    continue
                if armed.remaining is not None:
                    armed.remaining -= 1
                return armed.fault
        return None


def status_reply(fault: Fault, route: str) -> Reply:
    """An Orb-shaped error for a "status" fault, with Retry-After or Transient-Error headers."""
    kind, title = STATUS_ERRORS[fault.status]
    headers: dict[str, str] = {}
    if fault.status == 429 and fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    if fault.status == 500:
        headers["Transient-Error"] = "true"
    error = ApiError(fault.status, kind, title, f"Injected {fault.status} response")
    return error_reply(error, route, headers)
