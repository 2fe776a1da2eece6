"""Scenarios are data: one YAML file per scenario id under scenarios/, variants allowed.

Each file is built into typed models (chaos_runner.model.build) that refuse unknown keys; a
variant deep-merges its overrides into the base document and gets its own id and result
row. Defaults of the expectation thresholds are the KPI table of SCENARIOS.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chaos_runner.ansible import REPO_ROOT
from chaos_runner.errors import ConfigError
from chaos_runner.model.build import (
    ModelError,
    at_least,
    between,
    build,
    field,
    positive,
    read_yaml,
)
from chaos_runner.model.expand import (
    KEY_PATH,
    PROFILE_DIR,
    Profiles,
    deep_merge,
    default_label,
    set_path,
)
from chaos_runner.model.validation import semantic_checks
from chaos_runner.target.roles import HostRoles
from chaos_runner.workload.operations import ANSWER_KINDS, OP_KINDS, OperationParams, line_tuple

SCENARIO_DIR = REPO_ROOT / "scenarios"
ID_PATTERN = re.compile(r"[a-z]+\.[a-z0-9]+(-[a-z0-9.]+)*")
BAD_TOKENS = (
    "none",
    "empty",
    "malformed",
    "alg-none",
    "hs256-public",
    "unknown-kid",
    "bad-signature",
    "expired",
    "wrong-audience",
    # Minted as each request is sent, expiring within 1 s (tokens.EXPIRING): not refused
    # by definition; judged as executed whole or refused (checkers._expiring_tokens).
    "expiring",
)
CLIENT_FAULTS = ("client.bad-token", "client.burst")
# Faults the runner composes from an agent kind and the load (chaos_runner.faults.steps).
RUNNER_KINDS = ("jwks.rotate",)
# Result caches an app record can name (roles/fraiseql: fraiseql_cache).
CACHES = ("redis", "postgresql")
# Fault kinds that act once and leave nothing to heal: the only ones `prepare` may run.
ONE_SHOT_KINDS = ("proc.restart", "cache.flush", "cache.delete")
Expectation = Literal["tolerate", "fail-fast", "reject", "consistent"]
# Isolation anomalies the account experiments can show (chaos_runner.analysis.checkers
# judges them against PostgreSQL's documented behaviour per level).
ANOMALIES = ("dirty-read", "non-repeatable-read", "phantom-read", "lost-update", "write-skew")


def _id_check(value: str) -> str | None:
    return None if ID_PATTERN.fullmatch(value) else f"{value!r} is not an id like net.db-stopped"


def _mix_check(mix: dict[str, float]) -> str | tuple[str, str] | None:
    unknown = sorted(set(mix) - set(OP_KINDS))
    if unknown:
        return unknown[0], f"unknown operation (allowed: {', '.join(OP_KINDS)})"
    negative = sorted(k for k, w in mix.items() if w < 0)
    if negative:
        return negative[0], f"a weight must be >= 0, got {mix[negative[0]]:g}"
    if sum(mix.values()) <= 0:
        return "weights must have a positive sum"
    return None


def _line_check(value: str | None) -> str | None:
    try:
        if value is not None:
            line_tuple(value)
    except ValueError as exc:
        return str(exc)
    return None


def _members(allowed: tuple[str, ...], refusal: str) -> Any:
    """A list check: every item one of `allowed`; `refusal` formats the first that is not
    ({item!r}, {allowed})."""

    def check(items: list[str]) -> tuple[str, str] | None:
        for i, item in enumerate(items):
            if item not in allowed:
                return f"[{i}]", refusal.format(item=item, allowed=", ".join(allowed))
        return None

    return check


_caches_check = _members(CACHES, "unknown result cache {item!r} (known: {allowed})")


@dataclass(frozen=True)
class FaultStep:
    kind: str
    host: str
    params: dict[str, Any] = field({})
    ttl_s: float | None = field(None, check=positive)


@dataclass(frozen=True)
class LoadProfile:
    mode: Literal["open", "closed"] = "open"
    rate: float = field(40.0, check=between(0.1, 5000))
    concurrency: int = field(8, check=between(1, 1024))
    max_in_flight: int = field(256, check=between(1, 4096))
    timeout_s: float = field(12.0, check=between(0.1, 120))
    mix: dict[str, float] = field({"query": 6, "nested": 2, "mutation": 2}, check=_mix_check)
    max_ops: int = field(50_000, check=between(1, 1_000_000))
    # What the parameterised operations send (slow_s, large_limit, isolation, ...).
    params: OperationParams = field(OperationParams())


@dataclass(frozen=True)
class Windows:
    window_ms: int = field(250, check=between(50, 10_000))
    settle_s: float = field(1.0, check=between(0, 60))
    baseline_s: float = field(3.0, check=between(0.1, 600))
    hold_s: float = field(10.0, check=between(0, 3600))
    recovery_s: float = field(8.0, check=between(0.1, 600))


def _kinds_check(kinds: list[str]) -> tuple[str, str] | None:
    unknown = [i for i, k in enumerate(kinds) if k not in OP_KINDS]
    if unknown:
        return f"[{unknown[0]}]", f"unknown operation {kinds[unknown[0]]!r}"
    return None


_answer_kinds_check = _members(ANSWER_KINDS, "{item!r} keeps no answer digest (only {allowed})")


def _anomalies_check(names: list[str]) -> tuple[str, str] | None:
    for i, name in enumerate(names):
        if name not in ANOMALIES:
            return f"[{i}]", f"unknown anomaly {name!r} (known: {', '.join(ANOMALIES)})"
        if name == "dirty-read":
            return f"[{i}]", "PostgreSQL never reads uncommitted data, at any level"
    return None


@dataclass(frozen=True)
class Detect:
    """A probe must report the failure: its first failed answer after the bite comes
    within `within_s` of it. `alert`: the first firing alert the receiver took (and none
    may fire during the healthy baseline); needs a monitoring host."""

    probe: Literal["health", "ready", "alert"]
    within_s: float = field(check=between(0.1, 600))


@dataclass(frozen=True)
class Expect:
    class_: Expectation
    recovery_s: float = field(5.0, check=positive)
    lost_writes: int = field(0, check=at_least(0))
    crashes: int = field(0, check=at_least(0))
    p95_factor: float = field(3.0, check=positive)
    p95_budget_ms: float | None = field(None, check=positive)
    # Also judge the median: p50 during the fault <= p50_factor x the baseline's (a small
    # overhead, such as a scrape, shows in the median long before the tail).
    p50_factor: float | None = field(None, check=positive)
    throughput_min: float = field(0.8, check=between(0, 1))
    max_error_rate: float = field(0.0, check=between(0, 1))
    error_clarity: float = field(1.0, check=between(0, 1))
    memory_mb: float = field(500.0, check=positive)
    hang_s: float | None = field(None, check=positive)
    client_deadline_is_fail_fast: bool = False
    slo_p95_ms: float | None = field(None, check=positive)
    # Operation kinds that do not need the faulty dependency: no error, latency as before.
    unaffected: list[str] = field([], check=_kinds_check)
    # Reads (ANSWER_KINDS) whose every successful answer from the fault on must be one the
    # baseline saw: corrupted or stale data served as an answer is caught here.
    same_answers: list[str] = field([], check=_answer_kinds_check)
    # Kinds of operation whose failures FraiseQL must count in its own metrics: the error
    # series of its /metrics (scraped before and after the load) grow by at least the
    # number of failed answers of these kinds.
    counted_in_metrics: list[str] = field([], check=_kinds_check)
    # Every note_read that started after a note_write was acknowledged shows that write
    # (its version or a later one): no stale answer from a cache.
    reads_see_writes: bool = False
    detect: Detect | None = None
    # jwks.rotate: a token under the withdrawn key must be refused from this many seconds
    # after the withdrawal on (FraiseQL has fetched the new document by then: the new key
    # is accepted).
    withdrawn_key_s: float = field(10.0, check=positive)
    # Isolation anomalies the scenario's level permits (documented behaviour: reported,
    # not a deviation), e.g. [lost-update, write-skew] at READ COMMITTED. Only what
    # PostgreSQL documents for the level in effect is ever tolerated.
    permitted_anomalies: list[str] = field([], check=_anomalies_check)


@dataclass(frozen=True)
class Requires:
    """What the app under test must run for the scenario to test anything (a cache fault
    against an app that does not use the cache would pass having tested nothing). On any
    other app the attempt is `skipped`, with the reason."""

    # The app's result cache must be one of these (its record's `cache`).
    cache: list[str] = field([], check=_caches_check)
    # FraiseQL lines, inclusive: min_line "1.0" runs on 1.9.16 and 1.31.1, not 0.5.3.
    min_line: str | None = field(None, check=_line_check)
    max_line: str | None = field(None, check=_line_check)

    def problem(self, line: str, cache: str | None, app_host: str) -> str | None:
        """Why an app on FraiseQL `line` with result cache `cache` cannot run the
        scenario, or None."""
        running = f"{app_host} runs FraiseQL {line} with result cache {cache or 'none'!r}"
        if self.cache and cache not in self.cache:
            return f"needs the result cache {' or '.join(self.cache)}; {running}"
        try:
            version = line_tuple(line)
        except ValueError as exc:
            return str(exc)
        if self.min_line and version < line_tuple(self.min_line):
            return f"needs FraiseQL >= {self.min_line}; {running}"
        if self.max_line and version[: len(line_tuple(self.max_line))] > line_tuple(self.max_line):
            return f"needs FraiseQL <= {self.max_line}; {running}"
        return None


@dataclass(frozen=True)
class PrepareStep(FaultStep):
    """A one-shot step before the load starts, only on an app that meets `when`."""

    when: Requires = field(Requires())

    def step(self) -> FaultStep:
        return FaultStep(self.kind, self.host, dict(self.params), self.ttl_s)


@dataclass(frozen=True)
class Abort:
    max_error_rate: float | None = field(None, check=between(0, 1))
    sustained_s: float = field(2.0, check=positive)
    lab_health: bool = True


@dataclass(frozen=True)
class Variant:
    id: str = field(check=_id_check)
    description: str | None = None
    set: dict[str, Any] = field({})


@dataclass(frozen=True)
class Stage:
    """Faults injected `at_s` after the hold starts and healed `duration_s` later;
    `repeat` times, `every_s` apart (flapping)."""

    at_s: float = field(check=between(0, 3600))
    duration_s: float = field(check=between(0.1, 3600))
    faults: list[FaultStep] = field(check=lambda v: None if v else "must list at least one fault")
    label: str | None = None
    repeat: int = field(1, check=between(1, 100))
    every_s: float | None = field(None, check=positive)


@dataclass(frozen=True)
class Sweep:
    """One parameter over values: each value is a variant with its own verdict, and the run
    keeps the series (value -> metrics per attempt)."""

    key: str = field(check=lambda v: None if KEY_PATH.fullmatch(v) else f"{v!r} is not a key "
                     "path like faults[0].params.delay_ms")  # fmt: skip
    values: list[int | float | str] = field(
        check=lambda v: None if v and len(set(map(str, v))) == len(v) else "distinct values needed"
    )
    label: str | None = field(None, check=lambda v: None if v is None or re.fullmatch(
        r"[a-z][a-z0-9]*", v) else f"{v!r}: lower-case letters and digits only")  # fmt: skip


@dataclass(frozen=True)
class ScenarioDoc:
    id: str = field(check=_id_check)
    phase: int = field(check=between(1, 5))
    description: str = field(check=lambda v: None if v.strip() else "must not be empty")
    expect: Expect = field()
    question: str | None = None
    profile: str | None = None
    app: str = "@app"
    tags: list[str] = field([])
    suites: list[str] = field([])
    faults: list[FaultStep] = field([])
    schedule: list[Stage] = field([])
    requires: Requires = field(Requires())
    # One-shot steps (ONE_SHOT_KINDS) run after the gate, before the load starts: e.g. a
    # fresh app process per attempt, or an empty cache.
    prepare: list[PrepareStep] = field([])
    load: LoadProfile = field(LoadProfile())
    windows: Windows = field(Windows())
    abort: Abort = field(Abort())
    counter: str | None = None
    # Extra sources sampled through the attempt: `postgresql` - its load (lock waiters,
    # active backends, transactions and tuples per second), reported in the baseline and
    # during the fault (metrics.postgresql).
    observe: list[Literal["postgresql"]] = field([])
    skip: str | None = None
    variants: list[Variant] = field([])
    sweep: Sweep | None = None


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the hold as it runs: offsets from the start of the hold."""

    index: int
    label: str
    start_s: float
    end_s: float
    faults: tuple[FaultStep, ...]


