"""Checks of a built scenario that one key alone cannot show: windows long enough to
judge, stages inside the hold, hosts that exist in the target's groups, fault parameters
the agent accepts. Every error names the file and the leaf key."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from chaos_runner.model.build import ModelError
from chaos_runner.target.roles import CONTROLLER, HostRoles, looks_like_reference, role_reference

if TYPE_CHECKING:
    from chaos_runner.model.scenario import FaultStep, ScenarioDoc

# Stands in for an `@role` address when parameters are validated (never sent anywhere).
PLACEHOLDER_ADDRESS = "192.0.2.1"


def semantic_checks(doc: ScenarioDoc, source: str, roles: HostRoles | None) -> None:
    from chaos_runner.model.scenario import ONE_SHOT_KINDS, bound

    w = doc.windows
    if w.baseline_s * 1000 / w.window_ms < 10:
        raise ModelError(
            source,
            "windows.baseline_s",
            f"{w.baseline_s} s holds fewer than 10 windows of {w.window_ms} ms (a baseline "
            "needs >= 10)",
        )
    needed = doc.expect.recovery_s + 3 * w.window_ms / 1000
    if w.recovery_s < needed:
        raise ModelError(
            source,
            "windows.recovery_s",
            f"{w.recovery_s} s cannot show recovery within expect.recovery_s="
            f"{doc.expect.recovery_s} s plus 3 windows (needs >= {needed:g} s)",
        )
    per_window = doc.load.rate * w.window_ms / 1000
    if doc.load.mode == "open" and per_window < 1:
        raise ModelError(
            source,
            "windows.window_ms",
            f"{w.window_ms} ms windows hold {per_window:g} operations at {doc.load.rate:g}/s: "
            "empty windows prove nothing, so recovery (3 windows in a row meeting the SLO) "
            f"could never be seen; use window_ms >= {math.ceil(1000 / doc.load.rate)}",
        )
    if (doc.faults or doc.schedule) and w.hold_s <= 0:
        raise ModelError(source, "windows.hold_s", "a scenario with faults needs hold_s > 0")
    load = doc.load
    if load.mode == "open" and load.rate * bound(doc) > load.max_ops:
        raise ModelError(
            source,
            "load.max_ops",
            f"{load.rate}/s for {bound(doc):g} s needs more than max_ops={load.max_ops}",
        )
    if doc.counter is None and load.mix.get("increment", 0) > 0:
        raise ModelError(source, "counter", "required when load.mix has increment operations")
    _host_check(doc.app, source, "app", roles, client=False)
    for i, step in enumerate(doc.faults):
        _fault_check(step, source, f"faults[{i}]", w.hold_s, roles)
    for i, prep in enumerate(doc.prepare):
        if prep.kind not in ONE_SHOT_KINDS:
            raise ModelError(
                source,
                f"prepare[{i}].kind",
                f"{prep.kind!r} is not one-shot; prepare runs only {', '.join(ONE_SHOT_KINDS)}",
            )
        _fault_check(prep.step(), source, f"prepare[{i}]", w.hold_s, roles)
    for i, stage in enumerate(doc.schedule):
        key = f"schedule[{i}]"
        if stage.repeat > 1 and not stage.every_s:
            raise ModelError(source, f"{key}.every_s", "required when repeat > 1")
        if stage.repeat > 1 and (stage.every_s or 0) < stage.duration_s:
            raise ModelError(
                source, f"{key}.every_s", f"{stage.every_s} s is shorter than duration_s"
            )
        end = stage.at_s + (stage.repeat - 1) * (stage.every_s or 0) + stage.duration_s
        if end > w.hold_s + 1e-9:
            raise ModelError(
                source,
                f"{key}.duration_s",
                f"the stage ends {end:g} s into the hold, after hold_s={w.hold_s:g} s",
            )
        for j, step in enumerate(stage.faults):
            _fault_check(step, source, f"{key}.faults[{j}]", stage.duration_s, roles)


def _host_check(host: str, source: str, key: str, roles: HostRoles | None, client: bool) -> None:
    if client:
        if host != CONTROLLER:
            raise ModelError(source, key, f"client faults run on {CONTROLLER!r}")
        return
    if role_reference(host) is None:
        raise ModelError(
            source,
            key,
            f"{host!r} is not a host reference: name hosts by inventory group, like @db, "
            "@proxy, @app, @auth, @cache (@db[1] for the second db host)",
        )
    problem = roles.file_problem(host) if roles is not None else None
    if problem:
        raise ModelError(source, key, problem)


def _fault_check(
    step: FaultStep, source: str, key: str, holds_s: float, roles: HostRoles | None
) -> None:
    from chaos_runner.faults.channel import validate_request

    if step.ttl_s is not None and step.ttl_s <= holds_s:
        raise ModelError(
            source, f"{key}.ttl_s", f"{step.ttl_s} s expires before the fault's {holds_s:g} s end"
        )
    client = step.kind.startswith("client.")
    _host_check(step.host, source, f"{key}.host", roles, client)
    if client:
        _client_fault_check(step, source, key)
        return
    if step.kind == "jwks.rotate":
        _rotate_check(step, source, key)
        return
    params = {}
    for name, value in step.params.items():
        if looks_like_reference(value):
            if role_reference(value) is None and value != "@controller":
                raise ModelError(source, f"{key}.params.{name}", f"{value!r} is not @group[i]")
            problem = (
                roles.file_problem(value) if roles is not None and value != "@controller" else None
            )
            if problem:
                raise ModelError(source, f"{key}.params.{name}", problem)
            value = PLACEHOLDER_ADDRESS
        params[name] = value
    problem = validate_request(step.kind, params, ttl_s=step.ttl_s or holds_s + 30)
    if problem:
        param_key, _, message = problem.partition(": ")
        if param_key.startswith("params"):
            raise ModelError(source, f"{key}.{param_key}", message)
        raise ModelError(source, f"{key}.kind", problem)


def _client_fault_check(step: FaultStep, source: str, key: str) -> None:
    from chaos_runner.model.scenario import BAD_TOKENS, CLIENT_FAULTS
    from chaos_runner.workload.operations import OP_KINDS

    if step.kind not in CLIENT_FAULTS:
        raise ModelError(
            source,
            f"{key}.kind",
            f"unknown client fault {step.kind!r} (known: {', '.join(CLIENT_FAULTS)})",
        )
    if step.kind == "client.burst":
        _burst_check(step, source, key)
        return
    _only_params(step, source, key, {"tokens", "share", "ops"})
    tokens = step.params.get("tokens")
    if not isinstance(tokens, list) or not tokens or any(t not in BAD_TOKENS for t in tokens):
        raise ModelError(
            source, f"{key}.params.tokens", f"expected a non-empty list of {', '.join(BAD_TOKENS)}"
        )
    _share_param(step, source, key, "share", 1.0)
    ops = step.params.get("ops", list(OP_KINDS))
    if not isinstance(ops, list) or any(o not in OP_KINDS for o in ops):
        raise ModelError(source, f"{key}.params.ops", f"expected a list of {', '.join(OP_KINDS)}")


def _burst_check(step: FaultStep, source: str, key: str) -> None:
    from chaos_runner.workload.operations import OP_KINDS

    _only_params(step, source, key, {"op", "count", "relation", "rate"})
    count = step.params.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
        raise ModelError(
            source, f"{key}.params.count", f"expected a whole number 1-100000, got {count!r}"
        )
    rate = step.params.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 1 <= rate <= 5000
    ):
        raise ModelError(
            source, f"{key}.params.rate", f"expected operations per second 1-5000, got {rate!r}"
        )
    op = step.params.get("op", "query")
    if op not in OP_KINDS:
        raise ModelError(source, f"{key}.params.op", f"expected one of {', '.join(OP_KINDS)}")
    relation = step.params.get("relation")
    if relation is not None and rate is not None:
        raise ModelError(
            source,
            f"{key}.params.relation",
            "counts the statements of a burst sent at once, not of a flood (drop rate)",
        )
    if relation is not None and not (
        isinstance(relation, str) and re.fullmatch(r"[a-z_][a-z0-9_.]*", relation)
    ):
        raise ModelError(
            source,
            f"{key}.params.relation",
            f"expected a relation name like v_post, got {relation!r}",
        )


def _rotate_check(step: FaultStep, source: str, key: str) -> None:
    _only_params(step, source, key, {"withdrawn_share", "keep_old"})
    _share_param(step, source, key, "withdrawn_share", 0.25)
    if not isinstance(step.params.get("keep_old", False), bool):
        raise ModelError(source, f"{key}.params.keep_old", "expected true or false")


def _only_params(step: FaultStep, source: str, key: str, allowed: set[str]) -> None:
    unknown = sorted(set(step.params) - allowed)
    if unknown:
        raise ModelError(
            source,
            f"{key}.params.{unknown[0]}",
            f"unknown parameter (allowed: {', '.join(sorted(allowed))})",
        )


def _share_param(step: FaultStep, source: str, key: str, name: str, default: float) -> None:
    share = step.params.get(name, default)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ModelError(
            source, f"{key}.params.{name}", f"expected a number in (0, 1], got {share!r}"
        )
