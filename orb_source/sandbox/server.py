"""A threaded HTTP server speaking the Orb API from an Account, with rate limits, faults, stats."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from orb_source.sandbox.account import Account
from orb_source.sandbox.api import UNKNOWN_ROUTE, Api, ApiError, Query, Reply, error_reply, resolve
from orb_source.sandbox.faults import MALFORMED_BODY, Fault, FaultInjector, status_reply
from orb_source.sandbox.generator import generate_account

BASE_PATH = "/v1"
CREDIT_BALANCE_ROUTE = "/customers/{id}/credits"
ANALYTICS_ROUTES = frozenset({"/subscriptions/{id}/usage", "/subscriptions/{id}/costs"})
"""Orb's "Analytics" rate class (10 requests/s live); event volume stays a plain read."""
Hook = Callable[[str, Query], None]


@dataclass
class Stats:
    """Request counters; updated under the server's stats lock."""

    requests: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    rows_by_route: dict[str, int] = field(default_factory=dict)
    status_counts: dict[int, int] = field(default_factory=dict)
    rejected_429: int = 0
    faults_served: dict[str, int] = field(default_factory=dict)
    """Requests each fault kind hit ("status", "slow", "drop", "malformed", "repeat_cursor")."""
    log: list[tuple[float, str, int]] = field(default_factory=list)
    """(time.monotonic() at arrival, path without /v1, status) of every request, in reply order."""


def rate_class(route: str) -> str:
    """The rate class of a route template, as `rate_limits` names them: Orb limits customer
    credit balances ("credit_balance") and usage and costs ("analytics") apart from the other
    reads ("read")."""
    if route == CREDIT_BALANCE_ROUTE:
        return "credit_balance"
    return "analytics" if route in ANALYTICS_ROUTES else "read"


