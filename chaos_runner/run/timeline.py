"""An attempt's events on the history's monotonic clock."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Timeline:
    events: list[dict[str, Any]] = field(default_factory=list)

    def mark(self, event: str, **detail: Any) -> int:
        ns = time.monotonic_ns()
        self.events.append({"ns": ns, "event": event, **detail})
        return ns

    def first(self, event: str) -> int | None:
        return next((e["ns"] for e in self.events if e["event"] == event), None)

    def last(self, event: str) -> int | None:
        return next((e["ns"] for e in reversed(self.events) if e["event"] == event), None)
