from chaos_runner.cli import main


def test_bad_extra_var_is_a_usage_error(capsys, tmp_path):
    rc = main(["--state-dir", str(tmp_path), "lab", "up", "-e", "no-equals-sign"])
    assert rc == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_unknown_verb_is_a_usage_error(capsys):
    assert main(["explode"]) == 2


def test_status_of_a_lab_that_is_not_up_says_so(capsys, tmp_path):
    rc = main(["--state-dir", str(tmp_path), "lab", "status"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "lab not ready" in err and "chaoslab lab up" in err


def test_missing_inventory_is_named(capsys, tmp_path):
    rc = main(["--inventory", str(tmp_path / "nope"), "lab", "up"])
    assert rc == 2
    assert "nope" in capsys.readouterr().err


def test_lab_down_refuses_a_cluster_inventory(capsys):
    rc = main(["--inventory", "inventory/cluster.example", "lab", "down"])
    assert rc == 2
    assert "only removes the local lab of guests" in capsys.readouterr().err
