"""One check's result (what the journal keeps of it) and how checks quote operations."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from chaos_runner.analysis.history import Operation


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    measured: Any
    expected: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def examples(ops: list[Operation], n: int = 3) -> str:
    """Up to `n` kinds of operation (kind, outcome, status, error) with their counts."""
    seen: dict[str, int] = {}
    for o in ops:
        key = f"{o.kind} {o.outcome} {o.status or '-'} {o.error or ''}"[:160]
        seen[key] = seen.get(key, 0) + 1
    return "; ".join(f"{k} (x{v})" for k, v in list(seen.items())[:n])
