"""Shared fixtures. Integration tests need the embedded lab: the `lab` fixture brings it up
if it is not (cold: a few minutes) and fails - never skips - when it cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from chaos_runner.errors import ChaosRunnerError
from chaos_runner.faults.channel import artifacts_left
from chaos_runner.target.lab import LabSettings, LabState, lab_checks
from chaos_runner.workload.graphql import GraphQLClient
from chaos_runner.workload.tokens import TokenMinter

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LINE = "1.31.1"


def chaoslab(
    *args: str, timeout: int = 1200, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chaos_runner.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _lab_healthy(settings: LabSettings) -> bool:
    try:
        state = LabState.load(settings)
    except ChaosRunnerError:
        return False
    return bool(state.apps) and all(c.ok for c in lab_checks(state))


@pytest.fixture(scope="session")
def lab_settings() -> LabSettings:
    return LabSettings.from_env()


@pytest.fixture(scope="session")
def lab(lab_settings: LabSettings) -> LabState:
    if not _lab_healthy(lab_settings):
        proc = chaoslab("lab", "up", "-q")
        if proc.returncode != 0:
            pytest.fail(
                "the embedded lab could not be brought up (needs root, systemd-container, "
                "debootstrap, iproute2 - see scripts/setup.sh):\n"
                + proc.stdout[-3000:]
                + proc.stderr[-3000:]
            )
    return LabState.load(lab_settings)


def converge_app(line: str) -> None:
    proc = chaoslab("lab", "up", "-q", "--limit", "app1", "--fraiseql-version", line)
    if proc.returncode != 0:
        pytest.fail(f"could not converge app1 to FraiseQL {line}:\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session", params=["1.31.1", "1.9.16", "0.5.3"])
def fraiseql_line(request: pytest.FixtureRequest, lab: LabState, lab_settings: LabSettings) -> str:
    """Converge app1 to each FraiseQL line in turn; the default line is restored at the end."""
    line = str(request.param)
    if LabState.load(lab_settings).app("app1").version != line:
        converge_app(line)
    if line != DEFAULT_LINE:
        request.addfinalizer(lambda: converge_app(DEFAULT_LINE))
    return line


@pytest.fixture()
def app_state(fraiseql_line: str, lab_settings: LabSettings) -> LabState:
    state = LabState.load(lab_settings)
    assert state.app("app1").version == fraiseql_line
    return state


@pytest.fixture()
def minter(app_state: LabState, lab_settings: LabSettings) -> TokenMinter:
    app = app_state.app("app1")
    return TokenMinter(
        pki_dir=lab_settings.state_dir / "pki", issuer=app.issuer, audience=app.audience
    )


@pytest.fixture()
def client(app_state: LabState):
    with GraphQLClient(app_state.app("app1").url, app_state.guard) as c:
        yield c


@pytest.fixture()
def db_admin(lab: LabState):
    """Superuser connection to db1 directly (not through the proxy): the ground truth.
    Per test: fault tests legitimately kill connections (crash, terminate)."""
    address = lab.guard.check(lab.hosts["db1"]["address"])
    with psycopg.connect(
        host=address,
        port=5432,
        dbname="fraiseql_demo",
        user="chaos_admin",
        password=lab.settings.secret("postgresql_chaos_password"),
        connect_timeout=5,
        autocommit=True,
    ) as conn:
        yield conn


def app_record(lab_settings: LabSettings, host: str = "app1") -> dict:
    return json.loads((lab_settings.state_dir / "apps" / f"{host}.json").read_text())


@pytest.fixture()
def healed_after(faults):
    """After the test: heal-all on every host, then prove no fault artifact is left. Uses
    the requesting module's own `faults` client."""
    yield
    results = faults.heal_all()
    left = {h: artifacts_left(r["remaining"]) for h, r in results.items()}
    assert not any(left.values()), left