class RateLimiter:
    """Token buckets per rate class (burst = the rate): excess requests get 429 like Orb's."""

    def __init__(self, rates: dict[str, float] | None) -> None:
        self._rates = dict(rates or {})
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, rate_class: str) -> float | None:
        """None if the request may proceed, else the seconds until a token frees up."""
        rate = self._rates.get(rate_class)
        if rate is None:
            return None
        capacity = max(rate, 1.0)
        with self._lock:
            now = time.monotonic()
            tokens, last = self._buckets.get(rate_class, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[rate_class] = (tokens - 1.0, now)
                return None
            self._buckets[rate_class] = (tokens, now)
            return (1.0 - tokens) / rate


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    sandbox: SandboxServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timed out on a slow fault) is normal here; report the rest."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid delayed-ACK stalls
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.sandbox.serve_request(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests and benchmarks read `stats` instead."""

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header on the account's clock, the time its objects are stamped with."""
        return formatdate(self.server.sandbox.account.now.timestamp(), usegmt=True)


@dataclass
class _Outcome:
    reply: Reply
    fault: Fault | None = None


class SandboxServer:
    """The fake Orb API serving `account`; use as a context manager or start()/stop()."""

    def __init__(
        self,
        account: Account,
        *,
        api_key: str = "sandbox-key",
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limits: dict[str, float] | None = None,
        retry_after: bool = True,
        fault_seed: int = 0,
    ) -> None:
        self.account = account
        self.api_key = api_key
        self.latency = latency
        self.retry_after = retry_after
        self.before_request: list[Hook] = []
        self.stats = Stats()
        self.max_in_flight = 0
        self._address = (host, port)
        self._api = Api(account)
        self._limiter = RateLimiter(rate_limits)
        self._faults = FaultInjector(fault_seed)
        self._stats_lock = threading.Lock()
        self._in_flight = 0
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}{BASE_PATH}"

    def start(self) -> SandboxServer:
        httpd = _HTTPServer(self._address, _Handler)
        httpd.sandbox = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, args=(0.05,), name="orb-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def inject(self, fault: Fault) -> None:
        self._faults.add(fault)

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_stats(self) -> None:
        with self._stats_lock:
            self.stats = Stats()
            self.max_in_flight = self._in_flight

    def serve_request(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer one request, tracking concurrency and stats."""
        arrived = time.monotonic()
        with self._stats_lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            try:
                outcome = self._answer(handler.path, handler.headers.get("Authorization"))
            except (
                Exception
            ) as exc:  # a failing hook or bug must still produce an Orb-shaped answer
                error = ApiError(
                    500, "500-internal-server-error", "Internal server error", repr(exc)
                )
                outcome = _Outcome(error_reply(error, UNKNOWN_ROUTE))
            self._record(outcome, arrived, urlsplit(handler.path).path)
            _send(handler, outcome)
        finally:
            with self._stats_lock:
                self._in_flight -= 1

    def _answer(self, target: str, authorization: str | None) -> _Outcome:
        if self.latency:
            time.sleep(self.latency)
        url = urlsplit(target)
        if url.path != BASE_PATH and not url.path.startswith(BASE_PATH + "/"):
            error = ApiError(
                404, "404-url-not-found", "URL not found", f"No route matches GET {url.path}"
            )
            return _Outcome(error_reply(error, UNKNOWN_ROUTE))
        path = url.path[len(BASE_PATH) :]
        route = resolve(path)[0]
        if authorization != f"Bearer {self.api_key}":
            error = ApiError(
                401,
                "401-authentication-error",
                "Authentication error",
                "Invalid or missing API key",
            )
            return _Outcome(error_reply(error, route))
        fault = self._faults.pick(path)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "status":
            return _Outcome(status_reply(fault, route), fault)
        throttled = self._throttle(route)
        if throttled is not None:
            return _Outcome(throttled)
        query = parse_qs(url.query, keep_blank_values=True)
        with self.account.lock:
            for hook in list(self.before_request):
                hook(path, query)
            reply = self._api.handle(
                path, query, repeat_cursor=fault is not None and fault.kind == "repeat_cursor"
            )
        return _Outcome(reply, fault)

    def _throttle(self, route: str) -> Reply | None:
        """A 429 if the route's rate class is over its limit."""
        wait = self._limiter.acquire(rate_class(route))
        if wait is None:
            return None
        headers = {"Retry-After": str(max(1, math.ceil(wait)))} if self.retry_after else {}
        error = ApiError(
            429, "429-too-many-requests", "Too many requests", "Rate limit exceeded; retry later"
        )
        return error_reply(error, route, headers)

    def _record(self, outcome: _Outcome, arrived: float, target: str) -> None:
        reply = outcome.reply
        path = target[len(BASE_PATH) :] if target.startswith(BASE_PATH) else target
        with self._stats_lock:
            stats = self.stats
            stats.log.append((arrived, path, reply.status))
            if outcome.fault is not None:
                kind = outcome.fault.kind
                stats.faults_served[kind] = stats.faults_served.get(kind, 0) + 1
            stats.requests += 1
            stats.by_route[reply.route] = stats.by_route.get(reply.route, 0) + 1
            stats.rows_by_route[reply.route] = stats.rows_by_route.get(reply.route, 0) + reply.rows
            stats.status_counts[reply.status] = stats.status_counts.get(reply.status, 0) + 1
            if reply.status == 429:
                stats.rejected_429 += 1


def _send(handler: BaseHTTPRequestHandler, outcome: _Outcome) -> None:
    """Write the reply; "drop" sends half the body then closes, "malformed" sends invalid JSON."""
    reply, kind = outcome.reply, outcome.fault.kind if outcome.fault else None
    body = MALFORMED_BODY if kind == "malformed" and reply.status == 200 else reply.body
    handler.send_response(reply.status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if kind == "drop":
        handler.wfile.write(body[: len(body) // 2])
        handler.close_connection = True
        return
    handler.wfile.write(body)


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8484,
    customers: int = 100,
    seed: int = 42,
    api_key: str = "sandbox-key",
    latency: float = 0.0,
    rate_limits: dict[str, float] | None = None,
    retry_after: bool = True,
) -> None:
    """Run a sandbox in the foreground until Ctrl-C or SIGTERM."""
    account = generate_account(customers=customers, seed=seed)
    stopped = threading.Event()
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set()) if on_main else None
    server = SandboxServer(
        account,
        api_key=api_key,
        host=host,
        port=port,
        latency=latency,
        rate_limits=rate_limits,
        retry_after=retry_after,
    )
    try:
        with server:
            print(f"Orb sandbox serving {server.base_url} (api key: {api_key})", flush=True)
            while not stopped.wait(0.5):
                pass
    except KeyboardInterrupt:
        pass
    finally:
        if on_main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
