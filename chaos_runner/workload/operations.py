"""What each load operation sends and how its answer is judged.

Operation kinds (the scenario's `load.mix`; parameters from `load.params`):
  query, nested           a short list (posts), one post with its author;
  mutation, increment     a ledger row under a client-chosen op id, a counter upsert;
  health, ready           GET /health, GET /ready (1.x only): probes, by HTTP status;
  slow                    slowQuery: a statement of `slow_s` seconds in PostgreSQL;
  large                   items(limit: `large_limit`): thousands of rows, never cached;
  invalid                 invalid GraphQL, cycling through INVALID_VARIANTS: an expected
                          refusal (`fail` + FraiseQL's text; `ok` means FraiseQL ran it);
  introspection           `__schema { types { name } }`;
  transfer                money moved (or withdrawn) between the accounts of a group at
                          the `isolation` level (demo app: core.transfer);
  snapshot_read           the group's balances read twice in one transaction at `isolation`
                          (Operation.detail keeps what it saw; checked by
                          chaos_runner.analysis.invariants).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from chaos_runner.analysis.history import Outcome
from chaos_runner.errors import LoadError
from chaos_runner.model.build import between
from chaos_runner.model.build import field as checked
from chaos_runner.workload.graphql import GraphQLResponse, parse_response

POSTS = "query($limit: Int!) { posts(limit: $limit) { id title tags published } }"
NESTED_POST_ID = "00000000-0000-4000-9000-000000000001"
# A literal id: FraiseQL 1.9.16 refuses a `UUID!` variable ("cannot be used as an input type").
NESTED = f'{{ post(id: "{NESTED_POST_ID}") {{ id title author {{ id name email }} }} }}'
RECORD = (
    "mutation($input: RecordOpInput!) { recordOp(input: $input) { __typename "
    "... on RecordOpSuccess { ledgerEntry { opId } } ... on RecordOpError { message } } }"
)
INCREMENT = (
    "mutation($input: IncrementCounterInput!) { incrementCounter(input: $input) { __typename "
    "... on IncrementCounterSuccess { counter { value } } "
    "... on IncrementCounterError { message } } }"
)
SLOW = "query($seconds: Float!) { slowQuery(seconds: $seconds) { seconds sleptMs } }"
LARGE = "query($limit: Int!) { items(limit: $limit) { id n name payload } }"
INTROSPECTION = "{ __schema { types { name } } }"
TRANSFER = (
    "mutation($input: TransferInput!) { transfer(input: $input) "
    "{ status message isolation fromBalance toBalance } }"
)
SNAPSHOT = (
    "query($group: String!, $isolation: String!, $holdS: Float!) "
    "{ accountSnapshot(group: $group, isolation: $isolation, holdS: $holdS) { isolation "
    "accounts total initialTotal withdrawn minBalance transfers totalAgain initialTotalAgain "
    "withdrawnAgain transfersAgain } }"
)
# The note the cache experiments rename (demo_seed.sql); each update bumps its version.
NOTE_ID = "00000000-0000-4000-a000-000000000001"
NOTE_READ = f'{{ note(id: "{NOTE_ID}") {{ id title version }} }}'
NOTE_WRITE = (
    "mutation($input: UpdateNoteInput!) { updateNote(input: $input) { status message version } }"
)
# Invalid GraphQL, one variant per operation in turn. `items` is never cached, so these
# stay out of 0.5.3's result-cache path (the recursion leak after 960 cached lists).
INVALID_VARIANTS = ("syntax", "unknown-field", "depth", "fragment-cycle")
INVALID = {
    "syntax": "{ items(limit: 1) { id ",
    "unknown-field": "{ items(limit: 1) { id notAField } }",
    "fragment-cycle": (
        "query { items(limit: 1) { ...Cycle } } fragment Cycle on Item { id ...Cycle }"
    ),
}
AUTH_WORDS = ("auth", "token", "unauthori", "forbidden", "credential", "jwt", "signature")
# PostgreSQL rolled the whole transaction back (SQLSTATE 40001, 40P01): a write that
# failed this way definitely did not take effect.
ROLLED_BACK = ("could not serialize access", "deadlock detected")

OP_KINDS = (
    "query",
    "nested",
    "mutation",
    "increment",
    "health",
    "ready",
    "slow",
    "large",
    "invalid",
    "introspection",
    "transfer",
    "snapshot_read",
    "metrics",
    "note_write",
    "note_read",
)
# GETs beside the GraphQL load: liveness, readiness and the Prometheus scrape.
PROBE_PATHS = {"health": "/health", "ready": "/ready", "metrics": "/metrics"}
WRITE_KINDS = frozenset({"mutation", "increment", "transfer", "note_write"})
# Failures of these are the expected answer, not errors of the system under test.
EXPECTED_REFUSAL_KINDS = frozenset({"invalid"})
# Reads of data no scenario changes: each successful answer keeps a digest of its `data`
# (detail["answer"]), so a check can tell a wrong answer from the one the baseline saw.
ANSWER_KINDS = ("query", "nested")
ACCOUNT_NAMES = "abcdefghijklmnopqrstuvwxyz"
# Operations a FraiseQL line cannot serve: kind -> (first version serving it, why not).
LINE_SUPPORT = {"ready": ((1, 8), "GET /ready exists since FraiseQL 1.8; 0.5.x has /health only")}


Isolation = Literal["read_uncommitted", "read_committed", "repeatable_read", "serializable"]


@dataclass(frozen=True)
class OperationParams:
    """A scenario's `load.params`: what the parameterised operations send. Built by
    chaos_runner.model.build, so unknown keys and bad values are refused with the dotted
    key (`load.params.slow_s`)."""

    slow_s: float = checked(2.0, check=between(0, 600))  # slow: seconds in PostgreSQL
    large_limit: int = checked(1000, check=between(1, 10_000))  # large: rows (10,000 seeded)
    invalid_depth: int = checked(64, check=between(2, 10_000))  # invalid depth: nesting
    # invalid: every request of this variant (default: the variants in turn).
    invalid_variant: Literal["syntax", "unknown-field", "depth", "fragment-cycle"] | None = None
    isolation: Isolation = "read_committed"  # transfer, snapshot_read
    transfer_mode: Literal["move", "withdraw"] = "move"  # withdraw: money leaves the group
    transfer_amount: int = checked(10, check=between(1, 1_000_000_000))
    transfer_hold_s: float = checked(0.0, check=between(0, 60))  # between debit and credit
    accounts: int = checked(3, check=between(2, len(ACCOUNT_NAMES)))
    opening_balance: int = checked(100, check=between(0, 1_000_000_000))
    read_hold_s: float = checked(0.0, check=between(0, 60))  # between a snapshot's reads
    account_group: str | None = None  # default: the run's op prefix (fresh accounts)


@dataclass(frozen=True)
class OpRequest:
    method: str
    path: str
    body: bytes = b""
    op_id: str | None = None  # a ledger op id (mutation only)
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    error: str | None = None
    auth_rejected: bool = False
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class LoadSettings:
    url: str
    mode: Literal["open", "closed"] = "open"
    rate: float = 40.0
    concurrency: int = 8
    max_in_flight: int = 256
    timeout_s: float = 12.0
    mix: tuple[tuple[str, float], ...] = (("query", 6.0), ("nested", 2.0), ("mutation", 2.0))
    max_ops: int = 50_000
    max_duration_s: float = 120.0
    seed: int = 0
    op_prefix: str = "op"
    counter: str | None = None
    path: str = "/"  # of `get` operations
    params: OperationParams = field(default_factory=OperationParams)
    # The FraiseQL line under load (AppEndpoint.version); operations it cannot serve are
    # refused before anything is sent.
    line: str | None = None


def line_tuple(line: str) -> tuple[int, ...]:
    """'1.9' or '1.9.16' as comparable numbers; ValueError for anything else."""
    parts = line.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"{line!r} is not a FraiseQL version like 1.0 or 1.9.16")
    return tuple(int(p) for p in parts)


def line_problem(kinds: Iterable[str], line: str) -> str | None:
    """Why FraiseQL `line` cannot serve one of `kinds`, or None."""
    try:
        version = line_tuple(line)
    except ValueError:
        return f"unknown FraiseQL line {line!r}"
    for kind in kinds:
        support = LINE_SUPPORT.get(kind)
        if support is not None and version < support[0]:
            return f"operation {kind!r} is not served by FraiseQL {line}: {support[1]}"
    return None


def _graphql(query: str, variables: dict[str, Any] | None = None, **kw: Any) -> OpRequest:
    body = {"query": query, "variables": variables} if variables else {"query": query}
    return OpRequest("POST", "/graphql", json.dumps(body).encode(), **kw)


def _deep(depth: int) -> str:
    """Inline fragments nested `depth` deep: valid GraphQL that only a depth limit (or the
    parser's own nesting limit) refuses."""
    return "{ items(limit: 1) { " + "... on Item { " * depth + "id" + " }" * depth + " } }"


def account_group(settings: LoadSettings) -> str:
    """The account group the transfers and snapshot reads work on: `params.account_group`,
    else the attempt's own (its op prefix)."""
    return settings.params.account_group or settings.op_prefix


def request_for(kind: str, index: int, settings: LoadSettings) -> OpRequest:
    """The HTTP request of operation `index`. `get` is a plain GET of settings.path (static
    endpoints, for benchmarks)."""
    params = settings.params
    if kind == "get":
        return OpRequest("GET", settings.path)
    if kind in PROBE_PATHS:
        return OpRequest("GET", PROBE_PATHS[kind])
    if kind == "query":
        return _graphql(POSTS, {"limit": 5})
    if kind == "nested":
        return _graphql(NESTED)
    if kind == "mutation":
        op_id = f"{settings.op_prefix}-{index}"
        variables = {"input": {"opId": op_id, "client": settings.op_prefix, "amount": 1}}
        return _graphql(RECORD, variables, op_id=op_id)
    if kind == "increment":
        return _graphql(INCREMENT, {"input": {"name": settings.counter or "default", "by": 1}})
    if kind == "slow":
        return _graphql(SLOW, {"seconds": params.slow_s})
    if kind == "large":
        return _graphql(LARGE, {"limit": params.large_limit})
    if kind == "invalid":
        variant = params.invalid_variant or INVALID_VARIANTS[index % len(INVALID_VARIANTS)]
        query = _deep(params.invalid_depth) if variant == "depth" else INVALID[variant]
        return _graphql(query, detail={"variant": variant})
    if kind == "introspection":
        return _graphql(INTROSPECTION)
    if kind == "note_read":
        return _graphql(NOTE_READ)
    if kind == "note_write":
        title = f"{settings.op_prefix}-{index}"
        return _graphql(NOTE_WRITE, {"input": {"id": NOTE_ID, "title": title}})
    group = account_group(settings)
    if kind == "transfer":
        names = list(ACCOUNT_NAMES[: params.accounts])
        source = names[index % len(names)]
        target = names[(index + 1) % len(names)] if params.transfer_mode == "move" else None
        # The transfer's own op id (core.tb_transfer), not a ledger op id: kept out of
        # Operation.op_id so the ledger check does not look for it in core.tb_ledger.
        transfer_input: dict[str, Any] = {
            "opId": f"{settings.op_prefix}-{index}",
            "group": group,
            "fromAccount": source,
            "toAccount": target,
            "amount": params.transfer_amount,
            "isolation": params.isolation,
            "holdS": params.transfer_hold_s,
            "accounts": names,
            "openingBalance": params.opening_balance,
        }
        return _graphql(TRANSFER, {"input": transfer_input})
    if kind == "snapshot_read":
        snapshot = {"group": group, "isolation": params.isolation, "holdS": params.read_hold_s}
        return _graphql(SNAPSHOT, snapshot)
    raise LoadError(f"unknown operation kind {kind!r}")


def classify(kind: str, status: int, text: str) -> tuple[Outcome, str | None, bool]:
    """(outcome, error text, refused by auth) of one complete HTTP answer."""
    verdict = judge(kind, status, text)
    return verdict.outcome, verdict.error, verdict.auth_rejected


def judge(kind: str, status: int, text: str) -> Verdict:
    """The outcome of one complete HTTP answer, and what checks need from it (detail)."""
    if kind == "get" or kind in PROBE_PATHS:
        if status == 200:
            return Verdict("ok")
        shown = text.strip()[:200]
        return Verdict("fail", f"HTTP {status}: {shown}" if shown else f"HTTP {status}")
    resp = parse_response(status, text)
    write = kind in WRITE_KINDS
    message = "; ".join(resp.errors)[:300] or None
    auth = status in (401, 403) or any(w in (message or "").lower() for w in AUTH_WORDS)
    if status == 200 and not resp.errors and resp.data is not None:
        detail = _observed(kind, resp)
        if not write:
            return Verdict("ok", detail=detail)
        payload = next(iter(resp.data.values()), None)
        if kind in ("transfer", "note_write") and isinstance(payload, dict):
            # The function's own verdict: `success`, or `failed:*` / `noop:*` (refused,
            # nothing written). A note rename answers the same way.
            answer = str(payload.get("status") or "")
            if answer == "success":
                return Verdict("ok", detail=detail)
            if answer.startswith(("failed:", "noop:")):
                return Verdict("fail", f"{answer}: {payload.get('message')}"[:300], detail=detail)
            return Verdict("info", f"unexpected {kind} answer: {text[:200]}")
        typename = payload.get("__typename", "") if isinstance(payload, dict) else ""
        if typename.endswith("Success"):
            return Verdict("ok")
        if typename.endswith("Error") and isinstance(payload, dict):
            # The mutation function itself refused (e.g. a duplicate op id): nothing written.
            return Verdict("fail", str(payload.get("message") or typename)[:300])
        return Verdict("info", f"unexpected mutation answer: {text[:200]}")
    if auth and status in (200, 401, 403):
        return Verdict("fail", message or f"HTTP {status}", True)
    if not write or (status < 500 and status != 200):
        # Reads never change anything; a 4xx write was refused before running.
        return Verdict("fail", message or f"HTTP {status}")
    if message and any(w in message for w in ROLLED_BACK):
        return Verdict("fail", message)
    return Verdict("info", message or f"HTTP {status} without a message")


_SNAPSHOT_FIELDS = {
    "isolation": "isolation",
    "accounts": "accounts",
    "total": "total",
    "initialTotal": "initial_total",
    "withdrawn": "withdrawn",
    "minBalance": "min_balance",
    "transfers": "transfers",
    "totalAgain": "total_again",
    "initialTotalAgain": "initial_total_again",
    "withdrawnAgain": "withdrawn_again",
    "transfersAgain": "transfers_again",
}


def _observed(kind: str, resp: GraphQLResponse) -> dict[str, Any] | None:
    """What a successful answer showed that a check needs."""
    payload = next(iter((resp.data or {}).values()), None)
    if kind == "snapshot_read" and isinstance(payload, dict):
        return {key: payload.get(name) for name, key in _SNAPSHOT_FIELDS.items()}
    if kind == "transfer" and isinstance(payload, dict) and payload.get("isolation"):
        return {"isolation": payload["isolation"]}
    if kind in ("note_write", "note_read") and isinstance(payload, dict):
        return {"version": payload.get("version")}
    if kind == "large" and isinstance(payload, list):
        return {"rows": len(payload)}
    if kind in ANSWER_KINDS:
        return {"answer": answer_digest(resp.data)}
    return None


def answer_digest(data: Any) -> str:
    """A short digest of an answer's `data` (keys sorted: the same answer, the same
    digest)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
