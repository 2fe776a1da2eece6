"""The load driver's HTTP handling and outcome classification, against a small HTTP
server on loopback (the network rule allows it) that answers the way FraiseQL does."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chaos_runner.errors import AddressRefused, LoadError
from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.load import GraphQLLoad, LoadSettings, classify, static_policy

GUARD = NetworkGuard(route_lookup=lambda a: "labbr0")


@pytest.mark.parametrize(
    ("kind", "status", "body", "outcome", "auth"),
    [
        ("query", 200, {"data": {"posts": []}}, "ok", False),
        (
            "query",
            200,
            {"data": None, "errors": [{"message": "connection refused"}]},
            "fail",
            False,
        ),
        ("query", 401, {"detail": "Authentication required"}, "fail", True),
        ("query", 200, {"errors": [{"message": "Invalid token: signature"}]}, "fail", True),
        ("mutation", 200, {"data": {"recordOp": {"__typename": "RecordOpSuccess"}}}, "ok", False),
        # The function refused it (duplicate op id): a definite failure, nothing written.
        (
            "mutation",
            200,
            {"data": {"recordOp": {"__typename": "RecordOpError", "message": "already recorded"}}},
            "fail",
            False,
        ),
        # An error after the request reached the server: the write may or may not have run.
        ("mutation", 200, {"data": None, "errors": [{"message": "server closed"}]}, "info", False),
        ("mutation", 500, {"detail": "boom"}, "info", False),
        ("mutation", 403, {"detail": "Forbidden"}, "fail", True),
        ("increment", 422, {"detail": "bad input"}, "fail", False),
    ],
)
def test_outcomes_are_classified_by_content_not_status(kind, status, body, outcome, auth):
    got, error, refused = classify(kind, status, json.dumps(body))
    assert (got, refused) == (outcome, auth)
    assert (error is None) == (outcome == "ok")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, chunked: bool = False) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        if chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for part in (body[:5], body[5:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.6)
        self._send(200, b'{"ok": true}', chunked=self.path == "/chunked")

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        request = json.loads(self.rfile.read(length))
        if "authorization" not in {k.lower() for k in self.headers}:
            self._send(401, b'{"detail": "Authentication required"}')
            return
        if request["query"].startswith("mutation"):
            body = {"data": {"recordOp": {"__typename": "RecordOpSuccess"}}}
        else:
            body = {"data": {"posts": [{"id": 1}]}}
        self._send(200, json.dumps(body).encode(), chunked=True)


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # a burst connects all at once (socketserver's default: 5)


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A local HTTP server answering with `handler`, for the driver to talk to."""
    httpd = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


@pytest.fixture(scope="module")
def server():
    with serve(Handler) as url:
        yield url


def run(url: str, tokens=None, **kw) -> list:
    load = GraphQLLoad(LoadSettings(url=url, **kw), GUARD, tokens or static_policy("Bearer t"))
    load.start()
    load.wait()
    return list(load.history())


def test_open_loop_keeps_its_schedule_and_records_every_operation(server):
    ops = run(
        server,
        mode="open",
        rate=100,
        max_duration_s=1.0,
        mix=(("query", 1.0), ("mutation", 1.0)),
        op_prefix="u",
    )
    assert 95 <= len(ops) <= 100
    assert all(o.outcome == "ok" for o in ops), [o.error for o in ops if o.outcome != "ok"]
    starts = sorted(o.start_ns for o in ops)
    # Due times are exactly 10 ms apart whatever the server does.
    assert {b - a for a, b in itertools.pairwise(starts)} <= {10_000_000, 10_000_001}
    writes = [o for o in ops if o.kind == "mutation"]
    assert writes and all(o.op_id and o.op_id.startswith("u-") for o in writes)
    assert len({o.op_id for o in writes}) == len(writes)


def test_latency_counts_from_the_due_time_not_the_send_time(server):
    # One connection at most, a 0.6 s answer, 10 arrivals per second: later operations
    # queue behind it, and their latency must include the queueing.
    ops = run(
        server,
        mode="open",
        rate=10,
        max_duration_s=1.0,
        max_in_flight=1,
        mix=(("get", 1.0),),
        path="/slow",
    )
    sent = [o for o in ops if o.sent_ns]
    not_sent = [o for o in ops if not o.sent_ns]
    assert sent and not_sent  # beyond max_in_flight: recorded as failures, never silently dropped
    assert all(o.outcome == "fail" and "in-flight" in o.error for o in not_sent)


def test_closed_loop_is_bounded_by_count(server):
    ops = run(
        server,
        mode="closed",
        concurrency=4,
        max_ops=40,
        max_duration_s=10,
        mix=(("get", 1.0),),
        path="/chunked",
    )
    assert len(ops) == 40 and all(o.outcome == "ok" for o in ops)


