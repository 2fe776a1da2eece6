"""The load operations: request bodies of every kind, classification of FraiseQL's answers
(texts copied from the embedded lab, FraiseQL 1.9.16 and 0.5.3, production mode),
`load.params` validation, per-line refusal, and the isolation invariants."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from chaos_runner.analysis.history import History, Operation
from chaos_runner.analysis.invariants import (
    Account,
    Transfer,
    check_accounts,
    check_snapshots,
)
from chaos_runner.errors import ConfigError, LoadError
from chaos_runner.model import scenario
from chaos_runner.workload.load import GraphQLLoad, static_policy
from chaos_runner.workload.operations import (
    EXPECTED_REFUSAL_KINDS,
    INVALID_VARIANTS,
    OP_KINDS,
    LoadSettings,
    OperationParams,
    judge,
    line_problem,
    request_for,
)
from tests.unit.test_load_driver import GUARD, serve

SETTINGS = LoadSettings(url="http://198.18.0.13:8000", op_prefix="run7", counter="c1")


def graphql_body(kind: str, index: int = 0, settings: LoadSettings = SETTINGS) -> dict:
    request = request_for(kind, index, settings)
    assert (request.method, request.path) == ("POST", "/graphql")
    return json.loads(request.body)


# ---------------------------------------------------------------- request bodies


def test_the_model_and_the_driver_know_the_same_kinds():
    assert scenario.OP_KINDS == OP_KINDS
    assert {"health", "ready", "slow", "large", "invalid", "introspection"} <= set(OP_KINDS)
    assert {"transfer", "snapshot_read"} <= set(OP_KINDS)


@pytest.mark.parametrize(("kind", "path"), [("health", "/health"), ("ready", "/ready")])
def test_probes_are_plain_gets_without_a_body(kind, path):
    request = request_for(kind, 3, SETTINGS)
    assert (request.method, request.path, request.body, request.op_id) == ("GET", path, b"", None)


def test_list_nested_and_counter_bodies_are_unchanged():
    assert graphql_body("query")["variables"] == {"limit": 5}
    assert 'post(id: "00000000-0000-4000-9000-000000000001")' in graphql_body("nested")["query"]
    assert graphql_body("increment")["variables"] == {"input": {"name": "c1", "by": 1}}


def test_only_the_ledger_mutation_carries_an_op_id():
    mutation = request_for("mutation", 12, SETTINGS)
    assert mutation.op_id == "run7-12"
    assert json.loads(mutation.body)["variables"]["input"]["opId"] == "run7-12"
    # A transfer's op id is core.tb_transfer's, not the ledger's: the ledger check must
    # not look for it in core.tb_ledger.
    assert all(request_for(k, 12, SETTINGS).op_id is None for k in OP_KINDS if k != "mutation")


def test_slow_and_large_take_their_size_from_load_params():
    settings = LoadSettings(url=SETTINGS.url, params=OperationParams(slow_s=2.5, large_limit=4000))
    slow = graphql_body("slow", settings=settings)
    assert "slowQuery(seconds: $seconds)" in slow["query"]
    assert slow["variables"] == {"seconds": 2.5}
    large = graphql_body("large", settings=settings)
    assert "items(limit: $limit)" in large["query"]
    assert large["variables"] == {"limit": 4000}


def test_invalid_cycles_through_its_variants_and_says_which():
    seen = [request_for("invalid", i, SETTINGS) for i in range(8)]
    variants = [r.detail["variant"] for r in seen]
    assert variants == list(INVALID_VARIANTS) * 2
    bodies = {r.detail["variant"]: json.loads(r.body)["query"] for r in seen}
    assert bodies["syntax"] == "{ items(limit: 1) { id "
    assert "notAField" in bodies["unknown-field"]
    assert "fragment Cycle on Item { id ...Cycle }" in bodies["fragment-cycle"]
    assert bodies["depth"].count("... on Item {") == 64
    deeper = LoadSettings(url=SETTINGS.url, params=OperationParams(invalid_depth=300))
    assert json.loads(request_for("invalid", 2, deeper).body)["query"].count("{") == 302
    assert "invalid" in EXPECTED_REFUSAL_KINDS


def test_introspection_is_the_standard_query():
    assert graphql_body("introspection") == {"query": "{ __schema { types { name } } }"}


def test_transfers_move_round_the_group_or_withdraw_from_it():
    params = OperationParams(isolation="serializable", transfer_amount=25, transfer_hold_s=0.2)
    settings = LoadSettings(url=SETTINGS.url, op_prefix="run7", params=params)
    moves = [graphql_body("transfer", i, settings)["variables"]["input"] for i in range(4)]
    assert [(m["fromAccount"], m["toAccount"]) for m in moves] == [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("a", "b"),
    ]
    assert moves[1] == {
        "opId": "run7-1",
        "group": "run7",
        "fromAccount": "b",
        "toAccount": "c",
        "amount": 25,
        "isolation": "serializable",
        "holdS": 0.2,
        "accounts": ["a", "b", "c"],
        "openingBalance": 100,
    }
    withdraw = OperationParams(transfer_mode="withdraw", accounts=2, account_group="skew")
    settings = LoadSettings(url=SETTINGS.url, op_prefix="run7", params=withdraw)
    taken = [graphql_body("transfer", i, settings)["variables"]["input"] for i in range(3)]
    assert [(t["fromAccount"], t["toAccount"], t["group"]) for t in taken] == [
        ("a", None, "skew"),
        ("b", None, "skew"),
        ("a", None, "skew"),
    ]


def test_snapshot_reads_the_same_group_at_the_same_level():
    params = OperationParams(isolation="repeatable_read", read_hold_s=0.5)
    body = graphql_body("snapshot_read", settings=LoadSettings(url=SETTINGS.url, params=params))
    assert body["variables"] == {"group": "op", "isolation": "repeatable_read", "holdS": 0.5}
    assert "totalAgain" in body["query"] and "transfersAgain" in body["query"]


def test_an_unknown_kind_is_refused():
    with pytest.raises(LoadError, match="unknown operation kind 'bogus'"):
        request_for("bogus", 0, SETTINGS)
    with pytest.raises(LoadError, match="unknown operation kind 'bogus'"):
        GraphQLLoad(
            LoadSettings(url="http://127.0.0.1:1", mix=(("bogus", 1.0),)),
            GUARD,
            static_policy(None),
        )


# ---------------------------------------------------------------- FraiseQL's answers
# Observed on the lab (production mode) with the driver's own request bodies.

HEALTH = '{"status":"healthy","service":"fraiseql"}'
READY = '{"status":"ready","checks":{"database":"ok","schema":"ok"},"timestamp":1795697691.2665362}'
# 1.9.16 while the app role could not connect (the pool's 5 s timeout, then 503).
NOT_READY = (
    '{"status":"not_ready","checks":{"database":"failed: couldn\'t get a connection after 5.00'
    ' sec","schema":"ok"},"timestamp":1795697665.2128904}'
)
NOT_FOUND = '{"detail":"Not Found"}'  # GET /ready on 0.5.3
SLOW_OK = '{"data":{"slowQuery":{"seconds":0.3,"sleptMs":301.482}}}'
SLOW_TIMEOUT = (
    '{"data":{"slowQuery":null},"errors":[{"message":"canceling statement due to statement '
    'timeout\\nCONTEXT:  SQL statement \\"SELECT pg_sleep(seconds)\\"\\nPL/pgSQL function '
    'core.slow_query(jsonb) line 6 at PERFORM","locations":[{"line":1,"column":27}],'
    '"path":["slowQuery"]}]}'
)
LARGE_19 = (
    '{"data":{"items":[{"__typename":"Item","id":"00000000-0000-4000-a000-000000000001","n":1,'
    '"name":"Item 1","payload":"c4ca4238a0b923820dcc509a6f75849bc4ca4238a0b923820dcc509a6f7584'
    '9bc4ca4238a0b923820dcc509a6f75849b"},{"__typename":"Item","id":"00000000-0000-4000-a000-'
    '000000000002","n":2,"name":"Item 2","payload":"c81e728d9d4c2f636f067f89cc14862cc81e728d9d4'
    'c2f636f067f89cc14862cc81e728d9d4c2f636f067f89cc14862c"}]}}'
)
# 0.5.3: `n` is an Int in the schema but comes back as a JSON string (its SQL uses ->>).
LARGE_05 = (
    '{"data": {"items": [{"n": "1", "id": "00000000-0000-4000-a000-000000000001", "name": '
    '"Item 1", "payload": "c4ca4238a0b923820dcc509a6f75849bc4ca4238a0b923820dcc509a6f75849bc4c'
    'a4238a0b923820dcc509a6f75849b", "__typename": "Item"}, {"n": "2", "id": "00000000-0000-40'
    '00-a000-000000000002", "name": "Item 2", "payload": "c81e728d9d4c2f636f067f89cc14862cc81e7'
    '28d9d4c2f636f067f89cc14862cc81e728d9d4c2f636f067f89cc14862c", "__typename": "Item"}]}}'
)
SYNTAX = (
    '{"errors":[{"message":"Syntax Error: Expected Name, found <EOF>.","locations":'
    '[{"line":1,"column":24}]}]}'
)
# Production mode validates nothing but introspection: the unknown field is answered.
UNKNOWN_FIELD_19 = (
    '{"data":{"items":[{"__typename":"Item","id":"00000000-0000-4000-a000-000000000001"}]}}'
)
UNKNOWN_FIELD_05 = (
    '{"data": {"items": [{"id": "00000000-0000-4000-a000-000000000001", "notAField": null, '
    '"__typename": "Item"}]}}'
)
CYCLE = (
    '{"data":{"items":null},"errors":[{"message":"maximum recursion depth exceeded",'
    '"locations":[{"line":1,"column":9}],"path":["items"]}]}'
)
TOO_DEEP = (
    '{"errors":[{"message":"Syntax Error: Document is nested too deeply. Parsing aborted.",'
    '"locations":[{"line":1,"column":2805}]}]}'
)
INTROSPECTION_OFF = (
    '{"errors":[{"message":"GraphQL introspection has been disabled, but the requested query '
    'contained the field \'__schema\'.","locations":[{"line":1,"column":3}]},{"message":'
    '"GraphQL introspection has been disabled, but the requested query contained the field '
    '\'types\'.","locations":[{"line":1,"column":14}]}]}'
)
TRANSFER_OK = (
    '{"data":{"transfer":{"status":"success","message":"transfer cap-543be7-0 made at read '
    'committed","isolation":"read committed","fromBalance":90,"toBalance":110}}}'
)
TRANSFER_DUPLICATE = (
    '{"data":{"transfer":{"status":"noop:duplicate","message":"transfer cap-543be7-0 was '
    'already made","isolation":"read committed","fromBalance":null,"toBalance":null}}}'
)
TRANSFER_REFUSED = (
    '{"data":{"transfer":{"status":"failed:insufficient_funds","message":"group cap-543be7 '
    'holds 300, cannot withdraw 1000","isolation":null,"fromBalance":null,"toBalance":null}}}'
)
SERIALIZATION_FAILURE = (
    '{"data":{"transfer":null},"errors":[{"message":"could not serialize access due to '
    "read/write dependencies among transactions\\nDETAIL:  Reason code: Canceled on "
    "identification as a pivot, during commit attempt.\\nHINT:  The transaction might succeed "
    'if retried.","locations":[{"line":1,"column":36}],"path":["transfer"]}]}'
)
CONCURRENT_UPDATE = (
    '{"data":{"transfer":null},"errors":[{"message":"could not serialize access due to '
    'concurrent update\\nCONTEXT:  SQL statement \\"UPDATE core.tb_account SET balance = '
    "v_to_balance + v_amount, updated_at = clock_timestamp()\\n        WHERE grp = v_grp AND "
    'name = v_to\\"\\nPL/pgSQL function core.transfer(jsonb) line 47 at SQL statement\\nSQL '
    'function \\"transfer\\" statement 1","locations":[{"line":1,"column":36}],'
    '"path":["transfer"]}]}'
)
DEADLOCK = (
    '{"data":{"transfer":null},"errors":[{"message":"deadlock detected\\nDETAIL:  Process 3529 '
    "waits for ShareLock on transaction 755; blocked by process 3362.\\nHINT:  See server log "
    'for query details.","locations":[{"line":1,"column":36}],"path":["transfer"]}]}'
)
BAD_ISOLATION = (
    '{"data":{"transfer":null},"errors":[{"message":"isolation must be one of read_uncommitted,'
    ' read_committed, repeatable_read, serializable, got \'bogus\'","locations":[{"line":1,'
    '"column":36}],"path":["transfer"]}]}'
)
SNAPSHOT = (
    '{"data":{"accountSnapshot":{"isolation":"read committed","accounts":3,"total":300,'
    '"initialTotal":300,"withdrawn":0,"minBalance":90,"transfers":1,"totalAgain":300,'
    '"initialTotalAgain":300,"withdrawnAgain":0,"transfersAgain":1}}}'
)


@pytest.mark.parametrize(
    ("kind", "status", "text", "outcome", "error"),
    [
        ("health", 200, HEALTH, "ok", None),
        ("ready", 200, READY, "ok", None),
        ("ready", 503, NOT_READY, "fail", "HTTP 503: " + NOT_READY),
        ("ready", 404, NOT_FOUND, "fail", 'HTTP 404: {"detail":"Not Found"}'),
        ("health", 502, "", "fail", "HTTP 502"),
        ("slow", 200, SLOW_OK, "ok", None),
        ("slow", 200, SLOW_TIMEOUT, "fail", "canceling statement due to statement timeout"),
        ("large", 200, LARGE_19, "ok", None),
        ("large", 200, LARGE_05, "ok", None),
        ("invalid", 200, SYNTAX, "fail", "Syntax Error: Expected Name, found <EOF>."),
        ("invalid", 200, CYCLE, "fail", "maximum recursion depth exceeded"),
        ("invalid", 200, TOO_DEEP, "fail", "Syntax Error: Document is nested too deeply."),
        # FraiseQL answered invalid GraphQL with data: `ok` is the deviation checks look for.
        ("invalid", 200, UNKNOWN_FIELD_19, "ok", None),
        ("invalid", 200, UNKNOWN_FIELD_05, "ok", None),
        ("introspection", 200, INTROSPECTION_OFF, "fail", "GraphQL introspection has been"),
        ("transfer", 200, TRANSFER_OK, "ok", None),
        ("transfer", 200, TRANSFER_DUPLICATE, "fail", "noop:duplicate: transfer cap-543be7-0"),
        ("transfer", 200, TRANSFER_REFUSED, "fail", "failed:insufficient_funds: group"),
        # PostgreSQL rolled these back: definitely not applied.
        ("transfer", 200, SERIALIZATION_FAILURE, "fail", "could not serialize access due to"),
        ("transfer", 200, CONCURRENT_UPDATE, "fail", "could not serialize access due to"),
        ("transfer", 200, DEADLOCK, "fail", "deadlock detected"),
        # Any other error after the request was sent: the effect is unknown.
        ("transfer", 200, BAD_ISOLATION, "info", "isolation must be one of"),
        ("transfer", 500, "Internal Server Error", "info", "Internal Server Error"),
        ("snapshot_read", 200, SNAPSHOT, "ok", None),
    ],
)
def test_answers_are_classified(kind, status, text, outcome, error):
    verdict = judge(kind, status, text)
    assert verdict.outcome == outcome
    assert not verdict.auth_rejected
    if error is None:
        assert verdict.error is None
    else:
        assert verdict.error is not None and verdict.error.startswith(error), verdict.error


def test_answers_keep_what_checks_need():
    assert judge("large", 200, LARGE_19).detail == {"rows": 2}
    assert judge("transfer", 200, TRANSFER_OK).detail == {"isolation": "read committed"}
    assert judge("snapshot_read", 200, SNAPSHOT).detail == {
        "isolation": "read committed",
        "accounts": 3,
        "total": 300,
        "initial_total": 300,
        "withdrawn": 0,
        "min_balance": 90,
        "transfers": 1,
        "total_again": 300,
        "initial_total_again": 300,
        "withdrawn_again": 0,
        "transfers_again": 1,
    }


def test_a_probe_refused_by_auth_is_still_only_a_failed_probe():
    verdict = judge("invalid", 401, '{"detail":"Authentication required"}')
    assert (verdict.outcome, verdict.auth_rejected) == ("fail", True)


# ---------------------------------------------------------------- per line


def test_ready_is_refused_for_the_line_without_it():
    assert line_problem(["health", "ready"], "1.9.16") is None
    problem = line_problem(["query", "ready"], "0.5.3")
    assert problem == (
        "operation 'ready' is not served by FraiseQL 0.5.3: GET /ready exists since "
        "FraiseQL 1.8; 0.5.x has /health only"
    )
    assert line_problem(["health"], "0.5.3") is None
    with pytest.raises(LoadError, match=r"'ready' is not served by FraiseQL 0\.5\.3"):
        GraphQLLoad(
            LoadSettings(url="http://127.0.0.1:1", mix=(("ready", 1.0),), line="0.5.3"),
            GUARD,
            static_policy(None),
        )
    # A kind with weight 0 is never sent, so it is not refused.
    GraphQLLoad(
        LoadSettings(url="http://127.0.0.1:1", mix=(("ready", 0.0), ("health", 1.0)), line="0.5.3"),
        GUARD,
        static_policy(None),
    )


# ---------------------------------------------------------------- load.params


def write_scenario(tmp_path: Path, load: str) -> Path:
    path = tmp_path / "db.example.yml"
    path.write_text(
        "id: db.example\nphase: 2\ndescription: operations\nexpect: {class: fail-fast}\n"
        f"load: {load}\n"
    )
    return path


def test_load_params_reach_the_scenario(tmp_path):
    path = write_scenario(
        tmp_path,
        "{rate: 5, mix: {slow: 1, transfer: 2, snapshot_read: 1}, "
        "params: {slow_s: 3, isolation: serializable, transfer_mode: withdraw}}",
    )
    (loaded,) = scenario.load_file(path)
    assert loaded.doc.load.params == OperationParams(
        slow_s=3.0, isolation="serializable", transfer_mode="withdraw"
    )
    assert loaded.as_dict()["load"]["params"]["slow_s"] == 3.0
    (plain,) = scenario.load_file(write_scenario(tmp_path, "{rate: 5}"))
    assert plain.doc.load.params == OperationParams()


@pytest.mark.parametrize(
    ("params", "key", "message"),
    [
        ("{slow_seconds: 2}", "load.params.slow_seconds", "unknown key (allowed: account_group"),
        ("{slow_s: 601}", "load.params.slow_s", "must be in [0, 600], got 601.0"),
        ("{slow_s: fast}", "load.params.slow_s", "expected a number, got 'fast'"),
        ("{large_limit: 20000}", "load.params.large_limit", "must be in [1, 10000]"),
        ("{large_limit: 2.5}", "load.params.large_limit", "expected an integer, got 2.5"),
        ("{isolation: snapshot}", "load.params.isolation", "expected one of 'read_uncommitted'"),
        ("{transfer_mode: steal}", "load.params.transfer_mode", "expected one of 'move'"),
        ("{accounts: 1}", "load.params.accounts", "must be in [2, 26], got 1"),
        ("{transfer_hold_s: -1}", "load.params.transfer_hold_s", "must be in [0, 60]"),
        ("[slow_s]", "load.params", "expected a mapping (OperationParams)"),
    ],
)
def test_bad_load_params_name_the_leaf_key(tmp_path, params, key, message):
    path = write_scenario(tmp_path, f"{{rate: 5, mix: {{slow: 1}}, params: {params}}}")
    with pytest.raises(ConfigError) as err:
        scenario.load_file(path)
    assert f"{path.name}: {key}: {message}" in str(err.value)


def test_an_unknown_operation_in_the_mix_names_the_allowed_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        scenario.load_file(write_scenario(tmp_path, "{rate: 5, mix: {slowly: 1}}"))
    assert "load.mix" in str(err.value) and "snapshot_read" in str(err.value)


# ---------------------------------------------------------------- the driver, end to end


class Handler(BaseHTTPRequestHandler):
    """Answers the way the lab did: /health 200, /ready 503, GraphQL by query."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, HEALTH) if self.path == "/health" else self._send(503, NOT_READY)

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["content-length"])))["query"]
        if "accountSnapshot" in query:
            self._send(200, SNAPSHOT)
        elif "transfer(" in query:
            self._send(200, SERIALIZATION_FAILURE)
        else:
            self._send(200, SYNTAX)


