"""PostgreSQL as the ground truth for writes: which ledger op ids exist, counter values.

The runner connects to the database host directly (not through the proxy the app uses),
as the lab's admin role, so a fault on the app's path does not blind the checker.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from chaos_runner.errors import LabNotReady
from chaos_runner.target.lab import LabState


@dataclass(frozen=True)
class LedgerStore:
    address: str
    port: int = 5432
    dbname: str = "fraiseql_demo"
    user: str = "chaos_admin"
    password: str = "chaos-lab-admin"

    @classmethod
    def for_lab(cls, state: LabState, db_host: str = "db1") -> LedgerStore:
        if db_host not in state.hosts:
            raise LabNotReady(f"no database host {db_host!r} in the lab")
        return cls(
            address=state.guard.check(state.hosts[db_host]["address"]),
            user=os.environ.get("CHAOSLAB_DB_ADMIN_USER", "chaos_admin"),
            password=os.environ.get("CHAOSLAB_DB_ADMIN_PASSWORD", "chaos-lab-admin"),
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

    def ping(self) -> bool:
        try:
            with self._connect(timeout_s=2) as conn:
                conn.execute("SELECT 1")
            return True
        except LabNotReady:
            return False
