"""Fault requests are validated by the agent's own code (imported on the controller)."""

from pathlib import Path

import pytest
import yaml

from chaos_runner.faults.channel import FAULT_KINDS
from chaosfault.kinds import FAULTS
from chaosfault.validation import FaultInputError
from chaosfault.validation import validate as agent_validate

REPO = Path(__file__).resolve().parents[2]


def validate(spec):
    return agent_validate(spec)


def test_role_entry_point_choices_match_the_agent():
    specs = yaml.safe_load((REPO / "roles/faults/meta/argument_specs.yml").read_text())[
        "argument_specs"
    ]
    assert sorted(specs["inject"]["options"]["faults_kind"]["choices"]) == sorted(FAULT_KINDS)
    role_vars = yaml.safe_load((REPO / "roles/faults/vars/main.yml").read_text())
    assert sorted(role_vars["__faults_kinds"]) == sorted(FAULT_KINDS)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "net.teleport"}, "kind: unknown fault 'net.teleport'"),
        ({"kind": "net.reset", "params": {"port": 5432}, "ttl_s": -1}, "ttl_s: -1 is outside"),
        (
            {"kind": "net.reset", "params": {"port": 5432}, "ttl_s": 10_000},
            "ttl_s: 10000 is outside",
        ),
        (
            {"kind": "net.reset", "params": {"port": 5432}, "ttl_s": "soon"},
            "ttl_s: expected a number",
        ),
        ({"kind": "net.reset", "params": {}}, "params.port: required"),
        (
            {"kind": "net.loss", "params": {"probability": 1.01}},
            "params.probability: 1.01 is outside",
        ),
        (
            {"kind": "net.loss", "params": {"probability": True}},
            "params.probability: expected a number",
        ),
        (
            {"kind": "net.partition", "params": {"peer": "db1"}},
            "params.peer: expected an IPv4 address",
        ),
        (
            {"kind": "net.partition", "params": {"peer": "1.2.3.999"}},
            "params.peer: expected an IPv4",
        ),
        (
            {"kind": "net.partition", "params": {"peer": "1.2.3.4", "direction": "up"}},
            "params.direction",
        ),
        (
            {"kind": "net.delay", "params": {"syn_only": True}},
            "params.port: required with syn_only",
        ),
        (
            {"kind": "net.bandwidth", "params": {"rate_kbit": 1.5}},
            "params.rate_kbit: expected a whole",
        ),
        (
            {"kind": "res.memory", "params": {"program": "x", "limit_mb": 1}},
            "params.limit_mb: 1 is outside",
        ),
        (
            {"kind": "res.memory", "params": {"program": "x", "limit_mb": 64, "restart": "yes"}},
            "params.restart: expected true or false",
        ),
        ({"kind": "proc.kill", "params": {"program": "../etc"}}, "params.program"),
        ({"kind": "pg.lock", "params": {"table": "tb; DROP TABLE x"}}, "params.table"),
        ({"kind": "pg.setting", "params": {"name": "fsync", "value": "off"}}, "params.name"),
        ({"kind": "pg.setting", "params": {"name": "work_mem", "value": "1'; --"}}, "params.value"),
        ({"kind": "jwks.response", "params": {"status": 99}}, "params.status: 99 is outside"),
        (
            {"kind": "cache.evict", "params": {"maxmemory_kb": 8, "headroom_kb": 1}},
            "maxmemory_kb or headroom_kb, not both",
        ),
        ({"kind": "cache.evict", "params": {"headroom_kb": 0}}, "params.headroom_kb: 0 is outside"),
        (
            {"kind": "net.reset", "params": {"port": 1}, "colour": "red"},
            "fault: unknown key(s) ['colour']",
        ),
        (
            {"kind": "net.reset", "params": {"port": 1, "colour": "red"}},
            "unknown parameter(s) ['colour']",
        ),
        ("net.reset", "fault: expected a JSON object"),
        ({"kind": ["net.reset"]}, "kind: unknown fault ['net.reset']"),
        ({"kind": "net.reset", "params": {"port": 1}, "lease_s": 0}, "lease_s: 0 is outside"),
        ({"kind": "net.reset", "params": {"port": 1}, "lease_s": 61}, "lease_s: 61 is outside"),
        (
            {"kind": "net.reset", "params": {"port": 1}, "lease_s": "6"},
            "lease_s: expected a number",
        ),
    ],
)
def test_bad_requests_name_the_parameter(spec, message):
    with pytest.raises(FaultInputError) as err:
        validate(spec)
    assert message in str(err.value)


def test_defaults_are_filled_in():
    kind, params, ttl = validate({"kind": "net.delay", "params": {"delay_ms": 50}})
    assert (kind, ttl) == ("net.delay", 60.0)
    assert params == {
        "delay_ms": 50.0,
        "jitter_ms": 0.0,
        "syn_only": False,
        "probability": 1.0,
        "port_side": "local",
    }


def test_every_kind_declares_its_parameters():
    for kind, fault in FAULTS.items():
        assert isinstance(fault.params, tuple), kind


def test_netem_arguments_where_the_kernel_has_netem():
    # This kernel has no sch_netem, so the netem branch is pinned here (tc-netem(8) syntax).
    _, params, _ = validate({"kind": "net.delay", "params": {"delay_ms": 200, "jitter_ms": 20}})
    assert FAULTS["net.delay"].netem_args(params) == ["delay", "200ms", "20ms"]
    _, params, _ = validate(
        {"kind": "net.reorder", "params": {"delay_ms": 50, "probability": 0.25}}
    )
    assert FAULTS["net.reorder"].netem_args(params) == ["delay", "50ms", "reorder", "75.00%"]
    _, params, _ = validate({"kind": "net.corrupt", "params": {"probability": 0.001}})
    assert FAULTS["net.corrupt"].netem_args(params) == ["corrupt", "0.10%"]
