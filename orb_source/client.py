"""HTTP client for Orb's REST API: auth, pagination, retries and a client-side rate budget.

Everything that talks to the network lives here, so the sync strategies only see pages of
plain dicts. Money arrives as decimal strings or JSON numbers; bodies are decoded by `wire`,
which parses JSON numbers as `Decimal` so that no amount ever passes through a float.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import msgspec
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from . import wire

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.withorb.com/v1"
PAGE_SIZE = 100
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0

T = TypeVar("T")
Params = Mapping[str, str | int | bool | list[str]]
Page = list[dict[str, Any]]


class OrbError(Exception):
    """Base class of every error the client raises; messages never contain the API key."""


class OrbAuthError(OrbError):
    """The API key is missing or was rejected (401/403): retrying cannot help."""


class OrbForbidden(OrbAuthError):
    """403: the key may not read this resource (an account without the feature, say)."""


class OrbAPIError(OrbError):
    """Orb answered with an error status; `type`, `title` and `detail` come from its body."""

    def __init__(self, status: int, path: str, body: Mapping[str, Any] | None) -> None:
        self.status = status
        self.path = path
        self.type = str((body or {}).get("type", ""))
        title = (body or {}).get("title") or httpx.codes.get_reason_phrase(status)
        detail = (body or {}).get("detail")
        message = f"Orb API {status} on {path}: {title}"
        super().__init__(f"{message} ({detail})" if detail else message)


class OrbNotFound(OrbAPIError):
    """404: the object or its parent is gone (e.g. a customer deleted during the run)."""


class OrbTimeout(OrbError):
    """Every attempt at a request timed out."""


class OrbUnreachable(OrbError):
    """No HTTP answer at all after every retry: wrong base URL, DNS or network."""


class OrbResponseError(OrbError):
    """The response could not be used: a broken envelope or a cursor loop."""


class OrbMalformedResponse(OrbResponseError):
    """The body was not JSON (truncated by a proxy, say): worth another try."""


MAX_CONCURRENCY = 32
"""Requests in flight at once, by default."""
MAX_ATTEMPTS = 8
"""Attempts per request before a run fails, by default."""
REQUEST_TIMEOUT = 30.0
"""Seconds a request may take, by default."""


@dataclass(frozen=True)
class RateLimits:
    """Requests per second Orb allows for each rate class (orb-api.md §7, live keys)."""

    read: float = 100.0
    credit_balance: float = 10.0
    analytics: float = 10.0

    @classmethod
    def for_key(cls, key_kind: str) -> RateLimits:
        """Live, test-mode and trial keys have different documented budgets."""
        return {
            "live": cls(),
            "test": cls(read=50.0, credit_balance=5.0, analytics=5.0),
            "trial": cls(read=10.0, credit_balance=1.0, analytics=1.0),
        }[key_kind]

    def by_class(self) -> dict[str, float]:
        """Requests per second by rate class name (`rate_class`)."""
        return {
            "read": self.read,
            "credit_balance": self.credit_balance,
            "analytics": self.analytics,
        }


ANALYTICS = frozenset({"usage", "costs"})
"""The last path segment of Orb's Analytics class: subscription and customer usage and costs."""


def rate_class(path: str) -> str:
    """Orb's ledger class holds the credit-balance endpoints, its Analytics class the usage
    and costs of a subscription or customer; every other GET is `read`."""
    parts = path.strip("/").split("/")
    if parts[0] in ("customers", "subscriptions") and len(parts) >= 3 and parts[-1] in ANALYTICS:
        return "analytics"
    is_balance = parts[0] == "customers" and parts[-1] == "credits" and len(parts) in (3, 4)
    return "credit_balance" if is_balance else "read"


