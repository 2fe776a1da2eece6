"""GraphQL load against one FraiseQL endpoint, every operation recorded.

The driver runs an asyncio loop in its own thread (the scenario runner stays synchronous)
and speaks HTTP/1.1 itself over keep-alive connections, so its own overhead is small and
measurable (benchmarks/load_driver.py compares it with wrk).

- open loop: operation i is due at t0 + i / rate whatever happened before; its latency
  counts from that due time, so a stalled server cannot slow the arrivals down and hide
  its queueing (no coordinated omission). Beyond `max_in_flight` an operation is recorded
  as `fail` without being sent.
- closed loop: `concurrency` workers, each sends its next operation when the previous
  one has finished.

Bounded by `max_ops` and `max_duration_s`; it stops by itself.

FraiseQL answers most errors with HTTP 200 and `errors[]`, so outcomes are classified by
content: `ok`, `fail` (refused, or a read that failed), `info` (a write whose effect is
unknown: no answer, a timeout, or a server error after the request was sent).

"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from chaos_runner.analysis.history import History, Operation, Outcome
from chaos_runner.errors import LoadError
from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.operations import (
    OP_KINDS,
    WRITE_KINDS,
    LoadSettings,
    Verdict,
    classify,
    judge,
    line_problem,
    request_for,
)

# Re-exported: the driver's callers build settings and read the operation catalogue here.
__all__ = [
    "OP_KINDS",
    "GraphQLLoad",
    "LoadDriver",
    "LoadSettings",
    "TokenPolicy",
    "classify",
    "judge",
    "line_problem",
    "request_for",
    "static_policy",
    "summary",
]

log = logging.getLogger(__name__)

# (op kind, sequence number) -> (token label, Authorization header value or None)
TokenPolicy = Callable[[str, int], tuple[str, str | None]]


class LoadDriver(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def history(self) -> History: ...


# uvicorn closes idle keep-alive connections after 5 s; a request written into one that is
# being closed is lost in an ambiguous way, so idle connections are retired well before.
IDLE_RETIRE_NS = 2_000_000_000


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic_ns()

    def close(self) -> None:
        self.writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str, bool]:
    """Status, body and whether the server keeps the connection open."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("connection closed before a response")
    parts = status_line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        headers["connection"] = "close"
    keep = headers.get("connection", "").lower() != "close"
    return status, body.decode(errors="replace"), keep


