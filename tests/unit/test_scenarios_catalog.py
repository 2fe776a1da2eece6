"""The shipped catalog: variants, selection, defaults from the KPI table, host references."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chaos_runner.errors import ConfigError
from chaos_runner.model.scenario import Catalog, load_file
from chaos_runner.target.inventory import load_inventory
from chaos_runner.target.roles import HostRoles, resolve_params

LAB_INVENTORY = Path(__file__).resolve().parents[2] / "inventory" / "lab"

SLICE = {
    "net.db-stopped", "net.db-blackhole", "net.loss-5", "net.latency-constant",
    "db.lost-update", "res.app-cpu-throttle", "res.app-pause", "auth.jwks-500", "auth.bypass",
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(roles=load_inventory(LAB_INVENTORY).roles())


def test_the_first_slice_is_in_the_catalog(catalog):
    assert {s.id for s in catalog.select(["suite:slice"])} == SLICE
    assert {s.id for s in catalog.select(["smoke"])} <= SLICE


def test_variants_are_their_own_scenarios_with_merged_overrides(catalog):
    loss = {s.id: s for s in catalog.select(["tag:loss"])}
    assert set(loss) == {"net.loss-1", "net.loss-5", "net.loss-10"}
    assert loss["net.loss-1"].doc.faults[0].params["probability"] == 0.01
    assert loss["net.loss-10"].doc.faults[0].params["probability"] == 0.10
    # Untouched parts of the base document are kept by every variant.
    assert loss["net.loss-10"].doc.faults[0].params["peer"] == "@proxy"
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
    tagged = {i for i, s in catalog.scenarios.items() if "auth" in s.doc.tags}
    assert {"auth.bypass", "auth.jwks-500", "casc.auth-down-critical-query"} <= tagged
    assert tagged | {"res.app-pause", "net.db-stopped"} == set(ids)


ROLES = HostRoles(
    {"db": ["pg-a", "pg-b"], "proxy": ["px"], "app": ["api"]},
    {"pg-a": "10.0.0.1", "pg-b": "10.0.0.2", "px": "10.0.0.3", "api": "10.0.0.4"},
)


def test_role_references_become_hosts_and_addresses_at_run_time():
    params = resolve_params({"peer": "@proxy", "port": 5432, "other": "@db[1]"}, ROLES)
    assert params == {"peer": "10.0.0.3", "port": 5432, "other": "10.0.0.2"}
    assert ROLES.host("@db") == "pg-a" and ROLES.host("@db[1]") == "pg-b"
    with pytest.raises(ConfigError, match="no hosts in group 'cache'"):
        resolve_params({"peer": "@cache"}, ROLES)
    with pytest.raises(ConfigError, match="group 'db' has 2 host"):
        ROLES.host("@db[2]")


def test_the_catalog_holds_no_literal_host_name_or_address():
    names = set(load_inventory(LAB_INVENTORY).hosts) - {"localhost"}
    root = LAB_INVENTORY.parents[1] / "scenarios"
    for path in root.rglob("*.yml"):
        text = path.read_text()
        assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b", text), path
        for name in names:
            assert not re.search(rf"\b{name}\b", text), (path, name)


def test_profiles_preset_blocks_and_the_scenario_wins(catalog):
    stopped = catalog.scenarios["net.db-stopped"].doc
    assert stopped.load.rate == 30  # its own
    assert stopped.load.mix == {"query": 6, "nested": 2, "mutation": 2}  # from the profile
    assert stopped.windows.baseline_s == 3 and stopped.windows.recovery_s == 8
    bypass = catalog.scenarios["auth.bypass"].doc
    assert bypass.load.mix == {"query": 2, "mutation": 8}  # replaced whole, not merged


def test_a_bad_profile_value_names_the_profile_file_and_leaf_key(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "p.yml").write_text("load: {mix: {query: -1}}\n")
    (tmp_path / "net.x.yml").write_text(
        "id: net.x\nphase: 1\ndescription: d\nprofile: p\nexpect: {class: tolerate}\n"
    )
    with pytest.raises(ConfigError, match=r"p\.yml: load\.mix"):
        load_file(tmp_path / "net.x.yml", ROLES)


def test_a_schedule_unrolls_repeats_in_start_order(tmp_path):
    (tmp_path / "net.flap.yml").write_text(
        "id: net.flap\nphase: 1\ndescription: d\nexpect: {class: tolerate}\n"
        "windows: {hold_s: 30}\n"
        "schedule:\n"
        "  - {at_s: 2, duration_s: 3, repeat: 3, every_s: 10, label: flap,\n"
        "     faults: [{kind: net.loss, host: '@api', params: {peer: '@proxy', probability: 1}}]}\n"
        "  - {at_s: 0, duration_s: 1,\n"
        "     faults: [{kind: net.loss, host: '@app', params: {peer: '@db[1]', probability: 1}}]}\n"
    )
    with pytest.raises(ConfigError, match=r"schedule\[0\]\.faults\[0\]\.host: .*'api'"):
        load_file(tmp_path / "net.flap.yml", ROLES)
    text = (tmp_path / "net.flap.yml").read_text().replace("'@api'", "'@app'")
    (tmp_path / "net.flap.yml").write_text(text)
    (scenario,) = load_file(tmp_path / "net.flap.yml", ROLES)
    stages = [(s.label, s.start_s, s.end_s) for s in scenario.stages()]
    assert stages == [
        ("stage 2", 0.0, 1.0), ("flap #1", 2.0, 5.0), ("flap #2", 12.0, 15.0),
        ("flap #3", 22.0, 25.0),
    ]  # fmt: skip


def test_a_sweep_makes_one_variant_per_value_with_its_point(catalog):
    points = catalog.select(["sweep:net.db-outage"])
    assert [s.id for s in points] == [f"net.db-outage-{v}" for v in (5, 10, 15, 20, 30, 45, 60)]
    assert [s.doc.windows.hold_s for s in points] == [5, 10, 15, 20, 30, 45, 60]
    assert {s.sweep.label for s in points if s.sweep} == {"outage"}
    assert "net.db-outage" not in catalog.scenarios  # the base itself is not run


def test_the_latency_ramp_is_a_schedule_inside_its_hold(catalog):
    ramp = catalog.scenarios["net.latency-ramp"]
    delays = [(s.start_s, s.faults[0].params["delay_ms"]) for s in ramp.stages()]
    assert delays == [(15, 100), (30, 500), (45, 2000)]
    assert ramp.stages()[-1].end_s == ramp.doc.windows.hold_s


def test_every_scenario_serialises_for_the_journal(catalog):
    for scenario in catalog.scenarios.values():
        data = scenario.as_dict()
        assert data["id"] == scenario.id and data["expect"]["class"] == scenario.expect.class_


def test_variants_replace_value_lists_and_merge_lists_of_mappings():
    from chaos_runner.model.expand import deep_merge

    base = {"expect": {"unaffected": ["query", "nested"]}, "faults": [{"kind": "k", "p": 1}]}
    merged = deep_merge(base, {"expect": {"unaffected": []}, "faults": [{"p": 2}]})
    assert merged["expect"]["unaffected"] == []  # a value list is replaced whole
    assert merged["faults"] == [{"kind": "k", "p": 2}]  # a list of mappings merges by position
    assert deep_merge(base, {"expect": {"unaffected": ["health"]}})["expect"]["unaffected"] == [
        "health"
    ]
