"""Fault requests checked before anything is done; every error names its key.

The controller imports this module too, so there is one definition of a valid fault.
"""

from __future__ import annotations

import re
from typing import Any

from chaosfault.errors import FaultInputError

__all__ = ["FaultInputError", "lease_seconds", "validate"]

MAX_TTL_S = 3600.0
DEFAULT_TTL_S = 60.0
# A lease shorter than a second cannot survive one slow renewal; one longer than a minute
# is no longer a dead-man switch (ttl_s is the long bound).
MIN_LEASE_S = 1.0
MAX_LEASE_S = 60.0
REQUEST_KEYS = frozenset({"kind", "id", "ttl_s", "lease_s", "params"})


def _number(
    params: dict[str, Any],
    key: str,
    lo: float,
    hi: float,
    default: Any = None,
    integer: bool = False,
    where: str = "params.",
) -> Any:
    value = params.get(key, default)
    if value is None:
        raise FaultInputError(f"{where}{key}: required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultInputError(f"{where}{key}: expected a number, got {value!r}")
    if integer and int(value) != value:
        raise FaultInputError(f"{where}{key}: expected a whole number, got {value!r}")
    if not lo <= value <= hi:
        raise FaultInputError(f"{where}{key}: {value!r} is outside {lo}..{hi}")
    return int(value) if integer else float(value)


def _ip(params: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = params.get(key)
    if value is None and not required:
        return None
    if (
        not isinstance(value, str)
        or not re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", value)
        or any(int(p) > 255 for p in value.split("."))
    ):
        raise FaultInputError(f"params.{key}: expected an IPv4 address, got {value!r}")
    return value


def _choice(params: dict[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = params.get(key, default)
    if value not in choices:
        raise FaultInputError(f"params.{key}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def lease_seconds(request: dict[str, Any]) -> float | None:
    """The request's `lease_s` (None: the fault lives until heal or its TTL)."""
    if request.get("lease_s") is None:
        return None
    lease: float = _number(request, "lease_s", MIN_LEASE_S, MAX_LEASE_S, where="")
    return lease


def validate(spec: Any) -> tuple[str, dict[str, Any], float]:
    # The registry is built from the kinds modules, which use the checks above.
    from chaosfault.kinds import FAULTS

    if not isinstance(spec, dict):
        raise FaultInputError("fault: expected a JSON object")
    unknown = set(spec) - REQUEST_KEYS
    if unknown:
        raise FaultInputError(f"fault: unknown key(s) {sorted(unknown)}")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in FAULTS:
        raise FaultInputError(f"kind: unknown fault {kind!r}; known: {', '.join(sorted(FAULTS))}")
    ttl: float = _number(spec, "ttl_s", 0.1, MAX_TTL_S, default=DEFAULT_TTL_S, where="")
    lease_seconds(spec)
    params = spec.get("params") or {}
    if not isinstance(params, dict):
        raise FaultInputError("params: expected an object")
    allowed = FAULTS[kind].params
    extra = set(params) - set(allowed)
    if extra:
        raise FaultInputError(
            f"params: unknown parameter(s) {sorted(extra)} for {kind}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    return kind, FAULTS[kind].check(params), ttl
