"""Invariants of the isolation experiments: the accounts the demo app's `transfer`
operation moves money between (core.transfer) and the reads of `snapshot_read`
(core.account_snapshot).

Two sources, both judged by pure functions:
- PostgreSQL's rows after the load (the ground truth, read by the runner):
    SELECT name, balance, initial FROM core.tb_account WHERE grp = %s
    SELECT from_name, to_name, amount FROM core.tb_transfer WHERE grp = %s
  Nothing is created or lost (balances + withdrawn = what the accounts were opened
  with), the group's rule holds (its total never below zero), and every account holds
  exactly what its committed transfers say (a lost update breaks that even when the
  totals happen to balance).
- The history: every successful `snapshot_read` keeps in Operation.detail what one
  transaction saw, twice. Each read must satisfy the same invariants (a read of a state
  no committed transaction produced - a dirty or torn read - breaks them); a second read
  that differs from the first is a non-repeatable read, a changed transfer count a
  phantom. PostgreSQL allows both at READ COMMITTED only (READ UNCOMMITTED behaves as
  READ COMMITTED; dirty reads are never possible).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chaos_runner.analysis.history import Operation

# PostgreSQL's documented read phenomena per level (transaction_isolation as reported).
ALLOWED_READ_ANOMALIES: dict[str, frozenset[str]] = {
    "read uncommitted": frozenset({"non-repeatable", "phantom"}),
    "read committed": frozenset({"non-repeatable", "phantom"}),
    "repeatable read": frozenset(),
    "serializable": frozenset(),
}


@dataclass(frozen=True)
class Account:
    name: str
    balance: int
    initial: int


@dataclass(frozen=True)
class Transfer:
    """A committed row of core.tb_transfer; `to_name` None is a withdrawal."""

    from_name: str
    to_name: str | None
    amount: int


@dataclass(frozen=True)
class AccountCheck:
    initial_total: int
    total: int
    withdrawn: int
    # account -> balance minus what its committed transfers say it should hold
    mismatched: dict[str, int] = field(default_factory=dict)

    @property
    def drift(self) -> int:
        """Money created (> 0) or lost (< 0): total + withdrawn - initial_total."""
        return self.total + self.withdrawn - self.initial_total

    @property
    def conserved(self) -> bool:
        return self.drift == 0

    @property
    def rule_held(self) -> bool:
        """The group's total never below zero (what a write skew of withdrawals breaks)."""
        return self.total >= 0

    @property
    def ok(self) -> bool:
        return self.conserved and self.rule_held and not self.mismatched


def check_accounts(accounts: Iterable[Account], transfers: Iterable[Transfer]) -> AccountCheck:
    """PostgreSQL's rows of one group against the invariants."""
    rows = list(accounts)
    expected = {a.name: a.initial for a in rows}
    withdrawn = 0
    for t in transfers:
        expected[t.from_name] = expected.get(t.from_name, 0) - t.amount
        if t.to_name is None:
            withdrawn += t.amount
        else:
            expected[t.to_name] = expected.get(t.to_name, 0) + t.amount
    held = {a.name: a.balance for a in rows}
    mismatched = {
        name: held.get(name, 0) - want
        for name, want in sorted(expected.items())
        if held.get(name, 0) != want
    }
    return AccountCheck(
        initial_total=sum(a.initial for a in rows),
        total=sum(held.values()),
        withdrawn=withdrawn,
        mismatched=mismatched,
    )


@dataclass(frozen=True)
class SnapshotCheck:
    reads: int = 0
    # operation index -> what was wrong with what it saw
    broken: dict[int, str] = field(default_factory=dict)
    non_repeatable: tuple[int, ...] = ()
    phantoms: tuple[int, ...] = ()
    # operation index -> anomaly PostgreSQL does not allow at the level the read ran at
    unexpected: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.broken and not self.unexpected


def _read_problem(total: Any, withdrawn: Any, initial_total: Any) -> str | None:
    if not all(isinstance(v, int) for v in (total, withdrawn, initial_total)):
        return f"incomplete read: total={total!r} withdrawn={withdrawn!r} initial={initial_total!r}"
    if total + withdrawn != initial_total:
        return f"total {total} + withdrawn {withdrawn} != opened with {initial_total}"
    if total < 0:
        return f"group total {total} below zero"
    return None


def check_snapshots(ops: Iterable[Operation]) -> SnapshotCheck:
    """Every successful `snapshot_read` of a history against the invariants."""
    reads = 0
    broken: dict[int, str] = {}
    non_repeatable: list[int] = []
    phantoms: list[int] = []
    unexpected: dict[int, str] = {}
    for op in ops:
        if op.kind != "snapshot_read" or op.outcome != "ok":
            continue
        reads += 1
        d = op.detail or {}
        problems = [
            _read_problem(d.get("total"), d.get("withdrawn"), d.get("initial_total")),
            _read_problem(
                d.get("total_again"),
                d.get("withdrawn_again"),
                d.get("initial_total_again", d.get("initial_total")),
            ),
        ]
        first = next((p for p in problems if p), None)
        if first:
            broken[op.index] = first
            continue
        seen = []
        if (d["total"], d["withdrawn"]) != (d["total_again"], d["withdrawn_again"]):
            non_repeatable.append(op.index)
            seen.append("non-repeatable")
        if d.get("transfers") != d.get("transfers_again"):
            phantoms.append(op.index)
            seen.append("phantom")
        level = str(d.get("isolation") or "")
        allowed = ALLOWED_READ_ANOMALIES.get(level, frozenset())
        wrong = [a for a in seen if a not in allowed]
        if wrong:
            unexpected[op.index] = f"{', '.join(wrong)} read at {level or 'an unknown level'}"
    return SnapshotCheck(reads, broken, tuple(non_repeatable), tuple(phantoms), unexpected)
