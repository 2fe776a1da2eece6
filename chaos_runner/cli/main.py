"""Command line: `chaoslab lab up|down|status`, `list`, `validate`, `run`, `report`,
`compare`, `trend`, `fault ...`, `heal`.

Every flag can also be set by environment (CHAOSLAB_*). Exit codes: 0 = all good,
1 = deviations found (scenario runs), 2 = lab or usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from tabulate import tabulate

from chaos_runner.ansible import REPO_ROOT, PlaybookEvent, run_playbook
from chaos_runner.errors import ChaosRunnerError, ConfigError, LabNotReady
from chaos_runner.target import converged
from chaos_runner.target.inventory import load_inventory
from chaos_runner.target.lab import DEFAULT_STATE_DIR, Check, LabSettings, LabState, lab_checks
from chaos_runner.target.roles import HostRoles

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_DEVIATIONS = 1
EXIT_ERROR = 2


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"CHAOSLAB_{name}", default)


def _extravars(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(
                f"-e/--extra-var expects KEY=VALUE with a plain variable name, got {pair!r}"
            )
        out[key] = value
    return out


class Progress:
    """Playbook progress on stderr, so no long step is silent. By default a line per task
    (elapsed, role, task). Quiet: on a terminal one line rewritten in place (elapsed, role,
    task, the hosts working on it); elsewhere a line each time the role changes. Failures
    always get a line of their own."""

    def __init__(self, stream=sys.stderr, quiet: bool = False) -> None:  # type: ignore[no-untyped-def]
        self.stream = stream
        self.quiet = quiet
        self.start = time.monotonic()
        self.live = quiet and stream.isatty()
        self._role: str | None = None
        self._where = ""
        self._hosts: list[str] = []
        self._drawn = False

    def __call__(self, event: PlaybookEvent) -> None:
        elapsed = time.monotonic() - self.start
        if event.event == "playbook_on_task_start":
            self._where = f"{event.role} : {event.task}" if event.role else str(event.task)
            self._hosts = []
            if not self.quiet:
                self._line(f"[{elapsed:6.1f}s] {self._where}")
            elif self.live:
                self._draw(f"[{elapsed:6.1f}s] {self._where}")
            elif event.role != self._role:
                self._line(f"[{elapsed:6.1f}s] {event.role or 'play'}: {event.task}")
            self._role = event.role
        elif event.event == "runner_on_start" and self.live and event.host:
            self._hosts.append(event.host)
            self._draw(f"[{elapsed:6.1f}s] {self._where} ({', '.join(self._hosts)})")
        elif event.event in ("runner_on_failed", "runner_on_unreachable"):
            self._line(f"[{elapsed:6.1f}s]   FAILED {event.host}: {event.message}")

    def finish(self) -> None:
        """End the live line, so what is printed next starts on a line of its own."""
        if self._drawn:
            print(file=self.stream, flush=True)
            self._drawn = False

    def _draw(self, text: str) -> None:
        print(f"\r\x1b[K{text[:160]}", end="", file=self.stream, flush=True)
        self._drawn = True

    def _line(self, text: str) -> None:
        self.finish()
        print(text, file=self.stream, flush=True)


def _run_dir(args: argparse.Namespace, label: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(args.runs_dir) / f"{label}-{stamp}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require_fraiseql_line(version: str) -> None:
    """Refuse a FraiseQL version the fraiseql role has no line for (its table is the one
    list of supported lines), before anything runs."""
    import yaml

    table = REPO_ROOT / "roles" / "fraiseql" / "vars" / "main.yml"
    lines = yaml.safe_load(table.read_text())["__fraiseql_lines"]
    if version not in lines:
        raise ConfigError(
            f"fraiseql_version {version} (--fraiseql-version): not a supported FraiseQL line;"
            f" supported: {', '.join(lines)} ({table.relative_to(REPO_ROOT)})"
        )


def cmd_lab_up(args: argparse.Namespace) -> int:
    settings = LabSettings.from_env(args.state_dir, args.inventory)
    inventory = load_inventory(settings.inventory)
    inventory.require_lab_hosts()
    inventory.require_groups()
    extravars = {"lab_state_dir": str(settings.state_dir), **_extravars(args.extra_var)}
    if args.fraiseql_version:
        _require_fraiseql_line(args.fraiseql_version)
        extravars["fraiseql_version"] = args.fraiseql_version
    started = time.monotonic()
    whole = not (args.check or args.limit)
    if whole and not args.converge:
        done, why = _converged(settings, extravars)
        if done is not None:
            print(
                f"lab up: nothing to converge - the inputs are those of the converge of {why},"
                f" the guests the same processes, every check ok"
                f" ({time.monotonic() - started:.1f}s; `lab up --converge` runs the playbooks"
                " anyway)",
                file=sys.stderr,
            )
            return _print_checks(done)
        print(f"lab up: converging - {why}", file=sys.stderr)
    if not args.check:
        converged.forget(settings)  # until this converge has ended well
    run_dir = _run_dir(args, "lab-up")
    progress = Progress(quiet=args.quiet)
    try:
        if inventory.embedded():
            print(
                f"lab up: embedded lab from {settings.inventory} (state {settings.state_dir})",
                file=sys.stderr,
            )
            run_playbook(
                "lab_up",
                inventory=settings.inventory,
                artifacts_dir=run_dir / "ansible" / "lab_up",
                extravars=extravars,
                progress=progress,
                check=args.check,
            )
        else:
            print(
                f"lab up: cluster inventory {settings.inventory} - no local substrate",
                file=sys.stderr,
            )
        substrate_s = time.monotonic() - started
        result = run_playbook(
            "site",
            inventory=settings.inventory,
            artifacts_dir=run_dir / "ansible" / "site",
            extravars=extravars,
            progress=progress,
            check=args.check,
            limit=args.limit,
        )
    finally:
        progress.finish()
    total_s = time.monotonic() - started
    print(
        f"lab up: done in {total_s:.1f}s (substrate {substrate_s:.1f}s, "
        f"{result.changed_tasks} changed task results); artifacts in {run_dir}",
        file=sys.stderr,
    )
    if args.check:
        return EXIT_OK
    checks = lab_checks(LabState.load(settings))
    if whole and all(c.ok for c in checks):
        converged.record(settings, converged.fingerprint(settings, extravars), checks)
    return _print_checks(checks)


def _converged(settings: LabSettings, extravars: dict[str, str]) -> tuple[list[Check] | None, str]:
    """(the status checks, when the last converge) when the lab is up and converging would
    change nothing, else (None, why the playbooks run)."""
    try:
        checks = lab_checks(LabState.load(settings))
    except ChaosRunnerError as exc:
        return None, f"the lab is not up ({exc})"
    fingerprint = converged.fingerprint(settings, extravars)
    done, why = converged.unchanged(settings, fingerprint, checks)
    return (checks if done else None), why


def cmd_lab_down(args: argparse.Namespace) -> int:
    settings = LabSettings.from_env(args.state_dir, args.inventory)
    if not load_inventory(settings.inventory).embedded():
        raise ConfigError(
            f"{settings.inventory} is not an embedded-lab inventory: `lab down` only removes the "
            "local lab of guests (cluster hosts are never torn down by this tool)"
        )
    converged.forget(settings)
    run_dir = _run_dir(args, "lab-down")
    progress = Progress(quiet=args.quiet)
    try:
        run_playbook(
            "lab_down",
            inventory=settings.inventory,
            artifacts_dir=run_dir / "ansible" / "lab_down",
            extravars={"lab_state_dir": str(settings.state_dir), "lab_down_purge": args.purge},
            progress=progress,
        )
    finally:
        progress.finish()
    print("lab down: every lab guest and the bridge are gone", file=sys.stderr)
    return EXIT_OK


def _print_status(settings: LabSettings) -> int:
    return _print_checks(lab_checks(LabState.load(settings)))


def _print_checks(checks: list[Check]) -> int:
    rows = [(c.host, c.item, "ok" if c.ok else "FAIL", c.detail) for c in checks]
    print(tabulate(rows, headers=["host", "check", "state", "detail"], tablefmt="simple"))
    failed = [c for c in checks if not c.ok]
    if failed:
        print(
            f"\nlab status: {len(failed)} check(s) failed"
            " - `chaoslab lab up` repairs a half-up lab",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"\nlab status: all {len(checks)} checks ok", file=sys.stderr)
    return EXIT_OK


def cmd_lab_status(args: argparse.Namespace) -> int:
    return _print_status(LabSettings.from_env(args.state_dir, args.inventory))


def _fault_params(pairs: Sequence[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"-p/--param expects NAME=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _fault_client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from chaos_runner.faults.channel import FaultClient

    return FaultClient(LabState.load(LabSettings.from_env(args.state_dir, args.inventory)))


def cmd_fault(args: argparse.Namespace) -> int:
    from chaos_runner.faults.channel import FaultSpec

    with _fault_client(args) as client:
        if args.fault_verb == "inject":
            spec = FaultSpec(
                host=args.host,
                kind=args.kind,
                params=_fault_params(args.param),
                ttl_s=args.ttl,
                id=args.id,
            )
            result = client.inject(spec)
        elif args.fault_verb == "verify":
            result = client.verify(args.host, args.id)
            print(json.dumps(result, indent=2, sort_keys=True))
            return EXIT_OK if result.get("ok") else EXIT_DEVIATIONS
        elif args.fault_verb == "heal":
            result = client.heal(args.host, args.id)
        elif args.fault_verb == "list":
            hosts = [args.host] if args.host else sorted(client.state.hosts)
            rows = [
                (
                    h,
                    r["id"],
                    r["kind"],
                    r["mechanism"],
                    f"{max(0.0, r['expires_at'] - time.time()):.0f}s",
                )
                for h in hosts
                for r in client.list(h)
            ]
            print(tabulate(rows, headers=["host", "id", "kind", "mechanism", "expires in"]))
            return EXIT_OK
        else:
            hosts = [args.host] if args.host else sorted(client.state.hosts)
            result = {h: client.capabilities(h) for h in hosts}
    print(json.dumps(result, indent=2, sort_keys=True))
    return EXIT_OK


def cmd_fault_kinds(args: argparse.Namespace) -> int:
    from chaosfault.cli import kinds

    rows = [(kind, ", ".join(params) or "-") for kind, params in kinds().items()]
    print(tabulate(rows, headers=["kind", "parameters"]))
    return EXIT_OK


def cmd_heal(args: argparse.Namespace) -> int:
    from chaos_runner.faults.channel import artifacts_left

    settings = LabSettings.from_env(args.state_dir, args.inventory)
    if args.ansible:
        run_playbook(
            "heal_all",
            inventory=settings.inventory,
            artifacts_dir=_run_dir(args, "heal") / "ansible" / "heal_all",
            extravars={"lab_state_dir": str(settings.state_dir)},
            progress=Progress(),
        )
        print("heal: every lab host is clean (checked by the playbook)", file=sys.stderr)
        return EXIT_OK
    with _fault_client(args) as client:
        results = client.heal_all([args.host] if args.host else None)
    rows, dirty = [], 0
    for host, result in sorted(results.items()):
        left = artifacts_left(result["remaining"])
        dirty += bool(left)
        rows.append(
            (
                host,
                len(result["healed"]),
                "; ".join(result["swept"]) or "-",
                ", ".join(left) or "clean",
            )
        )
    print(tabulate(rows, headers=["host", "faults healed", "swept", "left"]))
    return EXIT_ERROR if dirty else EXIT_OK


def _catalog(args: argparse.Namespace, roles: HostRoles | None = None):  # type: ignore[no-untyped-def]
    from chaos_runner.model.config import load_config
    from chaos_runner.model.scenario import SCENARIO_DIR, Catalog

    config = load_config(args.config)
    directory = Path(args.scenarios or config.scenario_dir or SCENARIO_DIR)
    if roles is None:
        settings = LabSettings.from_env(args.state_dir, args.inventory)
        roles = load_inventory(settings.inventory).roles()
    return config, Catalog.load(directory, roles)


def cmd_list(args: argparse.Namespace) -> int:
    from chaos_runner.reports.catalog import catalog_markdown, outcomes_from_doc, outcomes_from_runs

    _, catalog = _catalog(args)
    chosen = catalog.select(args.select) if args.select else list(catalog.scenarios.values())
    if args.format == "md":
        outcomes = (
            outcomes_from_doc(Path(args.outcomes_from))
            if args.outcomes_from
            else outcomes_from_runs(Path(args.runs_dir))
        )
        sys.stdout.write(catalog_markdown(chosen, outcomes))
        return EXIT_OK
    rows = [
        (
            s.id,
            s.doc.phase,
            s.expect.class_,
            ", ".join(sorted({f"{f.kind} {f.host}" for f in s.all_faults()})) or "-",
            ", ".join(s.doc.suites) or "-",
            f"{s.bound_s:g}s",
            s.doc.skip or s.doc.description[:60],
        )
        for s in chosen
    ]
    print(tabulate(rows, headers=["id", "phase", "expect", "faults", "suites", "time", "about"]))
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from chaos_runner.model.scenario import load_file

    settings = LabSettings.from_env(args.state_dir, args.inventory)
    roles = load_inventory(settings.inventory).roles()
    config, catalog = _catalog(args, roles)
    for extra in args.files:
        for scenario in load_file(Path(extra), roles):
            catalog.scenarios.setdefault(scenario.id, scenario)
    print(
        f"{len(catalog.scenarios)} scenario(s) valid; config: environment={config.environment}, "
        f"attempts={config.attempts}, fault transport={config.fault_transport}"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from chaos_runner.run.campaign import dry_run, run_campaign

    settings = LabSettings.from_env(args.state_dir, args.inventory)
    config, catalog = _catalog(args)
    chosen = catalog.select(args.select)
    state = LabState.load(settings)
    bad = [c for c in lab_checks(state) if not c.ok]
    if bad:
        raise LabNotReady(
            "; ".join(f"{c.host} {c.item}: {c.detail}" for c in bad[:5])
            + f" (run `{state.up_command}`)"
        )
    if args.dry_run:
        return dry_run(chosen, state, Path(args.runs_dir), sys.stderr)
    code, _ = run_campaign(
        chosen, state, config, Path(args.runs_dir), args.seed, args.select, sys.argv
    )
    return code


def _existing_run(name: str, runs_dir: str) -> Path:
    """A run directory (or journal) by path, else by id under the runs directory."""
    where = Path(name)
    if not where.exists() and not where.is_absolute():
        where = Path(runs_dir) / name
    return where


def cmd_compare(args: argparse.Namespace) -> int:
    from chaos_runner.reports.compare import compare, regressions, table, write_html
    from chaos_runner.results.records import read_journal

    where_a = _existing_run(args.run_a, args.runs_dir)
    where_b = _existing_run(args.run_b, args.runs_dir)
    a, b = read_journal(where_a), read_journal(where_b)
    rows = compare(a, b, args.margin)
    print(table(rows))
    out_dir = where_b if where_b.is_dir() else where_b.parent
    page = write_html(out_dir / f"compare-{a.run_id}.html", a, b, rows, args.margin)
    found = regressions(rows)
    print(
        f"\n{len(found)} regression(s) of {b.run_id} against {a.run_id}; html: {page}",
        file=sys.stderr,
    )
    return 1 if found else 0


def cmd_trend(args: argparse.Namespace) -> int:
    from chaos_runner.reports.trend import journals, series, table, write_html

    runs_dir = Path(args.runs_dir)
    runs = journals(runs_dir, args.last)
    if not runs:
        print(f"chaoslab: no run journal under {runs_dir} (run a scenario first)", file=sys.stderr)
        return 2
    points = series(runs)
    print(table(points))
    page = write_html(runs_dir / "trend.html", runs, points)
    print(f"\n{len(runs)} run(s), {len(points)} scenario(s); html: {page}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from chaos_runner.reports.summary import exit_code, table, write_reports
    from chaos_runner.results.records import read_journal

    where = _existing_run(args.run, args.runs_dir)
    journal = read_journal(where)
    run_dir = where if where.is_dir() else where.parent
    written = write_reports(run_dir, journal)
    if args.format == "json":
        print(json.dumps(journal.to_dict()["scenarios"], indent=1, default=str))
    elif args.format == "html":
        if "html" not in written:
            print(f"chaoslab: report.html could not be written in {run_dir}", file=sys.stderr)
            return 2
        print(written["html"])
    else:
        print(table(journal))
        print(
            f"\nregenerated: {written['table']}, {written['junit']}, {written['scenarios']}/"
            + (f", {written['html']}" if "html" in written else " (report.html failed)"),
            file=sys.stderr,
        )
    return exit_code(journal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaoslab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--state-dir",
        default=_env("STATE_DIR"),
        help=(
            "controller lab state (env CHAOSLAB_STATE_DIR, else the inventory's lab_state_dir,"
            f" else {DEFAULT_STATE_DIR})"
        ),
    )
    parser.add_argument(
        "--inventory",
        default=_env("INVENTORY"),
        help="Ansible inventory (env CHAOSLAB_INVENTORY, default inventory/lab)",
    )
    parser.add_argument(
        "--runs-dir",
        default=_env("RUNS_DIR", str(REPO_ROOT / "runs")),
        help="where run artifacts go (env CHAOSLAB_RUNS_DIR, default ./runs)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=int(_env("VERBOSE", "0") or 0),
        help="more logging (env CHAOSLAB_VERBOSE)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    lab = verbs.add_parser("lab", help="bring the lab up, down, or report its status")
    lab_verbs = lab.add_subparsers(dest="lab_verb", required=True)
    up = lab_verbs.add_parser(
        "up", help="create/repair the lab and converge the stack (idempotent)"
    )
    up.add_argument(
        "-e",
        "--extra-var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Ansible extra variable (repeatable)",
    )
    up.add_argument(
        "--fraiseql-version",
        default=_env("FRAISEQL_VERSION"),
        help="FraiseQL line: 1.31.1 (default), 1.9.16 or 0.5.3 (env CHAOSLAB_FRAISEQL_VERSION)",
    )
    up.add_argument(
        "--limit", default=_env("LIMIT"), help="converge only these hosts (env CHAOSLAB_LIMIT)"
    )
    up.add_argument("--check", action="store_true", help="Ansible check mode: change nothing")
    up.add_argument(
        "--converge",
        action="store_true",
        help="run the playbooks even when the lab is up and its inputs are unchanged",
    )
    up.add_argument("-q", "--quiet", action="store_true", help="no per-task progress lines")
    up.set_defaults(func=cmd_lab_up)
    down = lab_verbs.add_parser("down", help="remove exactly what `lab up` created")
    down.add_argument("--purge", action="store_true", help="also delete keys, PKI and lab state")
    down.add_argument("-q", "--quiet", action="store_true", help="no per-task progress lines")
    down.set_defaults(func=cmd_lab_down)
    status = lab_verbs.add_parser("status", help="what is up and healthy")
    status.set_defaults(func=cmd_lab_status)

    def scenario_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--scenarios",
            default=_env("SCENARIOS"),
            help="scenario directory (env CHAOSLAB_SCENARIOS, default ./scenarios)",
        )
        sub.add_argument(
            "--config", default=_env("CONFIG"), help="runner config file (env CHAOSLAB_CONFIG)"
        )

    listing = verbs.add_parser("list", help="the scenario catalog (or a selection of it)")
    listing.add_argument("select", nargs="*", help="ids, suite:NAME or tag:NAME")
    listing.add_argument(
        "--format",
        choices=["table", "md"],
        default="table",
        help="md: the catalog as a Markdown document (docs/catalog.md), with each id's last "
        "outcome from the newest run under --runs-dir",
    )
    listing.add_argument(
        "--outcomes-from",
        metavar="FILE",
        help="md: take the last-outcome column from an earlier catalog document instead of "
        "the runs (keeps a regenerated document comparable without local runs)",
    )
    scenario_flags(listing)
    listing.set_defaults(func=cmd_list)
    validate = verbs.add_parser("validate", help="validate every scenario file and the config")
    validate.add_argument("files", nargs="*", help="extra scenario files to validate")
    scenario_flags(validate)
    validate.set_defaults(func=cmd_validate)
    run = verbs.add_parser("run", help="run scenarios by id, tag or suite")
    run.add_argument("select", nargs="+", help="ids, suite:NAME, tag:NAME or a bare suite/tag")
    run.add_argument(
        "--seed",
        type=int,
        default=int(_env("SEED", "1") or 1),
        help="seed of the operation mix (env CHAOSLAB_SEED)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        default=(_env("DRY_RUN", "") or "") not in ("", "0", "false"),
        help="Ansible check mode for every fault; nothing injected (env CHAOSLAB_DRY_RUN)",
    )
    scenario_flags(run)
    run.set_defaults(func=cmd_run)
    report = verbs.add_parser("report", help="regenerate a run's reports from its journal")
    report.add_argument("run", help="run id (under --runs-dir), run directory or journal.json")
    report.add_argument(
        "--format",
        choices=["table", "json", "html"],
        default=_env("REPORT_FORMAT", "table"),
        help="what to print (every format is written to the run directory): the table, the"
        " scenarios as JSON, or the path of report.html",
    )
    report.set_defaults(func=cmd_report)

    comparing = verbs.add_parser(
        "compare",
        help="compare two runs scenario by scenario; exit 1 when B regresses against A",
    )
    comparing.add_argument("run_a", help="the reference run (id under --runs-dir, or a path)")
    comparing.add_argument("run_b", help="the run judged against it")
    comparing.add_argument(
        "--margin",
        type=float,
        default=0.2,
        help="relative margin beyond A's 95 %% confidence interval before B counts as a"
        " regression (default 0.2; each metric also has an absolute floor)",
    )
    comparing.set_defaults(func=cmd_compare)

    trending = verbs.add_parser(
        "trend", help="each scenario's outcome and metrics across the runs directory's runs"
    )
    trending.add_argument("--last", type=int, help="only the last N runs")
    trending.set_defaults(func=cmd_trend)

    fault = verbs.add_parser("fault", help="inject, verify or heal one fault (fast path)")
    fault_verbs = fault.add_subparsers(dest="fault_verb", required=True)
    inject = fault_verbs.add_parser(
        "inject", help="inject a fault; the host reverts it after --ttl"
    )
    inject.add_argument("host", help="lab host (its inventory name)")
    inject.add_argument("kind", help="fault kind, e.g. net.delay (see `chaoslab fault kinds`)")
    inject.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fault parameter; VALUE is JSON when it parses (repeatable)",
    )
    inject.add_argument(
        "--ttl",
        type=float,
        default=float(_env("FAULT_TTL", "60") or 60),
        help="seconds until the host heals it by itself (env CHAOSLAB_FAULT_TTL)",
    )
    inject.add_argument("--id", help="fault id (default generated)")
    for name in ("verify", "heal"):
        sub = fault_verbs.add_parser(name, help=f"{name} one fault")
        sub.add_argument("host")
        sub.add_argument("id")
    for name in ("list", "capabilities"):
        sub = fault_verbs.add_parser(name, help=f"{name} of one or every lab host")
        sub.add_argument("host", nargs="?")
    kinds = fault_verbs.add_parser("kinds", help="every fault kind and its parameters")
    kinds.set_defaults(func=cmd_fault_kinds)
    fault.set_defaults(func=cmd_fault)

    heal = verbs.add_parser("heal", help="heal every fault and sweep every lab fault artifact")
    heal.add_argument("host", nargs="?", help="only this host (default every lab host)")
    heal.add_argument(
        "--ansible", action="store_true", help="use playbooks/heal_all.yml instead of the fast path"
    )
    heal.set_defaults(func=cmd_heal)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors already
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except LabNotReady as exc:
        print(f"chaoslab: lab not ready: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ChaosRunnerError as exc:
        print(f"chaoslab: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("chaoslab: interrupted (every injected fault was healed)", file=sys.stderr)
        return EXIT_ERROR
    except BaseException as exc:
        from chaos_runner.run.campaign import Terminated

        if isinstance(exc, Terminated):
            print("chaoslab: terminated (every injected fault was healed)", file=sys.stderr)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
