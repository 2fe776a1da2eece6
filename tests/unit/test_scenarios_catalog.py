"""The shipped catalog: variants, selection, defaults from the KPI table, host references."""

from __future__ import annotations

import pytest

from chaos_runner.errors import ConfigError
from chaos_runner.model.scenario import Catalog, resolve_params

SLICE = {
    "net.db-stopped", "net.db-blackhole", "net.loss-5", "net.latency-constant",
    "db.lost-update", "res.app-cpu-throttle", "res.app-pause", "auth.jwks-500", "auth.bypass",
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(hosts=["db1", "proxy1", "app1", "auth1", "cache1"])


def test_the_first_slice_is_in_the_catalog(catalog):
    assert {s.id for s in catalog.select(["suite:slice"])} == SLICE
    assert {s.id for s in catalog.select(["smoke"])} <= SLICE


def test_variants_are_their_own_scenarios_with_merged_overrides(catalog):
    loss = {s.id: s for s in catalog.select(["tag:loss"])}
    assert set(loss) == {"net.loss-1", "net.loss-5", "net.loss-10"}
    assert loss["net.loss-1"].doc.faults[0].params["probability"] == 0.01
    assert loss["net.loss-10"].doc.faults[0].params["probability"] == 0.10
    # Untouched parts of the base document are kept by every variant.
    assert loss["net.loss-10"].doc.faults[0].params["peer"] == "@proxy1"
    assert loss["net.loss-10"].expect.p95_budget_ms == 1000
    assert loss["net.loss-1"].expect.p95_budget_ms == 600


def test_kpi_defaults_are_inherited(catalog):
    e = catalog.scenarios["net.db-stopped"].expect
    assert (e.recovery_s, e.lost_writes, e.crashes, e.p95_factor, e.throughput_min) == (
        5.0, 0, 0, 3.0, 0.8,
    )  # fmt: skip
    assert e.memory_mb == 500 and e.error_clarity == 1.0


def test_selection_by_id_tag_and_suite_keeps_catalog_order(catalog):
    chosen = catalog.select(["res.app-pause", "tag:auth", "net.db-stopped"])
    ids = [s.id for s in chosen]
    assert ids == sorted(ids, key=list(catalog.scenarios).index)
    assert {"auth.bypass", "auth.jwks-500", "res.app-pause", "net.db-stopped"} == set(ids)


def test_host_references_become_addresses_at_run_time():
    params = resolve_params({"peer": "@proxy1", "port": 5432}, {"proxy1": "198.18.0.12"})
    assert params == {"peer": "198.18.0.12", "port": 5432}
    with pytest.raises(ConfigError):
        resolve_params({"peer": "@nowhere"}, {"proxy1": "198.18.0.12"})


def test_every_scenario_serialises_for_the_journal(catalog):
    for scenario in catalog.scenarios.values():
        data = scenario.as_dict()
        assert data["id"] == scenario.id and data["expect"]["class"] == scenario.expect.class_
