import io

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


def _events(*specs):
    from chaos_runner.ansible import PlaybookEvent

    return [
        PlaybookEvent(0, kind, host, task, False, message, role)
        for kind, host, task, role, message in specs
    ]


PLAY = (
    ("playbook_on_task_start", None, "Build the templates", "lab", None),
    ("runner_on_start", "localhost", "Build the templates", "lab", None),
    ("playbook_on_task_start", None, "Boot the guest", "lab", None),
    ("playbook_on_task_start", None, "Install packages", "common", None),
    ("runner_on_start", "db1", "Install packages", "common", None),
    ("runner_on_start", "app1", "Install packages", "common", None),
    ("runner_on_failed", "app1", "Install packages", "common", "no route"),
)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_prints_a_line_per_task_by_default():
    from chaos_runner.cli.main import Progress

    out = _Stream(tty=False)
    progress = Progress(stream=out)
    for event in _events(*PLAY):
        progress(event)
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "lab : Build the templates",
        "lab : Boot the guest",
        "common : Install packages",
        "  FAILED app1: no route",
    ]


def test_quiet_progress_off_a_terminal_prints_each_role_once_and_every_failure():
    from chaos_runner.cli.main import Progress

    out = _Stream(tty=False)
    progress = Progress(stream=out, quiet=True)
    for event in _events(*PLAY):
        progress(event)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "lab: Build the templates",
        "common: Install packages",
        "  FAILED app1: no route",
    ]


def test_quiet_progress_on_a_terminal_rewrites_one_line_with_the_hosts_at_work():
    from chaos_runner.cli.main import Progress

    out = _Stream(tty=True)
    progress = Progress(stream=out, quiet=True)
    for event in _events(*PLAY):
        progress(event)
    progress.finish()
    text = out.getvalue()
    frames = text.split("\r\x1b[K")
    assert frames[-1].startswith("[") and "common : Install packages (db1, app1)" in frames[-1]
    # The failure ends the live line and stands on a line of its own; finish adds no blank one.
    assert text.endswith("FAILED app1: no route\n")
    assert "\n\n" not in text
