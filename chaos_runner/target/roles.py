"""Hosts by role: `@db` is the first host of the inventory group `db`, `@db[1]` the second.

Scenario files name hosts only this way, for fault targets and for address parameters
alike, so one catalog runs on the embedded lab and on any cluster inventory whose groups
are the same (db, proxy, app, auth, cache).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chaos_runner.errors import ConfigError

# Groups the stack can do without (fraiseql_cache is `none` without a cache host; no
# alerts without a monitoring host): a scenario that names one is skipped, with the
# reason, on an inventory that has none.
OPTIONAL_GROUPS = ("cache", "monitoring")
ROLE_REFERENCE = re.compile(r"@([a-z][a-z0-9_]*)(?:\[(\d{1,3})\])?")
CONTROLLER = "controller"


def role_reference(value: Any) -> tuple[str, int] | None:
    """(`group`, index) of a reference like `@db` or `@db[1]`, else None."""
    if not isinstance(value, str):
        return None
    match = ROLE_REFERENCE.fullmatch(value)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 0)


def looks_like_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("@")


@dataclass(frozen=True)
class HostRoles:
    """Inventory groups (in inventory order) and each host's address."""

    groups: Mapping[str, list[str]]
    addresses: Mapping[str, str]

    def host(self, reference: str) -> str:
        """The host a reference stands for; ConfigError says which group is short."""
        parsed = role_reference(reference)
        if parsed is None:
            raise ConfigError(f"{reference!r} is not a host reference like @db or @db[1]")
        group, index = parsed
        members = self.groups.get(group)
        if not members:
            known = ", ".join(sorted(g for g, m in self.groups.items() if m)) or "none"
            raise ConfigError(
                f"{reference}: the inventory has no hosts in group {group!r} (groups: {known})"
            )
        if index >= len(members):
            raise ConfigError(
                f"{reference}: group {group!r} has {len(members)} host(s) ({', '.join(members)})"
            )
        return members[index]

    def address(self, reference: str) -> str:
        return self.addresses[self.host(reference)]

    def problem(self, reference: str) -> str | None:
        """Why `reference` cannot be resolved, or None."""
        try:
            self.host(reference)
        except ConfigError as exc:
            return str(exc)
        return None

    def absent_optional(self, reference: str) -> bool:
        """`reference` names an optional group (OPTIONAL_GROUPS) this inventory has no
        host in: not an error in a scenario file, a reason to skip it here."""
        parsed = role_reference(reference)
        return (
            parsed is not None and parsed[0] in OPTIONAL_GROUPS and not self.groups.get(parsed[0])
        )

    def absent_among(self, values: Iterable[Any]) -> str | None:
        """Why the first of `values` (a fault's host and parameters) that names an absent
        optional group cannot be resolved, or None."""
        for value in values:
            if isinstance(value, str) and self.absent_optional(value):
                return self.problem(value)
        return None

    def file_problem(self, reference: str) -> str | None:
        """Why a scenario file may not name `reference` here: problem(), except an absent
        optional group."""
        return None if self.absent_optional(reference) else self.problem(reference)


def resolve_params(params: Mapping[str, Any], roles: HostRoles) -> dict[str, Any]:
    """Fault parameters with every `@role` replaced by that host's address."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        if looks_like_reference(value):
            try:
                value = roles.address(value)
            except ConfigError as exc:
                raise ConfigError(f"params.{name}: {exc}") from None
        out[name] = value
    return out
