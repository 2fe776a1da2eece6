"""Isolation experiments judged against PostgreSQL's ground truth: the level in effect,
transfers applied exactly as answered, snapshot reads that ran, and the anomalies seen per
isolation level (documented ones reported when the scenario declares them, others a
deviation; SERIALIZABLE must show none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chaos_runner.analysis.checks import CheckResult
from chaos_runner.analysis.history import Operation
from chaos_runner.analysis.invariants import (
    Account,
    Transfer,
    check_accounts,
    check_snapshots,
)
from chaos_runner.workload.operations import ROLLED_BACK

if TYPE_CHECKING:
    from chaos_runner.analysis.checkers import Evidence

# The operations of the isolation experiments (demo app: core.transfer, account_snapshot).
ISOLATION_KINDS = frozenset({"transfer", "snapshot_read"})
# A transfer the group's rule refused: a withdrawal the group cannot cover.
RULE_REFUSALS = ("failed:insufficient_funds",)
SERIALIZATION_FAILURE, DEADLOCK = ROLLED_BACK


def isolation_refusal(op: Operation) -> bool:
    """A transfer or snapshot read PostgreSQL rolled back at its isolation level (40001,
    40P01) or the group's rule refused: the documented answer to concurrent transactions,
    judged by the isolation checks, not a service error."""
    if op.outcome != "fail" or op.kind not in ISOLATION_KINDS:
        return False
    text = op.error or ""
    return any(w in text for w in ROLLED_BACK) or text.startswith(RULE_REFUSALS)


_PG_LOOSE = frozenset({"non-repeatable-read", "phantom-read", "lost-update", "write-skew"})
# What PostgreSQL documents per isolation level (transaction_isolation as it reports it)
# for the account experiments' read-then-write transactions: READ UNCOMMITTED behaves as
# READ COMMITTED; REPEATABLE READ refuses to update a row changed since its snapshot
# (40001: no lost update) but lets two transactions write different rows from one
# snapshot (write skew); SERIALIZABLE allows none; no level ever reads uncommitted data.
DOCUMENTED_ANOMALIES: dict[str, frozenset[str]] = {
    "read uncommitted": _PG_LOOSE,
    "read committed": _PG_LOOSE,
    "repeatable read": frozenset({"write-skew"}),
    "serializable": frozenset(),
}


@dataclass(frozen=True)
class IsolationEvidence:
    """An isolation experiment: the level the scenario asked for, its transfers and
    snapshot reads (valid token, every outcome), and PostgreSQL's rows of its account
    group after the run (chaos_runner.analysis.ledger.LedgerStore.accounts)."""

    level: str  # as PostgreSQL names it: "read committed"
    group: str
    op_prefix: str  # a transfer's op id is `<op_prefix>-<index>`
    ops: tuple[Operation, ...] = ()
    accounts: tuple[Account, ...] = ()
    transfers: tuple[Transfer, ...] = ()
    committed: frozenset[str] = frozenset()
    # A scenario without faults stresses PostgreSQL only by running transactions at once:
    # then operations that never overlapped tested nothing.
    concurrency_required: bool = False

    def op_id(self, op: Operation) -> str:
        return f"{self.op_prefix}-{op.index}"


def isolation(ev: Evidence) -> list[CheckResult]:
    """The isolation experiment against PostgreSQL's ground truth: the level in effect,
    transfers applied exactly as answered, snapshot reads that ran, and the anomalies seen
    - each one either documented at the level and declared by the scenario
    (`expect.permitted_anomalies`: reported) or a deviation."""
    iso = ev.isolation
    if iso is None:
        return []
    transfers = [o for o in iso.ops if o.kind == "transfer"]
    reads = [o for o in iso.ops if o.kind == "snapshot_read"]
    out = [_level_in_effect(iso)]
    if transfers:
        out.append(_transfers_applied(iso, transfers))
    if reads:
        out.append(_snapshot_reads(iso, reads, transfers))
    out.append(_anomalies(ev, iso, transfers, reads))
    return out


def _level_in_effect(iso: IsolationEvidence) -> CheckResult:
    levels: dict[str, int] = {}
    for o in iso.ops:
        level = (o.detail or {}).get("isolation") if o.outcome == "ok" else None
        if level:
            levels[str(level)] = levels.get(str(level), 0) + 1
    ok = bool(levels) and set(levels) == {iso.level}
    return CheckResult(
        "isolation level in effect",
        ok,
        levels,
        f"{iso.level} in every answer (PostgreSQL's transaction_isolation)",
        "no successful transfer or read reported its level"
        if not levels
        else ""
        if ok
        else f"asked for {iso.level}",
    )


def _transfers_applied(iso: IsolationEvidence, transfers: list[Operation]) -> CheckResult:
    acked = [o for o in transfers if o.outcome == "ok"]
    missing = [iso.op_id(o) for o in acked if iso.op_id(o) not in iso.committed]
    refused = [o for o in transfers if o.outcome == "fail"]
    wrong = [iso.op_id(o) for o in refused if iso.op_id(o) in iso.committed]
    unknown = [o for o in transfers if o.outcome == "info"]
    applied = sum(1 for o in unknown if iso.op_id(o) in iso.committed)
    rolled_back = sum(1 for o in refused if SERIALIZATION_FAILURE in (o.error or ""))
    deadlocks = sum(1 for o in refused if DEADLOCK in (o.error or ""))
    by_rule = sum(1 for o in refused if (o.error or "").startswith(RULE_REFUSALS))
    parts = [
        f"refused: {rolled_back} serialization failures, {deadlocks} deadlocks, "
        f"{by_rule} by the group's rule, {len(refused) - rolled_back - deadlocks - by_rule} "
        "otherwise",
        f"unknown: {applied} committed, {len(unknown) - applied} not",
    ]
    if missing:
        parts.insert(0, "acknowledged but not committed: " + ", ".join(missing[:5]))
    if wrong:
        parts.insert(0, "refused but committed: " + ", ".join(wrong[:5]))
    return CheckResult(
        "transfers committed as answered",
        bool(acked) and not missing and not wrong,
        f"{len(acked)} acknowledged, {len(missing)} missing, {len(wrong)} refused but committed",
        "every acknowledged transfer committed, no refused one",
        "; ".join(parts) if acked else "no acknowledged transfer: nothing to check",
    )


def _overlaps(a: Operation, b: Operation) -> bool:
    return a.start_ns < b.end_ns and b.start_ns < a.end_ns


def _snapshot_reads(
    iso: IsolationEvidence, reads: list[Operation], transfers: list[Operation]
) -> CheckResult:
    done = [o for o in reads if o.outcome == "ok"]
    concurrent = sum(1 for r in done if any(_overlaps(r, t) for t in transfers))
    need = iso.concurrency_required
    ok = bool(done) and (concurrent > 0 or not need)
    return CheckResult(
        "snapshot reads",
        ok,
        f"{len(done)} read, {concurrent} while a transfer ran",
        ">= 1 read" + (" while a transfer ran" if need else ""),
        "no snapshot read succeeded: reads not tested"
        if not done
        else "no read overlapped a transfer: nothing tested"
        if not ok
        else f"{len(reads) - len(done)} failed",
    )


def _anomalies(
    ev: Evidence, iso: IsolationEvidence, transfers: list[Operation], reads: list[Operation]
) -> CheckResult:
    level = iso.level
    accounts = check_accounts(iso.accounts, iso.transfers)
    snapshots = check_snapshots(reads)
    seen: dict[str, str] = {}
    if accounts.mismatched or not accounts.conserved:
        seen["lost-update"] = (
            f"{len(accounts.mismatched)} account(s) off their committed transfers, "
            f"{accounts.drift:+d} created (+) or lost (-)"
        )
    if not accounts.rule_held:
        seen["write-skew"] = f"group total {accounts.total} below zero"
    if snapshots.broken:
        first = next(iter(snapshots.broken.values()))
        seen["dirty-read"] = f"{len(snapshots.broken)} read(s) of a state no commit made ({first})"
        if "lost-update" in seen:
            seen["dirty-read"] += (
                "; the committed balances drifted too, so a dirty read cannot be told apart"
            )
    if snapshots.non_repeatable:
        seen["non-repeatable-read"] = f"{len(snapshots.non_repeatable)} read(s) changed"
    if snapshots.phantoms:
        seen["phantom-read"] = f"{len(snapshots.phantoms)} read(s) saw new transfers"
    documented = DOCUMENTED_ANOMALIES.get(level, frozenset())
    declared = set(ev.expect.permitted_anomalies)
    allowed = declared & documented
    overlapping = sum(1 for a in transfers if any(_overlaps(a, b) for b in transfers if b is not a))
    overlapping += sum(1 for r in reads if any(_overlaps(r, t) for t in transfers))
    untested = iso.concurrency_required and not overlapping
    detail = []
    for name, what in seen.items():
        if name in allowed:
            detail.append(f"{name}: {what} (documented at {level}, reported)")
        elif name in declared:
            detail.append(f"{name}: {what} (declared, but PostgreSQL documents none at {level})")
        else:
            detail.append(f"{name}: {what} (not permitted at {level})")
    detail.append(
        f"group {iso.group}: {len(iso.accounts)} accounts, total {accounts.total}, withdrawn "
        f"{accounts.withdrawn}, opened with {accounts.initial_total}; {len(iso.transfers)} "
        f"committed transfers; {overlapping} operations overlapped a transfer"
    )
    if untested:
        detail.insert(0, "no transfer overlapped another operation: nothing tested")
    return CheckResult(
        f"isolation anomalies at {level}",
        not untested and all(name in allowed for name in seen),
        {name: what for name, what in seen.items()} or "none",
        f"only what {level} documents and the scenario declares: "
        + (", ".join(sorted(allowed)) or "none"),
        "; ".join(detail),
    )
