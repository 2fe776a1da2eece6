"""The history: every operation the load driver issued, the ground truth of every report.

Times are `time.monotonic_ns()` of the controller, the same clock as the fault timeline.
An open-loop operation has an *intended* start (its slot in the arrival schedule) and an
actual send time; latency is measured from the intended start, so a stalled client or
server cannot hide its queueing (no coordinated omission).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["ok", "fail", "info"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "fail", "info")


@dataclass(frozen=True)
class Operation:
    """One request and what came back.

    outcome: `ok` (succeeded), `fail` (definitely did not take effect or a read failed),
    `info` (unknown: a write whose answer never came, e.g. a timeout).
    detail: what a check needs beyond the outcome - the variant an `invalid` operation
    sent, the balances a `snapshot_read` saw, the isolation level a `transfer` ran at.
    """

    index: int
    kind: str
    start_ns: int
    end_ns: int
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    sent_ns: int | None = None
    op_id: str | None = None
    token: str = "valid"
    timed_out: bool = False
    auth_rejected: bool = False
    detail: dict[str, Any] | None = None

    @property
    def latency_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def is_write(self) -> bool:
        return self.op_id is not None


@dataclass
class History:
    operations: list[Operation] = field(default_factory=list)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __len__(self) -> int:
        return len(self.operations)

    def append(self, op: Operation) -> None:
        self.operations.append(op)

    def between(self, start_ns: int, end_ns: int) -> list[Operation]:
        """Operations whose (intended) start lies in [start_ns, end_ns)."""
        return [op for op in self.operations if start_ns <= op.start_ns < end_ns]

    def write_jsonl(self, path: Path) -> None:
        with path.open("w") as out:
            for op in sorted(self.operations, key=lambda o: o.start_ns):
                out.write(json.dumps(_compact(asdict(op))) + "\n")

    @classmethod
    def read_jsonl(cls, path: Path) -> History:
        return cls.from_dicts(json.loads(line) for line in path.read_text().splitlines() if line)

    @classmethod
    def from_dicts(cls, rows: Iterable[dict[str, Any]]) -> History:
        return cls([Operation(**row) for row in rows])


def _compact(row: dict[str, Any]) -> dict[str, Any]:
    defaults = {"status": None, "error": None, "sent_ns": None, "op_id": None, "detail": None}
    return {
        k: v
        for k, v in row.items()
        if not (k in defaults and v is None)
        and not (k in ("timed_out", "auth_rejected") and v is False)
    }