class GraphQLLoad:
    """The load driver (LoadDriver protocol) for one FraiseQL endpoint."""

    def __init__(self, settings: LoadSettings, guard: NetworkGuard, tokens: TokenPolicy) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(settings.url)
        if parts.scheme != "http" or not parts.hostname:
            raise LoadError(f"expected an http:// URL, got {settings.url!r}")
        if settings.mode == "open" and settings.rate <= 0:
            raise LoadError("open-loop load needs a positive rate")
        unknown = sorted({k for k, _ in settings.mix} - {*OP_KINDS, "get"})
        if unknown:
            raise LoadError(f"unknown operation kind {unknown[0]!r}")
        if settings.line is not None:
            problem = line_problem((k for k, w in settings.mix if w > 0), settings.line)
            if problem:
                raise LoadError(problem)
        # The network rule, checked before any packet: lab address routed to the bridge.
        self.host = guard.check(parts.hostname)
        self.port = parts.port or 80
        self.settings = settings
        self.tokens = tokens
        self._rng = random.Random(settings.seed)
        kinds, weights = zip(*settings.mix, strict=True)
        self._kinds: tuple[str, ...] = kinds
        self._weights: tuple[float, ...] = weights
        self._ops: list[Operation] = []
        self._idle: list[_Connection] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.started_ns = 0
        self.stopped_ns = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bursts: dict[int, asyncio.Task[None]] = {}
        # Burst operations take indices after the load's own (op ids stay unique).
        self._next_burst = settings.max_ops
        self._burst_sent: set[int] = set()
        self._burst_ended: set[int] = set()
        self._last_due = 0
        self._open_files = 0

    # ------------------------------------------------------------ LoadDriver
    def start(self) -> None:
        if self._thread is not None:
            raise LoadError("the load driver was already started")
        self._open_files = raise_open_files_limit()
        self._thread = threading.Thread(target=self._main, name="graphql-load", daemon=True)
        self.started_ns = time.monotonic_ns()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.cancel_burst(None)  # a flood still to come is not sent after the stop
        if self._thread is not None:
            self._thread.join(self.settings.timeout_s + 5)
        self.stopped_ns = time.monotonic_ns()
        if self._error is not None:
            raise LoadError(f"the load driver failed: {self._error!r}") from self._error

    def history(self) -> History:
        return History(sorted(self._ops, key=lambda o: o.start_ns))

    def note(self, op: Operation) -> None:
        """Put an operation observed elsewhere (an alert the receiver took) into the history."""
        self._ops.append(op)

    def burst(self, kind: str, count: int, rate: float | None = None) -> range:
        """`count` operations of `kind` on top of the load, due at once or, with `rate`,
        spread at that many per second (a flood); each takes an idle connection or opens
        its own. Returns their indices. Recorded like every other operation (latency from
        the due time); `burst_ended(indices)` counts the finished ones, `cancel_burst`
        drops the ones not yet due."""
        if kind not in OP_KINDS:
            raise LoadError(f"unknown operation kind {kind!r}")
        loop = self._loop
        if loop is None or self.done or self._stop.is_set():
            raise LoadError("the load is not running: a burst rides on a running load")
        # Every one at once holds a socket: the client's own limit must not be what fails
        # them (a failure here would be counted against FraiseQL).
        if not rate and count + self.settings.max_in_flight + 64 > self._open_files:
            raise LoadError(
                f"a burst of {count} needs more open files than this process may have "
                f"({self._open_files}); raise its hard limit (ulimit -Hn) or send fewer"
            )
        indices = range(self._next_burst, self._next_burst + count)
        self._next_burst += count
        step = 0 if not rate else int(1e9 / rate)
        self._last_due = max(self._last_due, time.monotonic_ns() + count * step)

        def send() -> None:
            now = time.monotonic_ns()
            for i, index in enumerate(indices):
                task = asyncio.create_task(self._burst_one(index, kind, now + i * step))
                self._bursts[index] = task
                task.add_done_callback(partial(self._forget_burst, index))

        loop.call_soon_threadsafe(send)
        return indices

    def _forget_burst(self, index: int, _task: asyncio.Task[None]) -> None:
        self._bursts.pop(index, None)

    def cancel_burst(self, indices: range | None) -> None:
        """Drop the operations of a burst (None: of every burst) not sent yet: a flood's
        heal, the load's stop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def cancel() -> None:
            for index, task in list(self._bursts.items()):
                if (indices is None or index in indices) and index not in self._burst_sent:
                    task.cancel()

        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError:  # the loop closed meanwhile: nothing is pending any more
            return

    def _burst_tail_s(self) -> float:
        return self.settings.timeout_s + 1 + max(0.0, (self._last_due - time.monotonic_ns()) / 1e9)

    def burst_ended(self, indices: range) -> int:
        """How many operations of a burst have ended (answered, failed or dropped)."""
        ended = self._burst_ended
        return sum(1 for i in indices if i in ended)

    async def _burst_one(self, index: int, kind: str, due_ns: int) -> None:
        try:
            wait = due_ns - time.monotonic_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            self._burst_sent.add(index)
            await self._one(index, kind, due_ns)
        finally:
            self._burst_ended.add(index)

    def wait(self) -> None:
        """Block until the bounds (count or time) end the load."""
        if self._thread is not None:
            self._thread.join()
        self.stop()

    @property
    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    # ------------------------------------------------------------ internals
    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by stop(); the thread must not die silently
            log.exception("load driver failed")
            self._error = exc

    async def _run(self) -> None:
        deadline = self.started_ns + int(self.settings.max_duration_s * 1e9)
        self._loop = asyncio.get_running_loop()
        try:
            if self.settings.mode == "open":
                await self._open_loop(deadline)
            else:
                await self._closed_loop(deadline)
            if self._bursts:
                # A flood may still be due: its operations must be sent, then answered.
                await asyncio.wait(set(self._bursts.values()), timeout=self._burst_tail_s())
        finally:
            for conn in self._idle:
                conn.close()

    async def _open_loop(self, deadline: int) -> None:
        interval = 1e9 / self.settings.rate
        t0 = time.monotonic_ns()
        tasks: set[asyncio.Task[None]] = set()
        index = 0
        while index < self.settings.max_ops and not self._stop.is_set():
            due = t0 + int(index * interval)
            if due >= deadline:
                break
            wait = due - time.monotonic_ns()
            if wait > 0:
                await asyncio.sleep(wait / 1e9)
            kind = self._pick()
            # The tasks not yet done: one created while catching up on the schedule counts
            # before it has started.
            if len(tasks) >= self.settings.max_in_flight:
                self._ops.append(
                    Operation(
                        index,
                        kind,
                        due,
                        time.monotonic_ns(),
                        "fail",
                        error="not sent: client in-flight limit reached",
                    )
                )
            else:
                task = asyncio.create_task(self._one(index, kind, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.timeout_s + 1)

    async def _closed_loop(self, deadline: int) -> None:
        counter = iter(range(self.settings.max_ops))

        async def worker() -> None:
            for index in counter:
                if self._stop.is_set() or time.monotonic_ns() >= deadline:
                    return
                await self._one(index, self._pick(), time.monotonic_ns())

        await asyncio.gather(*(worker() for _ in range(self.settings.concurrency)))

    def _pick(self) -> str:
        return self._rng.choices(self._kinds, self._weights)[0]

    async def _connect(self) -> _Connection:
        now = time.monotonic_ns()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < IDLE_RETIRE_NS:
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return _Connection(reader, writer)

    async def _one(self, index: int, kind: str, due_ns: int) -> None:
        request = request_for(kind, index, self.settings)
        label, authorization = self.tokens(kind, index)
        headers = [
            f"{request.method} {request.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: application/json",
            f"Content-Length: {len(request.body)}",
        ]
        if authorization is not None:
            headers.append(f"Authorization: {authorization}")
        raw = ("\r\n".join(headers) + "\r\n\r\n").encode() + request.body
        write = kind in WRITE_KINDS
        sent_ns: int | None = None
        conn: _Connection | None = None
        status: int | None = None
        text = ""
        keep = False
        timed_out = False
        failure: str | None = None
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                conn = await self._connect()
                sent_ns = time.monotonic_ns()
                conn.writer.write(raw)
                await conn.writer.drain()
                status, text, keep = await _read_response(conn.reader)
        except TimeoutError:
            timed_out = True
            failure = f"no answer within {self.settings.timeout_s:g} s"
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            failure = f"{'connection' if sent_ns else 'connect'}: {exc!r}"[:300]
        if conn is not None and keep and failure is None:
            conn.idle_since = time.monotonic_ns()
            self._idle.append(conn)
        elif conn is not None:
            conn.close()
        if failure is None and status is not None:
            verdict = judge(kind, status, text)
        else:
            # Unsent: nothing happened. Sent without an answer: a write's effect is unknown.
            outcome: Outcome = "info" if write and sent_ns is not None else "fail"
            verdict = Verdict(outcome, failure)
        detail = {**(request.detail or {}), **(verdict.detail or {})} or None
        self._ops.append(
            Operation(
                index=index,
                kind=kind,
                start_ns=due_ns,
                end_ns=time.monotonic_ns(),
                outcome=verdict.outcome,
                status=status,
                error=verdict.error,
                sent_ns=sent_ns,
                op_id=request.op_id,
                token=label,
                timed_out=timed_out,
                auth_rejected=verdict.auth_rejected,
                detail=detail,
            )
        )


def raise_open_files_limit() -> int:
    """The process's soft limit of open files raised to its hard limit (a load of 1000
    connections does not fit the usual soft 1024); returns the limit now in effect."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            log.warning("could not raise the open files limit from %d", soft)
    return soft


def static_policy(authorization: str | None, label: str = "valid") -> TokenPolicy:
    return lambda kind, index: (label, authorization)


def summary(history: History) -> dict[str, Any]:
    counts = {o: 0 for o in ("ok", "fail", "info")}
    for op in history:
        counts[op.outcome] += 1
    return {"operations": len(history), **counts}