@pytest.fixture(scope="module")
def server():
    with serve(Handler) as url:
        yield url


def test_the_driver_records_probes_refusals_and_reads(server, tmp_path):
    kinds = ("health", "ready", "invalid", "transfer", "snapshot_read")
    settings = LoadSettings(
        url=server, mode="closed", concurrency=2, max_ops=40, mix=tuple((k, 1.0) for k in kinds)
    )
    load = GraphQLLoad(settings, GUARD, static_policy("Bearer t"))
    load.start()
    load.wait()
    ops = list(load.history())
    by_kind = {k: [o for o in ops if o.kind == k] for k in kinds}
    assert all(by_kind.values()), {k: len(v) for k, v in by_kind.items()}
    assert all(o.outcome == "ok" and o.status == 200 for o in by_kind["health"])
    assert all(o.outcome == "fail" and o.status == 503 for o in by_kind["ready"])
    assert all(o.outcome == "fail" for o in by_kind["transfer"])
    assert all(o.detail["variant"] in INVALID_VARIANTS for o in by_kind["invalid"])
    assert all(o.detail["total"] == 300 for o in by_kind["snapshot_read"])
    # The detail survives the history file.
    path = tmp_path / "h.jsonl"
    History(ops).write_jsonl(path)
    assert sorted(History.read_jsonl(path), key=lambda o: o.index) == sorted(
        ops, key=lambda o: o.index
    )


