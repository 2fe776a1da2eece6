"""The isolation checks on hand-built account groups and histories: the level in effect,
transfers committed exactly as answered, snapshot reads that ran, and each anomaly either
documented at its level and declared by the scenario (reported) or a deviation. Also the
evaluation's side of it: isolation refusals kept out of the service load, the fault
window of fault-free and one-shot scenarios.

The group below: accounts a, b, c opened with 100 each (300 in all).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from chaos_runner.analysis.checkers import CheckResult, Evidence, consistent, judge
from chaos_runner.analysis.evaluate import fault_window, isolation_refusal, service_ops
from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.invariants import Account, Transfer
from chaos_runner.analysis.isolation import DOCUMENTED_ANOMALIES, IsolationEvidence, isolation
from chaos_runner.analysis.metrics import Pooled, Slo
from chaos_runner.errors import ConfigError
from chaos_runner.model.build import build
from chaos_runner.model.scenario import ANOMALIES, Expect

MS = 1_000_000
PREFIX = "db.x-1-abc123"
OPENED = (Account("a", 100, 100), Account("b", 100, 100), Account("c", 100, 100))


def op(index: int, kind: str, start_ms: float, end_ms: float, outcome: str = "ok", **kw: Any):
    return Operation(
        index=index,
        kind=kind,
        start_ns=int(start_ms * MS),
        end_ns=int(end_ms * MS),
        outcome=outcome,  # type: ignore[arg-type]
        **kw,
    )


def transfer(index: int, start_ms: float, end_ms: float, outcome: str = "ok", **kw: Any):
    detail = kw.pop("detail", {"isolation": kw.pop("level", "serializable")})
    return op(index, "transfer", start_ms, end_ms, outcome, detail=detail, **kw)


def read(index: int, start_ms: float, end_ms: float, level: str = "serializable", **seen: Any):
    detail = {
        "isolation": level,
        "total": 300,
        "initial_total": 300,
        "withdrawn": 0,
        "transfers": 2,
        "total_again": 300,
        "initial_total_again": 300,
        "withdrawn_again": 0,
        "transfers_again": 2,
    }
    detail.update(seen)
    return op(index, "snapshot_read", start_ms, end_ms, detail=detail)


# a->b 10 (op 0) and b->c 10 (op 2) committed; op 4 refused by SERIALIZABLE.
BALANCED = (Account("a", 90, 100), Account("b", 100, 100), Account("c", 110, 100))
TWO_MOVES = (Transfer("a", "b", 10), Transfer("b", "c", 10))
HISTORY = (
    transfer(0, 0, 50),
    read(1, 10, 120),
    transfer(2, 100, 150),
    transfer(
        4, 110, 160, "fail", error="could not serialize access due to read/write dependencies"
    ),
)


def iso(level: str = "serializable", **kw: Any) -> IsolationEvidence:
    values: dict[str, Any] = {
        "level": level,
        "group": PREFIX,
        "op_prefix": PREFIX,
        "ops": HISTORY,
        "accounts": BALANCED,
        "transfers": TWO_MOVES,
        "committed": frozenset({f"{PREFIX}-0", f"{PREFIX}-2"}),
        "concurrency_required": True,
    }
    values.update(kw)
    return IsolationEvidence(**values)


def evidence(class_: str = "consistent", permitted: tuple[str, ...] = (), **kw: Any) -> Evidence:
    return Evidence(
        expect=Expect(class_=class_, permitted_anomalies=list(permitted)),  # type: ignore[arg-type]
        valid_ops=[],
        probe_ops=[],
        windows=[],
        baseline=Pooled(10, 5.0, 10.0, 12.0, 10.0, 10.0),
        slo=Slo(p95_ms=50),
        fault_start_ns=None,
        fault_end_ns=None,
        heal_end_ns=None,
        recovery_ns=None,
        hang_limit_s=11.0,
        max_rss_mb=100.0,
        process_samples=40,
        isolation=iso(**kw),
    )


def by_name(checks: list[CheckResult]) -> dict[str, CheckResult]:
    return {c.name: c for c in checks}


def test_serializable_without_anomaly_passes_every_check():
    checks = by_name(isolation(evidence()))
    assert set(checks) == {
        "isolation level in effect",
        "transfers committed as answered",
        "snapshot reads",
        "isolation anomalies at serializable",
    }
    assert all(c.ok for c in checks.values()), checks
    assert checks["isolation level in effect"].measured == {"serializable": 3}
    assert checks["transfers committed as answered"].measured == (
        "2 acknowledged, 0 missing, 0 refused but committed"
    )
    assert "refused: 1 serialization failures, 0 deadlocks, 0 by the group's rule" in (
        checks["transfers committed as answered"].detail
    )
    assert checks["snapshot reads"].measured == "1 read, 1 while a transfer ran"
    anomalies = checks["isolation anomalies at serializable"]
    assert anomalies.measured == "none"
    assert anomalies.expected.endswith(": none")
    # read 1 overlaps transfers 0 and 2; transfers 2 and 4 overlap each other, and 0 and 2
    # do not: 2 transfers + 1 read overlapped.
    assert "total 300, withdrawn 0, opened with 300; 2 committed transfers; 3 operations" in (
        anomalies.detail
    )


# b should hold 120 after a->b and c->b; one credit was overwritten: 10 lost.
LOST = (Account("a", 90, 100), Account("b", 110, 100), Account("c", 90, 100))
INTO_B = (Transfer("a", "b", 10), Transfer("c", "b", 10))


def test_a_lost_update_declared_at_read_committed_is_reported_not_a_deviation():
    ev = evidence(
        permitted=("lost-update", "write-skew"),
        level="read committed",
        accounts=LOST,
        transfers=INTO_B,
        # two transfers into b at once, each answer reporting the level it ran at
        ops=(
            transfer(0, 0, 50, level="read committed"),
            transfer(2, 10, 60, level="read committed"),
        ),
    )
    check = by_name(isolation(ev))["isolation anomalies at read committed"]
    assert check.ok, check
    assert check.measured == {
        "lost-update": "1 account(s) off their committed transfers, -10 created (+) or lost (-)"
    }
    assert "(documented at read committed, reported)" in check.detail
    assert check.expected.endswith(": lost-update, write-skew")


def test_the_same_lost_update_at_serializable_is_a_deviation():
    ev = evidence(accounts=LOST, transfers=INTO_B)
    check = by_name(isolation(ev))["isolation anomalies at serializable"]
    assert not check.ok
    assert "lost-update: 1 account(s) off" in check.detail
    assert "(not permitted at serializable)" in check.detail


def test_a_declared_anomaly_the_level_does_not_document_is_still_a_deviation():
    # REPEATABLE READ refuses a concurrent update (40001): a lost update there is a bug,
    # whatever the scenario declares.
    ev = evidence(permitted=("lost-update",), accounts=LOST, transfers=INTO_B)
    ev.isolation = iso(level="repeatable read", accounts=LOST, transfers=INTO_B)
    check = by_name(isolation(ev))["isolation anomalies at repeatable read"]
    assert not check.ok
    assert "declared, but PostgreSQL documents none at repeatable read" in check.detail


# a and b opened with 10 each; withdrawals a 10, b 10, a 10 all committed: the group's
# total is -10 (write skew), yet every balance matches its transfers and money is
# conserved (-10 held + 30 withdrawn = 20 opened).
SKEWED = (Account("a", -10, 10), Account("b", 0, 10))
WITHDRAWALS = (Transfer("a", None, 10), Transfer("b", None, 10), Transfer("a", None, 10))


@pytest.mark.parametrize(
    ("level", "permitted", "ok"),
    [
        ("repeatable read", ("write-skew",), True),
        ("read committed", ("lost-update", "write-skew"), True),
        ("serializable", (), False),
        ("repeatable read", (), False),  # documented there, but the scenario did not say so
    ],
)
def test_write_skew_per_level(level, permitted, ok):
    ev = evidence(permitted=permitted)
    ev.isolation = iso(level=level, accounts=SKEWED, transfers=WITHDRAWALS)
    check = by_name(isolation(ev))[f"isolation anomalies at {level}"]
    assert check.ok is ok
    assert check.measured == {"write-skew": "group total -10 below zero"}


def test_a_read_of_uncommitted_data_is_never_permitted():
    # 290 + 0 withdrawn != 300 opened: a debit seen without its credit.
    dirty = read(1, 10, 120, level="read uncommitted", total_again=290)
    loose = DOCUMENTED_ANOMALIES["read uncommitted"]
    ev = evidence(permitted=tuple(sorted(loose)))
    ev.isolation = iso(
        level="read uncommitted",
        ops=(transfer(0, 0, 50, level="read uncommitted"), dirty),
    )
    check = by_name(isolation(ev))["isolation anomalies at read uncommitted"]
    assert not check.ok
    assert set(check.measured) == {"dirty-read"}
    assert "total 290 + withdrawn 0 != opened with 300" in check.measured["dirty-read"]
    with pytest.raises(ConfigError, match=r"permitted_anomalies\[0\]: PostgreSQL never reads"):
        build(Expect, {"class": "consistent", "permitted_anomalies": ["dirty-read"]}, "s.yml")
    with pytest.raises(ConfigError, match=r"permitted_anomalies\[1\]: unknown anomaly 'skew'"):
        build(Expect, {"class": "consistent", "permitted_anomalies": ["write-skew", "skew"]}, "s")
    assert "dirty-read" in ANOMALIES and "dirty-read" not in set().union(
        *DOCUMENTED_ANOMALIES.values()
    )


@pytest.mark.parametrize(
    ("level", "permitted", "ok"),
    [
        ("read committed", ("non-repeatable-read", "phantom-read"), True),
        ("repeatable read", (), False),
        ("serializable", ("non-repeatable-read", "phantom-read"), False),
    ],
)
def test_a_read_that_changes_within_its_transaction(level, permitted, ok):
    # A withdrawal of 5 committed between the two reads: balances and row count changed.
    changed = read(1, 10, 120, level=level, total_again=295, withdrawn_again=5, transfers_again=3)
    ev = evidence(permitted=permitted)
    ev.isolation = iso(level=level, ops=(transfer(0, 50, 60, level=level), changed))
    check = by_name(isolation(ev))[f"isolation anomalies at {level}"]
    assert check.ok is ok
    assert check.measured == {
        "non-repeatable-read": "1 read(s) changed",
        "phantom-read": "1 read(s) saw new transfers",
    }


def test_transfers_must_be_committed_exactly_as_answered():
    ev = evidence()
    ev.isolation = iso(
        ops=(
            transfer(0, 0, 50),  # ok and committed
            transfer(2, 0, 50),  # ok but not committed: lost
            transfer(4, 0, 50, "fail", error="could not serialize access"),  # committed!
            transfer(6, 0, 50, "info", error="timed out"),  # unknown, committed
            transfer(8, 0, 50, "fail", error="failed:insufficient_funds: group holds 0"),
        ),
        committed=frozenset({f"{PREFIX}-0", f"{PREFIX}-4", f"{PREFIX}-6"}),
    )
    check = by_name(isolation(ev))["transfers committed as answered"]
    assert not check.ok
    assert check.measured == "2 acknowledged, 1 missing, 1 refused but committed"
    assert check.detail.startswith(f"refused but committed: {PREFIX}-4; acknowledged but not ")
    assert "1 serialization failures, 0 deadlocks, 1 by the group's rule, 0 otherwise" in (
        check.detail
    )
    assert check.detail.endswith("unknown: 1 committed, 0 not")


def test_no_acknowledged_transfer_proves_nothing():
    ev = evidence()
    ev.isolation = iso(ops=(transfer(0, 0, 50, "fail", error="could not serialize access"),))
    check = by_name(isolation(ev))["transfers committed as answered"]
    assert not check.ok and check.detail == "no acknowledged transfer: nothing to check"


def test_the_level_in_effect_must_be_the_one_asked_for():
    ev = evidence()
    ev.isolation = iso(ops=(transfer(0, 0, 50, level="read committed"),))
    check = by_name(isolation(ev))["isolation level in effect"]
    assert not check.ok
    assert check.measured == {"read committed": 1} and check.detail == "asked for serializable"
    ev.isolation = iso(ops=(transfer(0, 0, 50, "fail", error="x"),))
    check = by_name(isolation(ev))["isolation level in effect"]
    assert not check.ok and check.detail == "no successful transfer or read reported its level"


def test_without_a_fault_operations_that_never_overlapped_tested_nothing():
    apart = (transfer(0, 0, 50), read(1, 100, 150), transfer(2, 200, 250))
    ev = evidence()
    ev.isolation = iso(ops=apart)
    checks = by_name(isolation(ev))
    assert not checks["snapshot reads"].ok
    assert checks["snapshot reads"].detail == "no read overlapped a transfer: nothing tested"
    anomalies = checks["isolation anomalies at serializable"]
    assert not anomalies.ok
    assert anomalies.detail.startswith("no transfer overlapped another operation")
    # With a fault (net.corrupt, db.index-disabled) the fault is the stress: no overlap needed.
    ev.isolation = iso(ops=apart, concurrency_required=False)
    assert all(c.ok for c in isolation(ev))


def test_the_group_is_consistency_evidence_and_other_classes_report_it_too():
    checks = by_name(consistent(evidence()))
    assert "consistency evidence" not in checks
    assert "isolation anomalies at serializable" in checks
    outcome, all_checks = judge(evidence("tolerate"))
    names = [c.name for c in all_checks]
    assert names.count("isolation anomalies at serializable") == 1
    outcome, all_checks = judge(evidence("consistent"))
    assert [c.name for c in all_checks].count("isolation anomalies at serializable") == 1
    assert outcome == "passed", [c for c in all_checks if not c.ok]


def test_isolation_refusals_stay_out_of_the_service_load():
    ops = [
        transfer(0, 0, 10, "fail", error="could not serialize access due to concurrent update"),
        transfer(1, 0, 10, "fail", error="deadlock detected"),
        transfer(2, 0, 10, "fail", error="failed:insufficient_funds: group g holds 0"),
        op(3, "snapshot_read", 0, 10, "fail", error="could not serialize access"),
        transfer(4, 0, 10, "fail", error="failed:not_found: no such account"),
        op(5, "query", 0, 10, "fail", error="could not serialize access"),
        transfer(6, 0, 10),
    ]
    assert [isolation_refusal(o) for o in ops] == [True, True, True, True, False, False, False]
    assert [o.index for o in service_ops(ops)] == [4, 5, 6]


class Marks:
    def __init__(self, **marks: int) -> None:
        self.marks = marks

    def first(self, event: str) -> int | None:
        return self.marks.get(event.replace("-", "_"))


class Planned:
    def __init__(self, faults: int) -> None:
        self.faults = [object()] * faults

    def all_faults(self) -> list[object]:
        return self.faults


def test_the_fault_window_of_fault_free_and_one_shot_scenarios():
    marks = Marks(inject_start=100, fault_holding=900, heal_start=2000, hold_end=2100)
    # No fault: the load is the stress, the hold the window.
    assert fault_window(Planned(0), [], marks) == (100, 2100)  # type: ignore[arg-type]
    # A restart returns once the program runs again: the window opens at its inject.
    restart = {"kind": "proc.restart", "inject_ns": 120, "params": {"program": "postgresql"}}
    assert fault_window(Planned(1), [restart], marks) == (120, 2000)  # type: ignore[arg-type]
    once = {"kind": "pg.terminate", "inject_ns": 150, "params": {"which": "all"}}
    assert fault_window(Planned(1), [once], marks) == (150, 2000)  # type: ignore[arg-type]
    # A fault that holds (a loop of terminations, a partition) opens it when it holds.
    loop = {"kind": "pg.terminate", "inject_ns": 150, "params": {"interval_ms": 500}}
    lock = {"kind": "pg.lock", "inject_ns": 150, "params": {}}
    assert fault_window(Planned(2), [loop, lock], marks) == (900, 2000)  # type: ignore[arg-type]


class FakeConnection:
    """Stands in for psycopg: records the statements and the transaction's settings."""

    def __init__(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        self.rows = rows
        self.sql: list[tuple[str, tuple[Any, ...]]] = []
        self.isolation_level: Any = None
        self.read_only: bool | None = None
        self.in_transaction: list[bool] = []
        self._open = False

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @contextlib.contextmanager
    def transaction(self):  # type: ignore[no-untyped-def]
        self._open = True
        yield
        self._open = False

    def execute(self, sql: str, params: tuple[Any, ...]) -> FakeConnection:
        self.sql.append((sql, params))
        self.in_transaction.append(self._open)
        self._last = next(v for k, v in self.rows.items() if k in sql)
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._last


def test_the_group_is_read_from_postgresql_in_one_snapshot(monkeypatch):
    import psycopg

    from chaos_runner.analysis.ledger import GroupRows, LedgerStore

    conn = FakeConnection(
        {
            "core.tb_account": [("a", 90, 100), ("b", 110, 100)],
            "core.tb_transfer": [(f"{PREFIX}-0", "a", "b", 10), (f"{PREFIX}-3", "b", None, 5)],
        }
    )
    monkeypatch.setattr(LedgerStore, "connect", lambda self, timeout_s=5: conn)
    rows = LedgerStore("192.0.2.1").accounts(PREFIX)
    assert rows == GroupRows(
        PREFIX,
        (Account("a", 90, 100), Account("b", 110, 100)),
        (Transfer("a", "b", 10), Transfer("b", None, 5)),
        frozenset({f"{PREFIX}-0", f"{PREFIX}-3"}),
    )
    assert [s for s, _ in conn.sql] == [
        "SELECT name, balance, initial FROM core.tb_account WHERE grp = %s",
        "SELECT op_id, from_name, to_name, amount FROM core.tb_transfer WHERE grp = %s",
    ]
    assert all(p == (PREFIX,) for _, p in conn.sql) and conn.in_transaction == [True, True]
    assert conn.isolation_level == psycopg.IsolationLevel.REPEATABLE_READ and conn.read_only
