"""PostgreSQL faults: SQL through the host's socket; sessions named `chaoslab:<id>` and an
unprivileged `chaoslab_filler` role, so reserved superuser slots stay free for healing."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.fault import GRACE_S, Artifact, Family, Fault, Record
from chaosfault.kinds.proc import Kill
from chaosfault.processes import is_our_process, kill
from chaosfault.validation import _choice, _number

if TYPE_CHECKING:
    from chaosfault.agent import Agent

PG_SETTINGS = (
    "statement_timeout",
    "work_mem",
    "temp_file_limit",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
)
IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?")


def _ident(params: dict[str, Any], key: str, default: str | None = None) -> str:
    value = params.get(key, default)
    if not isinstance(value, str) or not IDENT.fullmatch(value):
        raise FaultInputError(f"params.{key}: {value!r} is not a plain SQL name")
    return value


class PgTerminate(Fault):
    """pg_terminate_backend on the app's backends, once or every interval_ms until healed."""

    params = ("which", "user", "interval_ms")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        out = {
            "which": _choice(params, "which", ("all", "active"), "all"),
            "user": _ident(params, "user", "fraiseql"),
        }
        if params.get("interval_ms") is not None:
            out["interval_ms"] = _number(params, "interval_ms", 50, 600_000, integer=True)
        return out

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def _sql(self, p: dict[str, Any]) -> str:
        active = " AND state = 'active'" if p["which"] == "active" else ""
        return (
            f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE usename = '{p['user']}' AND pid <> pg_backend_pid(){active}"
        )

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        record["artifacts"]["terminated_first"] = int(agent.psql(self._sql(p)) or 0)
        if "interval_ms" in p:
            loop_pid = agent.spawn("repeat", record["id"], str(p["interval_ms"]), self._sql(p))
            record["artifacts"]["loop_pid"] = loop_pid

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        pid = record["artifacts"].get("loop_pid")
        looping = bool(pid) and is_our_process(pid, "repeat", record["id"])
        first = record["artifacts"].get("terminated_first", 0)
        ok = looping if pid else True
        return ok, f"terminated {first} backend(s) at inject; repeating={looping}"

    def heal(self, agent: Agent, record: Record) -> None:
        pid = record["artifacts"].get("loop_pid")
        if pid and is_our_process(pid, "repeat", record["id"]):
            kill(pid, signal.SIGKILL)


class PgLock(Fault):
    params = ("table", "mode")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        mode = _choice(
            params,
            "mode",
            ("ACCESS EXCLUSIVE", "EXCLUSIVE", "SHARE ROW EXCLUSIVE", "SHARE"),
            "ACCESS EXCLUSIVE",
        )
        return {"table": _ident(params, "table", "core.tb_post"), "mode": mode}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        label = record["id"]
        agent.psql_background(
            f"BEGIN; LOCK TABLE {p['table']} IN {p['mode']} MODE;"
            f" SELECT pg_sleep({record['ttl_s'] + GRACE_S}); COMMIT;",
            label,
        )
        for _ in range(100):
            if self._holder(agent, record):
                return
            time.sleep(0.05)
        raise FaultFailed(f"the lock on {p['table']} was not taken within 5 s")

    def _holder(self, agent: Agent, record: Record) -> str:
        return agent.psql(
            "SELECT string_agg(l.pid::text, ',') FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid "
            f"WHERE a.application_name = 'chaoslab:{record['id']}' AND l.granted "
            f"AND l.relation = '{record['params']['table']}'::regclass"
        )

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        holder = self._holder(agent, record)
        waiting = agent.psql(
            "SELECT count(*) FROM pg_locks WHERE NOT granted "
            f"AND relation = '{record['params']['table']}'::regclass"
        )
        return bool(
            holder
        ), f"held by backend {holder or '-'}; {waiting} waiting lock request(s) in pg_locks"

    def heal(self, agent: Agent, record: Record) -> None:
        agent.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'chaoslab:{record['id']}'",
            check=False,
        )


