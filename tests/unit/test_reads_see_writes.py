"""cache.partial-invalidation: the note's versions, and the check that a read started
after an acknowledged rename shows it (numbers by hand from the timestamps below)."""

from __future__ import annotations

import json

import pytest

from chaos_runner.analysis.checkers import scoped
from chaos_runner.workload.operations import NOTE_ID, LoadSettings, judge, request_for
from tests.unit.test_checkers import by_name, evidence, op

NAME = "reads see acknowledged writes"


def note(kind: str, start_ms: float, latency_ms: float, version: int) -> object:
    return op(start_ms, latency_ms, kind=kind, detail={"version": version})


def check(ops: list) -> object:
    ev = evidence("consistent", ops, expect={"reads_see_writes": True})
    return by_name(scoped(ev))[NAME]


def test_reads_after_each_acknowledged_write_show_it():
    ops = [
        note("note_write", 1000, 10, 1),  # acknowledged at 1.010 s
        note("note_read", 1005, 5, 0),  # started before the ack: may show the old version
        note("note_read", 1020, 5, 1),
        note("note_write", 1100, 10, 2),
        note("note_read", 1200, 5, 2),
    ]
    result = check(ops)
    assert (result.ok, result.measured) == (True, "0/2 stale")


def test_a_stale_read_fails_and_says_how_far_behind_it_was():
    ops = [
        note("note_write", 1000, 10, 1),  # ack at 1.010 s
        note("note_write", 1100, 10, 2),  # ack at 1.110 s
        note("note_read", 1600, 5, 0),  # missed version 1, acknowledged 0.59 s before
        note("note_read", 1700, 5, 2),
    ]
    result = check(ops)
    assert (result.ok, result.measured) == (False, "1/2 stale")
    assert result.detail.startswith("the longest lagged 0.6 s behind an acknowledged write")
    assert "read version 0 after version 2 was acknowledged" in result.detail


def test_without_a_read_after_an_acknowledged_write_nothing_is_judged():
    result = check([note("note_read", 1000, 5, 0), note("note_write", 1100, 10, 1)])
    assert not result.ok and result.detail == "no note read after an acknowledged note write"


@pytest.mark.parametrize(
    ("kind", "answer", "outcome", "version"),
    [
        ("note_read", {"note": {"id": NOTE_ID, "title": "t", "version": 7}}, "ok", 7),
        ("note_write", {"updateNote": {"status": "success", "message": "", "version": 8}}, "ok", 8),
        (
            "note_write",
            {"updateNote": {"status": "failed:not_found", "message": "x"}},
            "fail",
            None,
        ),
    ],
)
def test_note_operations_keep_the_version_they_saw(kind, answer, outcome, version):
    verdict = judge(kind, 200, json.dumps({"data": answer}))
    assert verdict.outcome == outcome
    assert (verdict.detail or {}).get("version") == version
    request = request_for(kind, 3, LoadSettings(url="http://x", op_prefix="run"))
    assert NOTE_ID.encode() in request.body and request.op_id is None