# ---------------------------------------------------------------- invariants


def test_accounts_that_kept_every_invariant():
    accounts = [Account("a", 80, 100), Account("b", 110, 100), Account("c", 100, 100)]
    transfers = [Transfer("a", "b", 10), Transfer("a", None, 10)]
    check = check_accounts(accounts, transfers)
    assert (check.initial_total, check.total, check.withdrawn) == (300, 290, 10)
    assert check.ok and check.conserved and check.rule_held and check.drift == 0


def test_a_lost_update_shows_even_when_the_totals_balance():
    # a->b 10 and b->c 10 committed, but b's credit overwrote the concurrent debit.
    accounts = [Account("a", 90, 100), Account("b", 110, 100), Account("c", 110, 100)]
    check = check_accounts(accounts, [Transfer("a", "b", 10), Transfer("b", "c", 10)])
    assert check.drift == 10 and not check.conserved
    assert check.mismatched == {"b": 10}
    assert not check.ok


def test_a_write_skew_breaks_the_groups_rule():
    accounts = [Account("a", -60, 100), Account("b", -60, 100), Account("c", -60, 100)]
    transfers = [Transfer(n, None, 160) for n in "abc"]
    check = check_accounts(accounts, transfers)
    assert check.conserved and not check.mismatched
    assert not check.rule_held and check.total == -180


