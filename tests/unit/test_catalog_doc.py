"""docs/catalog.md is current, and `chaoslab list --format md` reads outcomes right.

The document's "last outcome" column comes from the runs on the machine that generated it,
which a fresh checkout does not have; so the regeneration here takes that column from the
committed document itself (`--outcomes-from`). Everything else - ids, questions, faults,
expectations, suites, times, skip reasons - is regenerated from scenarios/ and must match
byte for byte.
"""

from __future__ import annotations

from pathlib import Path

from chaos_runner.cli.main import main
from chaos_runner.model.scenario import Catalog
from chaos_runner.reports.catalog import (
    NOT_RUN,
    catalog_markdown,
    outcomes_from_doc,
    outcomes_from_runs,
)
from chaos_runner.results.records import Journal, summary_record, write_journal
from chaos_runner.target.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "catalog.md"
ARGS = ["--inventory", str(ROOT / "inventory" / "lab"), "list", "--format", "md"]
REGENERATE = "chaoslab list --format md > docs/catalog.md"


def test_the_committed_catalog_document_is_current(capsys):
    code = main([*ARGS, "--scenarios", str(ROOT / "scenarios"), "--outcomes-from", str(DOC)])
    assert code == 0
    assert capsys.readouterr().out == DOC.read_text(), f"docs/catalog.md is stale: {REGENERATE}"


def _journal(
    runs: Path, run_id: str, started: str, outcomes: dict[str, str], line: str | None = None
) -> None:
    journal = Journal(run_id=run_id, started_at=started, schema_version=2)
    if line:
        journal.apps = {"app1": {"version": line}}
    for scenario, outcome in outcomes.items():
        attempt = {
            "scenario": scenario,
            "attempt": 1,
            "outcome": outcome,
            "reason": "no netem | here" if outcome == "skipped" else "",
            "faults": [{"id": "f", "kind": "net.delay", "host": "app1", "mechanism": "nfqueue"}],
        }
        journal.scenarios.append(
            summary_record(
                {
                    "scenario": scenario,
                    "outcome": outcome,
                    "reason": attempt["reason"],
                    "attempts": [attempt],
                    "chosen_attempt": 1,
                }
            )
        )
    (runs / run_id).mkdir(parents=True)
    write_journal(runs / run_id, journal)


def test_the_newest_journal_holding_an_id_gives_its_last_outcome(tmp_path):
    runs = tmp_path / "runs"
    # Written newest first: the order of the directories must not matter, started_at does.
    _journal(runs, "run-b", "2026-02-01T00:00:00+00:00", {"net.a": "deviated"})
    _journal(runs, "run-a", "2026-01-01T00:00:00+00:00", {"net.a": "passed", "net.b": "skipped"})
    (runs / "run-broken").mkdir()
    (runs / "run-broken" / "journal.json").write_text("{not json")
    (runs / "lab-up-x").mkdir()  # an Ansible artifacts directory: no journal
    outcomes = outcomes_from_runs(runs)
    assert outcomes == {
        "net.a": "deviated; net.delay: nfqueue; run-b",
        "net.b": "skipped: no netem \\| here; net.delay: nfqueue; run-a",
    }


def test_the_outcome_column_round_trips_through_the_document(tmp_path):
    roles = load_inventory(ROOT / "inventory" / "lab").roles()
    chosen = Catalog.load(ROOT / "scenarios", roles).select(["net.db-stopped", "tag:loss"])
    outcomes = {"net.db-stopped": "skipped: a \\| b; run-x", "net.loss-5": "passed; run-y"}
    text = catalog_markdown(chosen, outcomes)
    assert "| `net.loss-1` |" in text and f"| {NOT_RUN} |" in text
    (tmp_path / "catalog.md").write_text(text)
    back = outcomes_from_doc(tmp_path / "catalog.md")
    assert back == {**outcomes, "net.loss-1": NOT_RUN, "net.loss-10": NOT_RUN}
    assert catalog_markdown(chosen, back) == text


def test_a_missing_outcomes_document_is_a_usage_error(tmp_path, capsys):
    code = main([*ARGS, "--outcomes-from", str(tmp_path / "nope.md")])
    assert code == 2
    assert "nope.md: cannot read the catalog document" in capsys.readouterr().err


def test_the_default_listing_stays_the_table(capsys):
    assert main([*ARGS[:-2], "net.db-stopped"]) == 0
    out = capsys.readouterr().out
    assert out.split()[:7] == ["id", "phase", "expect", "faults", "suites", "time", "about"]


def test_a_skip_keeps_the_earlier_verdict_and_the_line_is_named(tmp_path):
    runs = tmp_path / "runs"
    _journal(runs, "run-a", "2026-01-01T00:00:00+00:00", {"cache.x": "passed"}, line="0.5.3")
    _journal(
        runs,
        "run-b",
        "2026-02-01T00:00:00+00:00",
        {"cache.x": "skipped", "net.c": "skipped"},
        line="1.31.1",
    )
    outcomes = outcomes_from_runs(runs)
    assert outcomes["cache.x"] == "passed; net.delay: nfqueue; FraiseQL 0.5.3; run-a"
    assert (
        outcomes["net.c"].startswith("skipped: no netem")
        and "FraiseQL 1.31.1; run-b" in outcomes["net.c"]
    )