class TokenBucket:
    """A thread-safe token bucket that slows down when Orb answers 429 anyway.

    Each 429 halves the rate (never below a tenth of the configured rate); each success
    after that wins back 1% of the configured rate, so the budget recovers in seconds.
    """

    def __init__(self, rate: float) -> None:
        self.configured = rate
        self.rate = rate
        self._tokens = min(rate, 1.0)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                burst = max(1.0, self.rate / 10)
                self._tokens = min(burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
            time.sleep(wait)

    def slow_down(self) -> None:
        with self._lock:
            self.rate = max(self.configured / 10, self.rate / 2)
            self._tokens = min(self._tokens, 0.0)

    def recover(self) -> None:
        if self.rate < self.configured:
            with self._lock:
                self.rate = min(self.configured, self.rate + self.configured / 100)


class ServerClock:
    """Orb's clock, learned from the `Date` header of every answer.

    Watermarks are set on Orb's time, so a skewed local clock never makes a run skip rows.
    A `Date` is stamped before the answer travels and truncated to the second, so
    `Date - local arrival` never exceeds the true offset: the largest one seen is kept.
    """

    def __init__(self) -> None:
        self._offset: float | None = None
        self._lock = threading.Lock()

    def observe(self, date_header: str | None) -> None:
        if not date_header:
            return
        try:
            offset = parsedate_to_datetime(date_header).timestamp() - time.time()
        except (TypeError, ValueError):
            return
        with self._lock:
            if self._offset is None or offset > self._offset:
                self._offset = offset

    def orb_time(self, local: float) -> datetime | None:
        """Orb's time when `time.time()` read `local`; None until an answer carried a `Date`."""
        if self._offset is None:
            return None
        return datetime.fromtimestamp(local + self._offset, UTC)


REQUESTS_FOR: ContextVar[str | None] = ContextVar("orb_requests_for", default=None)
"""The table the requests made in this context serve, for the per-table counts of the run
summary. Work handed to other threads carries it along (`in_context`)."""


def counted_for(table: str, items: Iterator[T]) -> Iterator[T]:
    """Iterate `items` with every request it makes counted for `table`. Set around each step,
    not once: dlt may run each step of a generator on another of its threads."""
    while True:
        token = REQUESTS_FOR.set(table)
        try:
            item = next(items)
        except StopIteration:
            return
        finally:
            REQUESTS_FOR.reset(token)
        yield item


def in_context(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn` bound to the caller's context, to run on a pool thread (`pool.submit`)."""
    return functools.partial(contextvars.copy_context().run, fn)


@dataclass
class RequestStats:
    """Counts kept for the run summary and the benchmarks."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    by_table: dict[str, int] = field(default_factory=dict)
    """Requests per table (`REQUESTS_FOR`); the shared customer listing counts for the table
    that asked for it first."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, klass: str) -> None:
        table = REQUESTS_FOR.get()
        with self._lock:
            self.requests += 1
            self.by_class[klass] = self.by_class.get(klass, 0) + 1
            if table is not None:
                self.by_table[table] = self.by_table.get(table, 0) + 1

    def count_retry(self, throttled: bool) -> None:
        with self._lock:
            self.retries += 1
            self.throttled += throttled

    def format(self) -> str:
        classes = ", ".join(f"{name} {count:,}" for name, count in sorted(self.by_class.items()))
        return (
            f"requests {self.requests:,} ({classes}); retried {self.retries:,},"
            f" of which {self.throttled:,} after a 429"
        )


def _parse_json(content: bytes, path: str, decode: Callable[[bytes], Any]) -> Any:
    try:
        return decode(content)
    except msgspec.DecodeError as exc:
        raise OrbMalformedResponse(f"Orb returned malformed JSON on {path}: {exc}") from None


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class _RetryableStatus(Exception):
    """Internal: a status worth retrying, carrying the server's Retry-After if any."""

    def __init__(self, error: OrbAPIError, retry_after: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _is_retryable(exc: BaseException) -> bool:
    retryable = (
        _RetryableStatus | OrbMalformedResponse | httpx.TimeoutException | httpx.TransportError
    )
    return isinstance(exc, retryable)


class OrbClient:
    """A pooled, rate-budgeted, retrying client for Orb's list and retrieve endpoints."""

    def __init__(
        self,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        rate_limits: RateLimits | None = None,
        max_concurrency: int = MAX_CONCURRENCY,
        max_attempts: int = MAX_ATTEMPTS,
        timeout: float = REQUEST_TIMEOUT,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_log_level: int = logging.INFO,
        transport: httpx.BaseTransport | None = None,
        stats: RequestStats | None = None,
        decoders: Mapping[str, Callable[[bytes], Any]] | None = None,
    ) -> None:
        """`decoders`: list paths whose pages have a decoder of their own
        (`catalog.PAGE_DECODERS`); every other body goes to `wire.decode`."""
        if not api_key:
            raise OrbAuthError("No Orb API key: set ORB_API_KEY or sources.orb.api_key.")
        limits = rate_limits or RateLimits()
        self.base_url = base_url.rstrip("/")
        self.buckets = {klass: TokenBucket(rate) for klass, rate in limits.by_class().items()}
        self.stats = stats or RequestStats()
        self.decoders = decoders or {}
        self.clock = ServerClock()
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_log_level = retry_log_level
        """A preflight check logs its retries at DEBUG: it reports its outcome in one line."""
        self._in_flight = threading.BoundedSemaphore(max_concurrency)
        self._max_concurrency = max_concurrency

        def connect() -> httpx.Client:
            # a closure, not a partial: a partial's repr would show the key
            return httpx.Client(
                base_url=self.base_url,
                headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx.Limits(
                    max_connections=max_concurrency, max_keepalive_connections=max_concurrency
                ),
                transport=transport,
                follow_redirects=False,
            )

        self._connect = connect
        self._http = connect()
        self._prefetch = self._prefetcher()

    def __repr__(self) -> str:
        return f"OrbClient(base_url={self.base_url!r})"

    def _prefetcher(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="orb-prefetch")

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    def open(self) -> None:
        """Connections and prefetch threads anew after `close`: a source's resources may run
        one after another, each closing what it opened (`SyncContext.lease`)."""
        if self.is_closed:
            self._http = self._connect()
            self._prefetch = self._prefetcher()

    def close(self) -> None:
        self._prefetch.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def __enter__(self) -> OrbClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, path: str, params: Params | None = None) -> Any:
        """GET one resource or page, retrying transient failures with backoff."""
        retrying = Retrying(
            retry=retry_if_exception(_is_retryable),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._get_once, path, params or {})
        except _RetryableStatus as exc:
            raise exc.error from None
        except httpx.TimeoutException:
            raise OrbTimeout(f"Timed out on {path} after {self.max_attempts} attempts") from None
        except httpx.TransportError as exc:
            raise OrbUnreachable(
                f"Cannot reach Orb at {self.base_url} ({_describe(exc)})"
            ) from None

    def paginate(self, path: str, params: Params | None = None) -> Iterator[Page]:
        """Yield each page's `data`, following `next_cursor` until Orb says there is no more.

        The next page is requested while the caller works on the current one, so a long
        listing runs at the server's pace rather than at the sum of both.
        """
        query: dict[str, Any] = {**(params or {}), "limit": PAGE_SIZE}
        seen_cursors: set[str] = set()
        body = self.get(path, query)
        while True:
            data, cursor = _unwrap_page(body, path)
            if cursor and data:
                if cursor in seen_cursors:
                    raise OrbResponseError(f"Orb repeated a pagination cursor on {path}; stopping")
                seen_cursors.add(cursor)
                following = self._prefetch.submit(
                    in_context(self.get), path, {**query, "cursor": cursor}
                )
            if data:
                yield data
            if not cursor or not data:
                return
            body = following.result()

    def _get_once(self, path: str, params: Params) -> Any:
        klass = rate_class(path)
        bucket = self.buckets[klass]
        bucket.acquire()
        with self._in_flight:
            self.stats.count(klass)
            with self._http.stream("GET", path, params=_encode_params(params)) as response:
                content = b"".join(response.iter_bytes())
        return self._handle(response, content, path, bucket)

    def _handle(
        self, response: httpx.Response, content: bytes, path: str, bucket: TokenBucket
    ) -> Any:
        """The parsed body, or the error it stands for. The body is read apart from the
        response: httpx's response and its stream refer to each other, so a response lives
        until Python's cyclic collector runs, and one that kept its body would hold a page
        of megabytes that long."""
        status = response.status_code
        if status < 400:
            bucket.recover()
            self.clock.observe(response.headers.get("date"))
            return _parse_json(content, path, self.decoders.get(path, wire.decode))
        body = _error_body(content)
        if status == 403:
            raise OrbForbidden(_auth_message(status, body))
        if status == 401:
            raise OrbAuthError(_auth_message(status, body))
        if status == 404:
            raise OrbNotFound(status, path, body)
        error = OrbAPIError(status, path, body)
        if status in RETRYABLE_STATUSES:
            if status == 429:
                bucket.slow_down()
            raise _RetryableStatus(error, _retry_after_seconds(response))
        raise error

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableStatus) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.stats.count_retry(isinstance(exc, _RetryableStatus) and exc.error.status == 429)
        logger.log(
            self.retry_log_level,
            "retrying after %s (attempt %d)",
            _describe(exc),
            state.attempt_number,
        )


def _unwrap_page(body: Any, path: str) -> tuple[Page, str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise OrbResponseError(f"Orb returned a page without a `data` list on {path}")
    meta = body.get("pagination_metadata") or {}
    cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
    return body["data"], cursor if isinstance(cursor, str) else None


def _encode_params(params: Params) -> httpx.QueryParams:
    """Orb's array style: `status[]=draft&status[]=void`; booleans as `true`/`false`."""
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for key, value in params.items():
        if isinstance(value, list):
            pairs.extend((key if key.endswith("[]") else f"{key}[]", str(v)) for v in value)
        elif isinstance(value, bool):
            pairs.append((key, "true" if value else "false"))
        else:
            pairs.append((key, str(value)))
    return httpx.QueryParams(pairs)


def _error_body(content: bytes) -> dict[str, Any] | None:
    try:
        body = wire.decode(content)
    except msgspec.DecodeError:
        return None
    return body if isinstance(body, dict) else None


def _auth_message(status: int, body: Mapping[str, Any] | None) -> str:
    detail = (body or {}).get("detail") or (body or {}).get("title") or ""
    reason = "rejected" if status == 401 else "not allowed to read this resource"
    suffix = f" ({detail})" if detail else ""
    return f"Orb API key {reason} (HTTP {status}){suffix}."


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, _RetryableStatus):
        return str(exc.error)
    if exc is None:
        return "unknown error"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