def snapshot(index: int, **seen: object) -> Operation:
    detail = {
        "isolation": "read committed",
        "total": 300,
        "initial_total": 300,
        "withdrawn": 0,
        "transfers": 1,
        "total_again": 300,
        "initial_total_again": 300,
        "withdrawn_again": 0,
        "transfers_again": 1,
        **seen,
    }
    return Operation(index, "snapshot_read", 0, 1, "ok", status=200, detail=detail)


def test_snapshot_reads_are_checked_against_the_invariants_and_their_level():
    ops = [
        snapshot(0),
        snapshot(1, total=290),  # a debit seen without its credit
        # A withdrawal committed between the reads: allowed at READ COMMITTED.
        snapshot(2, total_again=280, withdrawn_again=20, transfers_again=2),
        snapshot(3, isolation="repeatable read", transfers_again=2, total_again=300),
        snapshot(4, total=-20, withdrawn=320),  # the rule broken (write skew)
        Operation(5, "snapshot_read", 0, 1, "fail", error="boom"),
        Operation(6, "query", 0, 1, "ok"),
    ]
    check = check_snapshots(ops)
    assert check.reads == 5
    assert check.broken == {
        1: "total 290 + withdrawn 0 != opened with 300",
        4: "group total -20 below zero",
    }
    assert check.non_repeatable == (2,)
    assert check.phantoms == (2, 3)
    assert check.unexpected == {3: "phantom read at repeatable read"}
    assert not check.ok
    assert check_snapshots([snapshot(0), snapshot(1, transfers_again=3)]).ok