@dataclass(frozen=True)
class SweepPoint:
    """Where a scenario sits in a sweep: the base id, the key and this variant's value."""

    base: str
    key: str
    label: str
    value: int | float | str


@dataclass(frozen=True)
class Scenario:
    """One runnable scenario (a file, or one variant of it)."""

    doc: ScenarioDoc
    source: str
    sweep: SweepPoint | None = None

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def expect(self) -> Expect:
        return self.doc.expect

    @property
    def bound_s(self) -> float:
        return bound(self.doc)

    def stages(self) -> list[PlannedStage]:
        return planned_stages(self.doc)

    def all_faults(self) -> list[FaultStep]:
        return [f for stage in self.stages() for f in stage.faults]

    def as_dict(self) -> dict[str, Any]:
        import dataclasses

        out = dataclasses.asdict(self.doc)
        out["expect"]["class"] = out["expect"].pop("class_")
        out.pop("variants")
        out["source"] = self.source
        if self.sweep is not None:
            out["sweep_point"] = dataclasses.asdict(self.sweep)
        return out


def planned_stages(doc: ScenarioDoc) -> list[PlannedStage]:
    """The hold as stages: top-level `faults` hold for the whole hold; `schedule` stages
    (repeats unrolled) in start order."""
    out: list[PlannedStage] = []
    if doc.faults:
        out.append(PlannedStage(0, "hold", 0.0, doc.windows.hold_s, tuple(doc.faults)))
    for i, stage in enumerate(doc.schedule):
        every = stage.every_s or 0.0
        for k in range(stage.repeat):
            start = stage.at_s + k * every
            label = stage.label or f"stage {i + 1}"
            out.append(
                PlannedStage(
                    len(out),
                    label if stage.repeat == 1 else f"{label} #{k + 1}",
                    start,
                    start + stage.duration_s,
                    tuple(stage.faults),
                )
            )
    out.sort(key=lambda s: (s.start_s, s.index))
    return out