def test_timeouts_are_unknown_for_writes_and_failures_for_reads(server):
    ops = run(
        server,
        mode="open",
        rate=4,
        max_duration_s=0.5,
        timeout_s=0.2,
        mix=(("get", 1.0),),
        path="/slow",
    )
    assert ops and all(o.outcome == "fail" and o.timed_out for o in ops)


def test_missing_token_is_an_auth_refusal(server):
    ops = run(
        server, tokens=static_policy(None, "none"), mode="closed", max_ops=5, mix=(("query", 1.0),)
    )
    assert len(ops) == 5 and all(o.auth_rejected and o.token == "none" for o in ops)


def test_connection_refused_is_a_definite_failure():
    ops = run("http://127.0.0.1:9", mode="closed", max_ops=3, mix=(("mutation", 1.0),))
    assert len(ops) == 3
    assert all(o.outcome == "fail" and o.sent_ns is None and "connect" in o.error for o in ops)


def test_the_network_rule_is_checked_before_any_packet():
    with pytest.raises(AddressRefused):
        GraphQLLoad(LoadSettings(url="http://192.0.2.10:8000"), GUARD, static_policy(None))
    with pytest.raises(LoadError):
        GraphQLLoad(LoadSettings(url="https://127.0.0.1:8000"), GUARD, static_policy(None))


def test_a_burst_rides_on_the_running_load_and_every_operation_is_recorded(server):
    load = GraphQLLoad(
        LoadSettings(
            url=server, mode="open", rate=20, max_duration_s=1.5, max_ops=1000,
            mix=(("mutation", 1.0),), op_prefix="b",
        ),
        GUARD,
        static_policy("Bearer t"),
    )  # fmt: skip
    with pytest.raises(LoadError, match="not running"):
        load.burst("query", 5)
    load.start()
    time.sleep(0.3)
    indices = load.burst("query", 60)
    second = load.burst("mutation", 5)
    load.wait()
    ops = list(load.history())
    burst = [o for o in ops if o.index in indices]
    assert len(burst) == 60 and all(o.kind == "query" and o.outcome == "ok" for o in burst)
    assert {o.start_ns for o in burst} == {burst[0].start_ns}  # all due at one instant
    assert indices.start == 1000 and second.start == 1060  # after the load's own indices
    writes = [o for o in ops if o.kind == "mutation"]
    assert len({o.op_id for o in writes}) == len(writes)  # op ids stay unique
    assert load.burst_ended(indices) == 60 and load.burst_ended(second) == 5


def test_the_in_flight_limit_holds_while_the_open_loop_catches_up(server):
    # 2000 arrivals/s against 0.6 s answers: the scheduler is always behind, and tasks it
    # creates while catching up must count before they start.
    ops = run(
        server, mode="open", rate=2000, max_duration_s=0.3, max_in_flight=10,
        mix=(("get", 1.0),), path="/slow", timeout_s=5,
    )  # fmt: skip
    sent = [o for o in ops if o.sent_ns]
    edges = sorted([(o.sent_ns, 1) for o in sent] + [(o.end_ns, -1) for o in sent])
    in_flight = peak = 0
    for _, step in edges:
        in_flight += step
        peak = max(peak, in_flight)
    assert 1 <= peak <= 10, peak
    assert len(sent) < len(ops)  # the rest were refused by the limit, and recorded


def light_load(url: str, duration_s: float) -> GraphQLLoad:
    """A running 5/s load of list queries for a burst or flood to ride on."""
    load = GraphQLLoad(
        LoadSettings(url=url, mode="open", rate=5, max_duration_s=duration_s, max_ops=100,
                     mix=(("query", 1.0),)),
        GUARD,
        static_policy("Bearer t"),
    )  # fmt: skip
    load.start()
    time.sleep(0.1)
    return load


def test_a_flood_spreads_its_operations_at_its_rate(server):
    load = light_load(server, 0.5)
    indices = load.burst("query", 40, rate=50)  # 0.8 s of flood: past the load's own end
    load.wait()
    flood = sorted((o for o in load.history() if o.index in indices), key=lambda o: o.index)
    assert len(flood) == 40 and all(o.outcome == "ok" for o in flood)
    steps = {b.start_ns - a.start_ns for a, b in itertools.pairwise(flood)}
    assert steps == {20_000_000}  # due 20 ms apart, whatever the server did


def test_a_flood_stops_being_sent_when_it_is_cancelled(server):
    load = light_load(server, 1.0)
    flood = load.burst("query", 100, rate=50)  # 2 s of flood
    time.sleep(0.5)
    load.cancel_burst(flood)
    load.wait()
    sent = [o for o in load.history() if o.index in flood]
    assert 15 <= len(sent) <= 40, len(sent)  # ~25 in 0.5 s, none after the cancel
    assert load.burst_ended(flood) == 100  # the dropped ones have ended too