def test_reads_keep_a_digest_of_their_answer_and_equal_answers_share_it():
    from chaos_runner.workload.operations import answer_digest, judge

    one = judge("query", 200, '{"data": {"posts": [{"id": 1, "title": "a"}]}}')
    same = judge("query", 200, '{"data": {"posts": [{"title": "a", "id": 1}]}}')
    other = judge("nested", 200, '{"data": {"posts": [{"id": 1, "title": "b"}]}}')
    assert (
        one.detail == same.detail == {"answer": answer_digest({"posts": [{"id": 1, "title": "a"}]})}
    )
    assert other.detail is not None and other.detail["answer"] != one.detail["answer"]
    assert judge("mutation", 200, '{"data": {"x": {"ok": true}}}').detail is None


def test_invalid_requests_can_all_be_one_variant():
    from chaos_runner.workload.operations import INVALID_VARIANTS, OperationParams

    mixed = LoadSettings(url="http://127.0.0.1:1")
    assert {request_for("invalid", i, mixed).detail["variant"] for i in range(8)} == set(
        INVALID_VARIANTS
    )
    one = LoadSettings(url="http://127.0.0.1:1", params=OperationParams(invalid_variant="syntax"))
    assert {request_for("invalid", i, one).detail["variant"] for i in range(8)} == {"syntax"}