class PgFillConnections(Fault):
    """Every ordinary connection slot held by idle sessions of an unprivileged role; a
    keeper process tops them up when other sessions leave. Superuser-reserved slots stay
    free (the agent heals through them)."""

    params = ("leave",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"leave": _number(params, "leave", 0, 1000, default=0, integer=True)}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: Record) -> None:
        keeper_pid = agent.spawn(
            "fill", record["id"], str(record["params"]["leave"]), str(record["ttl_s"] + GRACE_S)
        )
        record["artifacts"]["keeper_pid"] = keeper_pid
        agent.save(record)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if free_slots(agent) <= record["params"]["leave"]:
                return
            time.sleep(0.05)
        raise FaultFailed("the connection slots were not all taken within 15 s")

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        held = int(
            agent.psql(
                "SELECT count(*) FROM pg_stat_activity"
                f" WHERE application_name = 'chaoslab:{record['id']}'"
            )
        )
        free = free_slots(agent)
        return free <= record["params"][
            "leave"
        ], f"{held} lab sessions hold slots, {free} ordinary slot(s) free"

    def heal(self, agent: Agent, record: Record) -> None:
        pid = record["artifacts"].get("keeper_pid")
        if pid and is_our_process(pid, "fill", record["id"]):
            kill(pid, signal.SIGKILL)
        agent.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = 'chaoslab:{record['id']}'",
            check=False,
        )


def free_slots(agent: Agent) -> int:
    return int(
        agent.psql(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())"
        )
    )


def fill(agent: Agent, fault_id: str, leave: int, hold_s: float) -> None:
    """Keep every ordinary slot (but `leave`) taken until the fault is healed or expires."""
    while agent.load(fault_id) is not None:
        missing = free_slots(agent) - leave
        for _ in range(max(0, missing)):
            agent.psql_background(f"SELECT pg_sleep({hold_s})", fault_id, role="chaoslab_filler")
        time.sleep(0.2)


def repeat(agent: Agent, fault_id: str, interval_ms: int, sql: str) -> None:
    while agent.load(fault_id) is not None:
        agent.psql(sql, check=False)
        time.sleep(interval_ms / 1000.0)


class PgSetting(Fault):
    params = ("name", "value")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _choice(params, "name", PG_SETTINGS, "statement_timeout")
        value = params.get("value")
        if not isinstance(value, (str, int)) or not re.fullmatch(
            r"-?[0-9]+\s*[a-zA-Z]*", str(value)
        ):
            raise FaultInputError(
                f"params.value: {value!r} is not a PostgreSQL setting value like '50ms', '64kB'"
            )
        return {"name": name, "value": str(value)}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        agent.psql(f"ALTER SYSTEM SET {p['name']} = '{p['value']}'")
        agent.psql("SELECT pg_reload_conf()")

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        p = record["params"]
        for _ in range(20):
            row = agent.psql(
                f"SELECT setting, unit, source FROM pg_settings WHERE name = '{p['name']}'"
            )
            if "configuration file" in row:
                return True, f"{p['name']} = {row}"
            time.sleep(0.05)
        return False, f"{p['name']} = {row}"

    def heal(self, agent: Agent, record: Record) -> None:
        agent.psql(f"ALTER SYSTEM RESET {record['params']['name']}", check=False)
        agent.psql("SELECT pg_reload_conf()", check=False)


