"""Phases 1 and 2 of SCENARIOS.md in the shipped catalog: every id present (as itself or as
its variants), in its phase's suite and in `catalog`, with a question; writes checked;
isolation scenarios that set their level explicitly and permit only what PostgreSQL
documents at it; smoke and slice as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_runner.analysis.isolation import DOCUMENTED_ANOMALIES
from chaos_runner.model.build import read_yaml
from chaos_runner.model.expand import deep_merge
from chaos_runner.model.scenario import Catalog, Scenario
from chaos_runner.target.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
PHASE1 = (
    "net.db-refused", "net.db-stopped", "net.db-blackhole", "net.partition-oneway",
    "net.pool-exhaustion", "net.slow-connect", "net.mid-query-drop", "net.latency-ramp",
    "net.latency-constant", "net.latency-jitter", "net.latency-asymmetric", "net.loss-1",
    "net.loss-5", "net.loss-10", "net.duplicate-0.5", "net.duplicate-2", "net.reorder",
    "net.corrupt", "net.bandwidth", "net.client-partition",
)  # fmt: skip
PHASE2 = (
    "db.statement-timeout", "db.bad-graphql", "db.constraint-violation",
    "db.permission-denied", "db.resource-limits", "db.dirty-read", "db.write-skew",
    "db.non-repeatable-read", "db.phantom-read", "db.lost-update", "db.table-lock",
    "db.index-disabled", "db.work-mem-pressure", "db.max-connections", "db.restart",
    "db.crash",
)  # fmt: skip
ISOLATION_KINDS = ("transfer", "snapshot_read")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(roles=load_inventory(ROOT / "inventory" / "lab").roles())


def _runs(catalog: Catalog, base: str) -> list[Scenario]:
    return [s for i, s in catalog.scenarios.items() if i == base or i.startswith(f"{base}-")]


@pytest.mark.parametrize(("phase", "ids"), [(1, PHASE1), (2, PHASE2)])
def test_every_id_of_the_phase_is_in_its_suite_and_the_catalog(catalog, phase, ids):
    for base in ids:
        runs = _runs(catalog, base)
        assert runs, f"{base}: not in the catalog"
        for s in runs:
            assert s.doc.phase == phase, s.id
            assert {f"phase{phase}", "catalog"} <= set(s.doc.suites), s.id
            assert s.doc.question, f"{s.id}: no question"
    in_phase = {s.id for s in catalog.scenarios.values() if s.doc.phase == phase}
    assert in_phase == {s.id for s in catalog.select([f"suite:phase{phase}"])}


def test_smoke_and_slice_are_as_they_were(catalog):
    assert {s.id for s in catalog.select(["suite:smoke"])} == {
        "net.db-stopped", "db.lost-update", "res.app-pause", "auth.jwks-500", "auth.bypass",
    }  # fmt: skip
    assert {s.id for s in catalog.select(["suite:slice"])} == {
        "net.db-stopped", "net.db-blackhole", "net.loss-5", "net.latency-constant",
        "db.lost-update", "res.app-cpu-throttle", "res.app-pause", "auth.jwks-500",
        "auth.bypass",
    }  # fmt: skip
    assert set(catalog.scenarios) == {s.id for s in catalog.select(["suite:catalog"])}


def test_writes_are_checked_wherever_they_happen(catalog):
    for s in catalog.scenarios.values():
        mix = {k for k, w in s.doc.load.mix.items() if w > 0}
        if "increment" in mix:
            assert s.doc.counter, s.id  # the counter check
        # mutation -> the ledger check and transfer -> the account group are automatic;
        # a consistent scenario needs at least one of them.
        if s.expect.class_ == "consistent":
            assert mix & {"mutation", "increment", "transfer"}, s.id


def _raw_documents(path: Path) -> dict[str, dict]:
    """Each id of a file as written (profile underneath not applied): what the file says."""
    data, _ = read_yaml(path)
    variants = data.get("variants") or []
    if not variants:
        return {data["id"]: data}
    return {v["id"]: deep_merge(data, v.get("set") or {}) for v in variants}


def test_isolation_scenarios_set_their_level_and_permit_only_what_it_documents(catalog):
    seen = 0
    for path in sorted((ROOT / "scenarios").glob("*.yml")):
        for sid, raw in _raw_documents(path).items():
            s = catalog.scenarios.get(sid)
            if s is None or not any(s.doc.load.mix.get(k, 0) > 0 for k in ISOLATION_KINDS):
                continue
            seen += 1
            assert "isolation" in ((raw.get("load") or {}).get("params") or {}), (
                f"{sid}: load.params.isolation must be set in the file"
            )
            level = s.doc.load.params.isolation.replace("_", " ")
            permitted = set(s.expect.permitted_anomalies)
            assert permitted <= DOCUMENTED_ANOMALIES[level], (sid, level, permitted)
    assert seen >= 12


def test_the_per_level_variants_run_at_their_level(catalog):
    for base in ("db.write-skew", "db.non-repeatable-read", "db.phantom-read"):
        levels = {s.id.removeprefix(f"{base}-"): s.doc.load.params.isolation for s in
                  _runs(catalog, base)}  # fmt: skip
        assert levels == {
            "read-committed": "read_committed",
            "repeatable-read": "repeatable_read",
            "serializable": "serializable",
        }, base
    assert catalog.scenarios["db.dirty-read"].doc.load.params.isolation == "read_uncommitted"
