"""client.burst: many operations at once on top of the load, and what reached PostgreSQL."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from chaos_runner.faults.steps import ClientBurstFault, build_fault
from chaos_runner.model.build import ModelError
from chaos_runner.model.scenario import FaultStep, load_file


class Load:
    """Finishes a burst's operations on another thread, a few at a time."""

    def __init__(self, outcome: str = "ok") -> None:
        self.asked: list[tuple] = []
        self.ended: set[int] = set()
        self.ops: list[SimpleNamespace] = []
        self.cancelled: list[range] = []
        self.outcome = outcome

    def burst(self, kind: str, count: int, rate: float | None = None) -> range:
        self.asked.append((kind, count) if rate is None else (kind, count, rate))
        indices = range(1000, 1000 + count)

        def finish() -> None:
            for i in indices:
                self.ops.append(
                    SimpleNamespace(index=i, outcome=self.outcome, status=200, kind=kind)
                )
                self.ended.add(i)

        threading.Timer(0.2, finish).start()
        return indices

    def burst_ended(self, indices: range) -> int:
        return sum(1 for i in indices if i in self.ended)

    def cancel_burst(self, indices: range) -> None:
        self.cancelled.append(indices)

    def history(self) -> list[SimpleNamespace]:
        return list(self.ops)


def test_verify_waits_for_every_answer_and_counts_the_statements_that_reached_postgresql():
    calls = iter([40, 140])
    step = FaultStep(
        "client.burst", "controller", {"op": "query", "count": 100, "relation": "v_post"}
    )
    load = Load()
    fault = build_fault(step, None, None, 30, None, load=load, statements=lambda rel: next(calls))  # type: ignore[arg-type]
    assert isinstance(fault, ClientBurstFault)
    assert fault.inject()["mechanism"] == "client: operations sent at once"
    check = fault.verify()
    assert load.asked == [("query", 100)]
    assert check["ok"]
    assert check["evidence"] == (
        "100 query sent at once, 100 ended, 100 answered; "
        "PostgreSQL ran 100 statement(s) naming v_post meanwhile"
    )


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"count": 0}, "params.count"),
        ({"count": 10, "op": "subscription"}, "params.op"),
        ({"count": 10, "relation": "v_post; DROP TABLE x"}, "params.relation"),
        ({"count": 10, "share": 0.5}, "params.share"),
        ({"count": 10, "rate": 5, "relation": "v_post"}, "params.relation"),
    ],
)
def test_bad_burst_parameters_name_the_key(tmp_path, params, key):
    assert f"faults[0].{key}" in refusal(tmp_path, "client.burst", "controller", params)


def refusal(tmp_path, kind: str, host: str, params: dict) -> str:
    """The ModelError of a scenario with one fault `kind` on `host` with `params`."""
    path = tmp_path / "conc.example.yml"
    path.write_text(
        "id: conc.example\nphase: 4\ndescription: x\n"
        f"faults: [{{kind: {kind}, host: '{host}', params: {params!r}}}]\n"
        "load: {rate: 10}\nwindows: {hold_s: 5}\nexpect: {class: tolerate}\n"
    )
    with pytest.raises(ModelError) as err:
        load_file(path)
    return str(err.value)


def test_a_flood_is_verified_by_its_first_answer_so_the_hold_goes_on():
    step = FaultStep("client.burst", "controller", {"op": "invalid", "count": 5000, "rate": 1000})
    load = Load()
    fault = build_fault(step, None, None, 30, None, load=load)  # type: ignore[arg-type]
    assert fault.inject()["mechanism"] == "client: operations sent 1000 per second"
    check = fault.verify()  # returns once one has ended, not after 5 s of flood
    assert load.asked == [("invalid", 5000, 1000.0)]
    assert check["ok"] and check["evidence"].startswith("5000 invalid at 1000 per second: ")


def test_a_burst_nobody_answered_is_not_in_effect_and_a_flood_heal_drops_the_rest():
    load = Load(outcome="fail")
    step = FaultStep("client.burst", "controller", {"op": "metrics", "count": 3})
    fault = build_fault(step, None, None, 30, None, load=load, deadline_s=1)  # type: ignore[arg-type]
    fault.inject()
    check = fault.verify()
    assert not check["ok"]
    assert check["evidence"].endswith(
        "none answered as it should: the operations did not reach FraiseQL"
    )
    fault.heal()
    assert load.cancelled == [range(1000, 1003)]


def test_a_flood_of_invalid_graphql_is_in_effect_once_one_is_refused():
    load = Load(outcome="fail")  # refused, with an answer: what invalid GraphQL should get
    step = FaultStep("client.burst", "controller", {"op": "invalid", "count": 3, "rate": 100})
    fault = build_fault(step, None, None, 30, None, load=load, deadline_s=1)  # type: ignore[arg-type]
    fault.inject()
    assert fault.verify()["ok"]
