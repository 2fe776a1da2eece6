"""The journal's typed records: written and read back identically, the previous schema
read, an unknown schema or a damaged journal refused naming the file and key."""

from __future__ import annotations

import json

import pytest

from chaos_runner.errors import ConfigError
from chaos_runner.model.scenario import SweepPoint
from chaos_runner.results.records import (
    SCHEMA_VERSION,
    Journal,
    add_to_series,
    read_journal,
    summary_record,
    write_journal,
)

ATTEMPT = {
    "scenario": "net.x-5",
    "attempt": 1,
    "outcome": "passed",
    "faults": [{"id": "f1", "kind": "proc.stop", "host": "db1", "params": {}, "stage": 0}],
    "checks": [{"name": "recovery", "ok": True, "measured": 0.4, "expected": "<= 5 s"}],
    "metrics": {"recovery_s": 0.4, "first_success_s": 0.2, "bite_s": 0.1},
}


def _summary() -> dict:
    return {"scenario": "net.x-5", "outcome": "passed", "attempts": [ATTEMPT], "chosen_attempt": 1}


def test_a_journal_round_trips_with_its_series(tmp_path):
    journal = Journal(run_id="r1", schema_version=SCHEMA_VERSION)
    record = summary_record(_summary())
    journal.scenarios.append(record)
    add_to_series(journal, record, SweepPoint("net.x", "windows.hold_s", "outage", 5))
    write_journal(tmp_path, journal)
    back = read_journal(tmp_path)
    assert back == journal
    point = back.series["net.x"].points[0]
    assert (point.value, point.attempts[0]["recovery_s"]) == (5, 0.4)
    assert back.scenarios[0].chosen().faults[0].kind == "proc.stop"


def test_a_schema_1_journal_is_read(tmp_path):
    old = {"run_id": "old", "scenarios": [_summary()], "environment": {"kind": "lab"}}
    (tmp_path / "journal.json").write_text(json.dumps(old))
    journal = read_journal(tmp_path)
    assert journal.schema_version == 1 and journal.series == {}


def test_an_unknown_schema_is_refused_clearly(tmp_path):
    (tmp_path / "journal.json").write_text(
        json.dumps({"run_id": "n", "scenarios": [], "schema_version": 9})
    )
    with pytest.raises(ConfigError, match="schema_version: journal schema 9"):
        read_journal(tmp_path)


def test_a_damaged_journal_names_file_and_key(tmp_path):
    bad = {"run_id": "r", "scenarios": [{**_summary(), "attempts": [{**ATTEMPT, "outcome": 3}]}]}
    (tmp_path / "journal.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match=r"journal.json: scenarios\[0\].attempts\[0\].outcome"):
        read_journal(tmp_path)
