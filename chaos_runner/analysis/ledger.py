"""PostgreSQL as the ground truth for writes: which ledger op ids exist, counter values,
and the accounts and committed transfers of an isolation experiment's group.

The runner connects to the database host directly (not through the proxy the app uses),
as the lab's admin role, so a fault on the app's path does not blind the checker.
"""

from __future__ import annotations

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

    def _connect(self, timeout_s: int = 5) -> psycopg.Connection[tuple[object, ...]]:
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
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT op_id FROM core.tb_ledger WHERE op_id = ANY(%s)", (ids,)
            ).fetchall()
        return {str(r[0]) for r in rows}

    def counter(self, name: str) -> int:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT value FROM core.tb_counter WHERE name = %s", (name,)
            ).fetchone()
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def accounts(self, group: str) -> GroupRows:
        """The group's accounts and committed transfers (one REPEATABLE READ snapshot)."""
        with self._connect() as conn:
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
        with self._connect() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE query ~ %s AND query NOT LIKE %s",
                # The name as a whole word (v_post, "v_post"; not v_posts or v_post_x).
                (rf"(^|[^a-z0-9_]){re.escape(relation)}([^a-z0-9_]|$)", "%pg_stat_statements%"),
            ).fetchone()
        return int(row[0]) if row else 0  # type: ignore[call-overload]

    def ping(self) -> bool:
        try:
            with self._connect(timeout_s=2) as conn:
                conn.execute("SELECT 1")
            return True
        except LabNotReady:
            return False