class PgRevoke(Fault):
    params = ("privilege", "object", "role")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "privilege": _choice(
                params, "privilege", ("SELECT", "INSERT", "UPDATE", "EXECUTE"), "SELECT"
            ),
            "object": _ident(params, "object", "public.v_post"),
            "role": _ident(params, "role", "fraiseql"),
        }

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def _on(self, p: dict[str, Any]) -> str:
        return f"FUNCTION {p['object']}" if p["privilege"] == "EXECUTE" else str(p["object"])

    def inject(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        agent.psql(f"REVOKE {p['privilege']} ON {self._on(p)} FROM {p['role']}")

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        p = record["params"]
        fn = "has_function_privilege" if p["privilege"] == "EXECUTE" else "has_table_privilege"
        has = agent.psql(f"SELECT {fn}('{p['role']}', '{p['object']}', '{p['privilege']}')")
        return has == "f", f"{fn}({p['role']}, {p['object']}, {p['privilege']}) = {has}"

    def heal(self, agent: Agent, record: Record) -> None:
        p = record["params"]
        agent.psql(f"GRANT {p['privilege']} ON {self._on(p)} TO {p['role']}", check=False)


class PgDropIndex(Fault):
    params = ("index",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"index": _ident(params, "index", "core.tb_post_author_idx")}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "postgresql"

    def inject(self, agent: Agent, record: Record) -> None:
        index = record["params"]["index"]
        definition = agent.psql(f"SELECT pg_get_indexdef('{index}'::regclass)")
        record["artifacts"]["definition"] = definition
        agent.save(record)  # the definition must survive a crash before heal
        agent.psql(f"DROP INDEX {index}")

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        gone = agent.psql(f"SELECT to_regclass('{record['params']['index']}') IS NULL")
        return gone == "t", f"index {record['params']['index']} absent={gone}"

    def heal(self, agent: Agent, record: Record) -> None:
        definition = record["artifacts"].get("definition")
        if (
            definition
            and agent.psql(f"SELECT to_regclass('{record['params']['index']}') IS NULL") == "t"
        ):
            agent.psql(definition)


class PgCrash(Kill):
    """SIGKILL the postmaster; the service layer restarts it and crash recovery runs."""

    params = ()

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    def target(self, agent: Agent, record: Record) -> int:
        pg = agent.config["postgresql"]
        return int(Path(pg["data_dir"], "postmaster.pid").read_text().split()[0])

    def program(self, record: Record) -> str:
        return "postgresql"


# ----------------------------------------------------------------- artifacts


def _has_postgresql(agent: Agent) -> bool:
    return bool(agent.config.get("postgresql"))


def _forced_settings(agent: Agent) -> str:
    return agent.psql(
        "SELECT string_agg(name, ',') FROM pg_settings WHERE source = 'configuration file' "
        "AND sourcefile LIKE '%postgresql.auto.conf' "
        f"AND name IN ({', '.join(repr(s) for s in PG_SETTINGS)})"
    ).replace('"', "")


def _lab_sessions(agent: Agent) -> int:
    return int(
        agent.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'chaoslab:%'")
    )


def _reset_settings_and_sessions(agent: Agent) -> list[str]:
    try:
        for name in PG_SETTINGS:
            agent.psql(f"ALTER SYSTEM RESET {name}")
        agent.psql("SELECT pg_reload_conf()")
        n = agent.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name LIKE 'chaoslab:%'"
        )
        return [f"reset PostgreSQL settings, ended {n} lab session(s)"]
    except FaultFailed as exc:
        return [f"PostgreSQL not reachable for sweep: {exc}"]


def _fill(agent: Agent, args: list[str]) -> None:
    fill(agent, args[0], int(args[1]), float(args[2]))


def _repeat(agent: Agent, args: list[str]) -> None:
    repeat(agent, args[0], int(args[1]), args[2])


FAMILY = Family(
    name="pg",
    faults={
        "pg.terminate": PgTerminate(),
        "pg.lock": PgLock(),
        "pg.fill_connections": PgFillConnections(),
        "pg.setting": PgSetting(),
        "pg.revoke": PgRevoke(),
        "pg.drop_index": PgDropIndex(),
        "pg.crash": PgCrash(),
    },
    artifacts=(
        # One sweep resets the settings and ends the lab's sessions together.
        Artifact(
            "pg_settings",
            _forced_settings,
            _reset_settings_and_sessions,
            _has_postgresql,
            error_key="pg_error",
        ),
        Artifact("pg_sessions", _lab_sessions, None, _has_postgresql, error_key="pg_error"),
    ),
    workers={"fill": _fill, "repeat": _repeat},
)