def bound(doc: ScenarioDoc) -> float:
    """Phase time of one attempt (settle + baseline + hold + recovery)."""
    w = doc.windows
    return w.settle_s + w.baseline_s + w.hold_s + w.recovery_s


def load_file(
    path: Path, roles: HostRoles | None = None, profiles: Profiles | None = None
) -> list[Scenario]:
    """Every scenario (base, variants, sweep points) of one file; ConfigError names the
    file and the leaf key."""
    data, source = read_yaml(path)
    profiles = profiles if profiles is not None else Profiles(path.parent / PROFILE_DIR)
    data = profiles.apply(data, source)
    base = build(ScenarioDoc, data, source)
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if base.id != stem and not base.variants:
        raise ModelError(source, "id", f"{base.id!r} must match the file name {stem!r}")
    if base.variants and base.sweep:
        raise ModelError(source, "sweep", "a file has variants or a sweep, not both")
    docs: list[tuple[ScenarioDoc, SweepPoint | None]] = []
    for i, variant in enumerate(base.variants):
        if not variant.id.startswith(base.id):
            raise ModelError(source, f"variants[{i}].id", f"must start with {base.id!r}")
        if {"id", "variants", "profile"} & set(variant.set):
            raise ModelError(source, f"variants[{i}].set", "cannot change id, variants or profile")
        merged = deep_merge(data, variant.set)
        merged.update(id=variant.id, variants=[])
        if variant.description:
            merged["description"] = variant.description
        docs.append((build(ScenarioDoc, merged, source, f"variants[{i}].set"), None))
    if base.sweep is not None:
        docs.extend(sweep_docs(base, data, source))
    if not docs:
        docs.append((base, None))
    out: list[Scenario] = []
    for doc, point in docs:
        where = source if doc is base else f"{source} (variant {doc.id})"
        if point is not None:
            index = base.sweep.values.index(point.value) if base.sweep else 0
            where = f"{source} (sweep point {doc.id}, sweep.values[{index}])"
        semantic_checks(doc, where, roles)
        out.append(Scenario(doc, source, point))
    return out


