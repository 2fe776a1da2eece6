"""Every file of the bad-input corpus is refused with exit 2 and a message naming the file
and the key. Each corpus file says which key on its first line (`# key: ...`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chaos_runner.cli import main

DATA = Path(__file__).resolve().parent.parent / "data"
SCENARIOS = sorted((DATA / "bad_scenarios").glob("*.yml"))
CONFIGS = sorted((DATA / "bad_configs").glob("*.yml"))


def _key(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# key: "), f"{path} must start with '# key: ...'"
    return first.removeprefix("# key: ")


def test_the_corpus_is_large_enough():
    assert len(SCENARIOS) + len(CONFIGS) >= 30


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem.removeprefix("net.example."))
def test_bad_scenario_is_refused_naming_file_and_key(path, tmp_path, capsys):
    directory = tmp_path / "scenarios"
    directory.mkdir()
    target = directory / "net.example.yml"
    shutil.copy(path, target)
    code = main(["validate", "--scenarios", str(directory)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(target) in err or "net.example.yml" in err, err
    assert f": {_key(path)}" in err, err


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_bad_config_is_refused_naming_file_and_key(path, capsys):
    code = main(["validate", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert path.name in err, err
    assert f": {_key(path)}" in err, err


def test_the_shipped_catalog_and_default_config_are_valid(capsys):
    assert main(["validate"]) == 0
    assert "scenario(s) valid" in capsys.readouterr().out


def test_a_selection_that_matches_nothing_is_a_usage_error(capsys):
    assert main(["list", "suite:nope"]) == 2
    assert "suite:nope" in capsys.readouterr().err


def test_smoke_suite_is_declared_and_short():
    from chaos_runner.model.scenario import Catalog

    smoke = Catalog.load().select(["suite:smoke"])
    assert len(smoke) >= 4
    # Phase time only; gates and attempts come on top, the README budget is 3 minutes.
    assert sum(s.bound_s for s in smoke) <= 150
