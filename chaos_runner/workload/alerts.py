"""The webhook receiver Alertmanager notifies: each alert's arrival, on the history's clock.

Alertmanager (on the monitoring host) posts its notifications to
`http://<controller>:<port>/alerts` (the monitoring role's config). The receiver listens
there for the whole campaign and turns every alert of every notification into an
operation of kind `alert` (outcome `fail` while firing, `ok` once resolved) handed to
whoever listens at the time (the running attempt's load), so alerts stand in the history
beside the requests and probes, stamped with the same monotonic clock.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chaos_runner.analysis.history import Operation
from chaos_runner.errors import ConfigError
from chaos_runner.target.monitoring import Monitor

log = logging.getLogger(__name__)

ALERT_KIND = "alert"
# Alert operations take indices far above any load's (op ids and burst indices).
ALERT_INDEX_BASE = 2_000_000_000
MAX_BODY = 1 << 20


def alert_operations(
    payload: dict[str, Any], arrived_ns: int, counter: itertools.count[int]
) -> list[Operation]:
    """The alerts of one Alertmanager notification (webhook payload version 4)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise ValueError("not an Alertmanager notification: no `alerts` list")
    ops = []
    for alert in payload["alerts"]:
        if not isinstance(alert, dict):
            raise ValueError("an alert that is not an object")
        labels = alert.get("labels") or {}
        status = str(alert.get("status", payload.get("status", "firing")))
        name = str(labels.get("alertname", "?"))
        host = str(labels.get("host", labels.get("instance", "")))
        summary = str((alert.get("annotations") or {}).get("summary", ""))
        ops.append(
            Operation(
                index=ALERT_INDEX_BASE + next(counter),
                kind=ALERT_KIND,
                start_ns=arrived_ns,
                end_ns=arrived_ns,
                outcome="fail" if status == "firing" else "ok",
                error=f"{name} {status}"
                + (f" ({host})" if host else "")
                + (f": {summary}" if summary else "")
                if status == "firing"
                else None,
                detail={
                    "alertname": name,
                    "status": status,
                    "host": host,
                    "starts_at": alert.get("startsAt"),
                    "ends_at": alert.get("endsAt"),
                    "fingerprint": alert.get("fingerprint"),
                },
            )
        )
    return ops


Sink = Callable[[Operation], None]


class AlertReceiver:
    """An HTTP server on (address, port) taking Alertmanager's POSTs to /alerts."""

    def __init__(self, address: str, port: int) -> None:
        self.address = address
        self.port = port
        self.received: list[Operation] = []
        self._sink: Sink | None = None
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.monotonic_ns()
                if self.path.rstrip("/") != "/alerts":
                    self.send_error(404)
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if not 0 <= length <= MAX_BODY:
                        raise ValueError(f"Content-Length {length}")
                    payload = json.loads(self.rfile.read(length) or b"null")
                    receiver.take(payload, arrived)
                except (ValueError, AttributeError, TypeError) as exc:
                    self.send_error(400, str(exc)[:200])
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("alert receiver: " + format, *args)

        try:
            self._server = ThreadingHTTPServer((self.address, self.port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"the alert receiver cannot listen on {self.address}:{self.port} ({exc}): "
                "the monitoring role's monitoring_webhook_address/monitoring_webhook_port must "
                "be an address of this controller and a free port"
            ) from None
        self._server.daemon_threads = True
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.1),
            name="alert-receiver",
            daemon=True,
        )
        self._thread.start()

    def take(self, payload: Any, arrived_ns: int) -> None:
        ops = alert_operations(payload, arrived_ns, self._counter)
        with self._lock:
            self.received.extend(ops)
            sink = self._sink
        for op in ops:
            log.info("alert %s", op.error or f"{(op.detail or {}).get('alertname')} resolved")
            if sink is not None:
                sink(op)

    def attach(self, sink: Sink | None) -> None:
        """Hand every alert from now on to `sink` (None: keep them only here)."""
        with self._lock:
            self._sink = sink

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> AlertReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def alert_receiver(
    monitors: Iterable[Monitor], required: bool = True
) -> Iterator[AlertReceiver | None]:
    """The receiver the (first) monitoring host's Alertmanager notifies, listening while
    the context lasts; None without a monitoring host. When it cannot listen (another run
    holds the port) that is an error only if `required` (a scenario waits for an alert);
    otherwise the run goes on without alerts, and says so."""
    monitor = next(iter(monitors), None)
    if monitor is None:
        yield None
        return
    receiver = AlertReceiver(monitor.webhook_address, monitor.webhook_port)
    try:
        receiver.start()
    except ConfigError as exc:
        if required:
            raise
        log.warning("no alerts in this run: %s", exc)
        yield None
        return
    try:
        yield receiver
    finally:
        receiver.stop()
