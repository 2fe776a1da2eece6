"""PostgreSQL as the ground truth for writes: which ledger op ids exist, counter values,
and the accounts and committed transfers of an isolation experiment's group.

The runner connects to the database host directly (not through the proxy the app uses),
as the lab's admin role, so a fault on the app's path does not blind the checker.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from chaos_runner.analysis.invariants import Account, Transfer
from chaos_runner.errors import LabNotReady
from chaos_runner.target.lab import LabState


@dataclass(frozen=True)
class GroupRows:
    """PostgreSQL's rows of one account group (core.tb_account, core.tb_transfer), read in
    one snapshot so a transfer committing meanwhile cannot tear them apart."""

    group: str
    accounts: tuple[Account, ...] = ()
    transfers: tuple[Transfer, ...] = ()
    # op ids of the committed transfers (the driver's `<op prefix>-<index>`)
    transfer_ops: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LedgerStore:
    address: str
    port: int = 5432
    dbname: str = "fraiseql_demo"
    user: str = "chaos_admin"
    password: str = ""

    @classmethod
    def for_lab(cls, state: LabState, db_host: str = "@db") -> LedgerStore:
        db_host = state.host(db_host)
        if db_host not in state.hosts:
            raise LabNotReady(f"no database host {db_host!r} in the lab")
        return cls(
            address=state.guard.check(state.hosts[db_host]["address"]),
            user=os.environ.get("CHAOSLAB_DB_ADMIN_USER", "chaos_admin"),
            password=os.environ.get("CHAOSLAB_DB_ADMIN_PASSWORD")
            or state.settings.secret("postgresql_chaos_password"),
        )

    def connect(self, timeout_s: int = 5) -> psycopg.Connection[tuple[object, ...]]:
        try:
            return psycopg.connect(
                host=self.address,
                port=self.port,
                dbname=self.dbname,
                user=self.user,
                password=self.password,
                connect_timeout=timeout_s,
                autocommit=True,
                application_name="chaos-runner-checker",
            )
        except psycopg.OperationalError as exc:
            raise LabNotReady(f"cannot reach PostgreSQL on {self.address}: {exc}") from exc

    def present(self, op_ids: Iterable[str]) -> set[str]:
        ids = sorted(set(op_ids))
        if not ids:
            return set()
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT op_id FROM core.tb_ledger WHERE op_id = ANY(%s)", (ids,)
            ).fetchall()
        return {str(r[0]) for r in rows}

    def counter(self, name: str) -> int:
        with self.connect() as conn:
            row = conn.execute(
                "SELECT value FROM core.tb_counter WHERE name = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def accounts(self, group: str) -> GroupRows:
        """The group's accounts and committed transfers (one REPEATABLE READ snapshot)."""
        with self.connect() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                accounts = conn.execute(
                    "SELECT name, balance, initial FROM core.tb_account WHERE grp = %s", (group,)
                ).fetchall()
                transfers = conn.execute(
                    "SELECT op_id, from_name, to_name, amount FROM core.tb_transfer WHERE grp = %s",
                    (group,),
                ).fetchall()
        return GroupRows(
            group,
            tuple(Account(str(n), int(b), int(i)) for n, b, i in accounts),  # type: ignore[call-overload]
            tuple(
                Transfer(str(f), None if t is None else str(t), int(a))  # type: ignore[call-overload]
                for _, f, t, a in transfers
            ),
            frozenset(str(r[0]) for r in transfers),
        )

    def statement_calls(self, relation: str) -> int:
        """How many statements naming `relation` PostgreSQL has run (pg_stat_statements,
        every user and database since its last reset): a delta counts the queries that
        reached the database."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query ~ %s AND query NOT LIKE %s",
                # The name as a whole word (v_post, "v_post"; not v_posts or v_post_x).
                (rf"(^|[^a-z0-9_]){re.escape(relation)}([^a-z0-9_]|$)", "%pg_stat_statements%"),
            ).fetchone()
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def ping(self) -> bool:
        try:
            with self.connect(timeout_s=2) as conn:
                conn.execute("SELECT 1")
            return True
        except LabNotReady:
            return False

    def activity(self, conn: psycopg.Connection[tuple[object, ...]]) -> DbActivity:
        """One look at the app database's load: its backends (active, waiting on a lock,
        the longest lock wait so far) and its transaction and tuple counters."""
        row = conn.execute(ACTIVITY_SQL).fetchone()
        assert row is not None
        waiters, active, backends, wait_s, xacts, tuples = row
        return DbActivity(
            lock_waiters=int(waiters),  # type: ignore[call-overload]
            active=int(active),  # type: ignore[call-overload]
            backends=int(backends),  # type: ignore[call-overload]
            lock_wait_s=float(wait_s),  # type: ignore[arg-type]
            xacts=int(xacts),  # type: ignore[call-overload]
            tuples=int(tuples),  # type: ignore[call-overload]
        )

    def connect_for_sampling(self) -> psycopg.Connection[tuple[object, ...]]:
        """A short-timeout connection for the activity sampler (its own; it may be lost)."""
        conn = self.connect(timeout_s=2)
        conn.execute("SET statement_timeout = '1s'")
        return conn


# pg_stat_activity of the app database (not this session), and its pg_stat_database
# counters: committed and rolled-back transactions, tuples returned and fetched.
ACTIVITY_SQL = """
SELECT count(*) FILTER (WHERE a.wait_event_type = 'Lock'),
       count(*) FILTER (WHERE a.state = 'active'),
       count(*),
       coalesce(extract(epoch FROM max(now() - a.query_start)
                FILTER (WHERE a.wait_event_type = 'Lock')), 0),
       (SELECT xact_commit + xact_rollback FROM pg_stat_database d
         WHERE d.datname = current_database()),
       (SELECT tup_returned + tup_fetched FROM pg_stat_database d
         WHERE d.datname = current_database())
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
"""


@dataclass(frozen=True)
class DbActivity:
    lock_waiters: int
    active: int
    backends: int
    lock_wait_s: float
    xacts: int
    tuples: int


class ActivityProbe:
    """The activity sampler's probe: one connection, opened on first use and again after
    a failure (PostgreSQL stopped or unreachable), closed by close()."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def __call__(self) -> DbActivity:
        try:
            if self._conn is None:
                self._conn = self.store.connect_for_sampling()
            return self.store.activity(self._conn)
        except (psycopg.Error, LabNotReady):
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                conn.close()