def sweep_docs(
    base: ScenarioDoc, data: dict[str, Any], source: str
) -> list[tuple[ScenarioDoc, SweepPoint]]:
    assert base.sweep is not None
    sweep = base.sweep
    label = sweep.label or default_label(sweep.key)
    out = []
    for i, value in enumerate(sweep.values):
        try:
            merged = set_path(data, sweep.key, value)
        except KeyError as exc:
            raise ModelError(source, "sweep.key", str(exc.args[0])) from None
        text = f"{value:g}" if isinstance(value, float) else str(value)
        merged.update(id=f"{base.id}-{text}".lower(), sweep=None)
        merged["description"] = f"{base.description} ({label} = {text})"
        doc = build(ScenarioDoc, merged, source, f"sweep.values[{i}]")
        out.append((doc, SweepPoint(base.id, sweep.key, label, value)))
    return out


@dataclass
class Catalog:
    scenarios: dict[str, Scenario]

    @classmethod
    def load(cls, directory: Path = SCENARIO_DIR, roles: HostRoles | None = None) -> Catalog:
        if not directory.is_dir():
            raise ConfigError(f"{directory}: no scenario directory")
        profiles = Profiles(directory / PROFILE_DIR)
        found: dict[str, Scenario] = {}
        for path in sorted(directory.glob("*.y*ml")):
            for scenario in load_file(path, roles, profiles):
                if scenario.id in found:
                    raise ModelError(
                        scenario.source,
                        "id",
                        f"{scenario.id!r} is also defined in {found[scenario.id].source}",
                    )
                found[scenario.id] = scenario
        return cls(found)

    def select(self, selectors: Iterable[str]) -> list[Scenario]:
        """By id, `tag:NAME`, `suite:NAME`, `sweep:BASE-ID` or a bare suite/tag name (a
        sweep's base id selects every point); catalog order."""
        chosen: dict[str, Scenario] = {}
        for sel in selectors:
            kind, _, name = sel.partition(":") if ":" in sel else ("", "", sel)
            matched = [
                s
                for s in self.scenarios.values()
                if (kind in ("", "id") and s.id == name)
                or (kind in ("", "suite") and name in s.doc.suites)
                or (kind in ("", "tag") and name in s.doc.tags)
                or (kind in ("", "sweep") and s.sweep is not None and s.sweep.base == name)
            ]
            if not matched:
                raise ConfigError(f"no scenario, suite, tag or sweep matches {sel!r}")
            chosen.update((s.id, s) for s in matched)
        return [s for s in self.scenarios.values() if s.id in chosen]
