"""FraiseQL demo app for the chaos lab - one file for every supported line.

Views with JSONB data (v_author, v_post with a nested author, v_ledger, v_counter, v_item)
and PL/pgSQL mutations. The lines differ in the mutation API:
  1.x:   functions in schema `app` return app.mutation_response (8 columns); failures are
         @fraiseql.error types with an integer `code`;
  0.5.x: functions in schema `app_v05` return app_v05.mutation_result (6 columns); failures
         are @fraiseql.failure types, which carry the status string;
and in two details of 1.20+ (1.31.1): `find_one` takes equality filters only as
`mandatory_filters={column: value}` (bare keywords are a TypeError), and in production
FraiseQL answers every error whose cause is a psycopg error as "Internal server error".
The demo's own database work (the isolation transactions, slowQuery) surfaces PostgreSQL's
message and SQLSTATE as a GraphQL error (`_surfaced`), as an app that must tell a
rolled-back write (40001, 40P01) from an unknown one has to; FraiseQL's own reads and
mutations are left to FraiseQL, masked or not.
Every setting comes from the environment the service layer passes (see the fraiseql role).

Operations for the load driver besides lists, nested reads, the ledger and the counter:
  items(limit)            thousands of rows (v_item) for large results; never cached, so
                          every read crosses the database path;
  slowQuery(seconds)      core.slow_query through FraiseQL's own execute_function, which
                          sets its query timeout as `SET LOCAL statement_timeout` first
                          (the timeout's error surfaced, see above);
  transfer(input)         moves money between accounts (core.transfer via the line's
                          mutation flavour, app.transfer or app_v05.transfer) at an
                          isolation level the client chooses;
  accountSnapshot(group)  the accounts of a group read twice in one transaction at a
                          chosen level (invariants, non-repeatable reads, phantoms).
/health is FraiseQL's on both lines; /ready is FraiseQL's on 1.x (pool connection +
SELECT 1 + schema loaded, 503 otherwise). 0.5.3 has no readiness endpoint and the demo
app does not invent one: a probe written here would measure this file, not FraiseQL.

How the isolation level is chosen. FraiseQL runs a class-based mutation as
`SELECT * FROM fn(input)` in the pool connection's implicit transaction (with no statement
timeout, on every line); it offers no isolation setting. Inside the function it is
too late: `SET TRANSACTION ISOLATION LEVEL` (or `SET LOCAL transaction_isolation`) fails
with "must be called before any query" once the calling SELECT has taken its snapshot,
and `SET LOCAL default_transaction_isolation` only affects later transactions. A level
on the connection (`default_transaction_isolation` in DATABASE_URL options or on the
role) would apply to every request of the app and need a restart to change. So the
transfer and snapshot resolvers take a connection from FraiseQL's own pool
(`info.context["db"].get_pool()`, both lines), begin a transaction whose first statement
is `SET TRANSACTION ISOLATION LEVEL <level>`, apply FraiseQL's query timeout the way its
execute_function does (`SET LOCAL statement_timeout`), then call the same PL/pgSQL
function the mutation flavours wrap. FraiseQL's `run_in_transaction` would be the natural
API, but on 1.9.16 it cannot do this: the pool's `check` callback runs `SELECT 1` on
checkout and hands the connection over still inside that transaction, so
`conn.transaction()` becomes a savepoint and SET TRANSACTION fails ("must be called
before any query"); the resolvers roll that transaction back first. PostgreSQL's own
`current_setting('transaction_isolation')`, returned in every answer, proves the level
that was in effect. Errors (e.g. SQLSTATE 40001 "could not serialize access", 40P01
"deadlock detected") are raised as they are: FraiseQL reports them, the transaction is
rolled back.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import fraiseql
from fraiseql.fastapi import FraiseQLConfig, create_fraiseql_app

ENV = os.environ
VERSION = tuple(int(part) for part in fraiseql.__version__.split(".")[:2])
LINE_1X = VERSION >= (1, 0)
MUTATION_SCHEMA = "app" if LINE_1X else "app_v05"
failure_type = fraiseql.error if LINE_1X else fraiseql.failure


def _eq(column: str, value: Any) -> dict[str, Any]:
    """An equality filter for `find_one`: 1.20 made bare keyword filters a TypeError and
    added `mandatory_filters`, which earlier lines would take for a column name."""
    return {"mandatory_filters": {column: value}} if VERSION >= (1, 20) else {column: value}


async def _surfaced(work: Awaitable[Any]) -> Any:
    """Await `work`; a PostgreSQL error comes back as a GraphQL error with PostgreSQL's
    message and its SQLSTATE (extensions.sqlstate) - on every line the text FraiseQL
    itself gave before 1.31's production masking. Raised after the except block: raised
    inside it, the psycopg error would stay the new error's __context__, which the masking
    follows."""
    import psycopg
    from graphql import GraphQLError

    try:
        return await work
    except psycopg.Error as exc:
        message, sqlstate = str(exc).strip() or type(exc).__name__, exc.sqlstate
    raise GraphQLError(message, extensions={"code": "DATABASE_ERROR", "sqlstate": sqlstate})


@fraiseql.type(sql_source="v_author")
class Author:
    id: UUID
    name: str
    email: str
    bio: fraiseql.JSON | None
    post_count: int
    created_at: datetime


@fraiseql.type
class AuthorRef:
    id: UUID
    name: str
    email: str


@fraiseql.type(sql_source="v_post")
class Post:
    id: UUID
    title: str
    body: str
    tags: list[str]
    published: bool
    created_at: datetime
    author: AuthorRef


@fraiseql.type(sql_source="v_ledger")
class LedgerEntry:
    id: UUID
    op_id: str
    client: str
    amount: int
    note: str
    created_at: datetime


@fraiseql.type(sql_source="v_counter")
class Counter:
    id: UUID
    name: str
    value: int
    updated_at: datetime


@fraiseql.type(sql_source="v_item")
class Item:
    id: UUID
    n: int
    name: str
    payload: str


@fraiseql.type(sql_source="v_note")
class Note:
    id: UUID
    title: str
    version: int


@fraiseql.type
class NoteResult:
    status: str
    message: str
    version: int | None = None


@fraiseql.type
class SlowResult:
    seconds: float
    slept_ms: float
    backend_pid: int


@fraiseql.type
class TransferResult:
    status: str
    message: str
    op_id: str | None = None
    isolation: str | None = None
    from_balance: int | None = None
    to_balance: int | None = None


@fraiseql.type
class AccountSnapshot:
    """Two reads of one group in one transaction; `*_again` is the second read."""

    group: str
    isolation: str
    accounts: int
    total: int
    initial_total: int
    withdrawn: int
    min_balance: int | None
    transfers: int
    total_again: int
    initial_total_again: int
    withdrawn_again: int
    transfers_again: int


_RESULT_CACHE = None


def _cached(info):
    """The request's repository behind FraiseQL's result cache when one is configured
    (FRAISEQL_CACHE=redis on 0.5.x; =postgresql for FraiseQL's UNLOGGED-table cache)."""
    global _RESULT_CACHE
    db = info.context["db"]
    backend = ENV.get("FRAISEQL_CACHE", "none")
    if backend == "none":
        return db
    from fraiseql.caching.repository_integration import CachedRepository
    from fraiseql.caching.result_cache import CacheConfig, ResultCache

    if _RESULT_CACHE is None:
        config = CacheConfig(default_ttl=int(ENV.get("FRAISEQL_CACHE_TTL", "60")))
        if backend == "postgresql":
            from fraiseql.caching.postgres_cache import PostgresCache

            store = PostgresCache(db._pool)
        else:
            import redis.asyncio
            from fraiseql.caching.redis_cache import RedisCache

            store = RedisCache(redis.asyncio.Redis.from_url(ENV["FRAISEQL_REDIS_URL"]))
        _RESULT_CACHE = ResultCache(store, config)
    return CachedRepository(db, _RESULT_CACHE)


@fraiseql.query
async def authors(info, limit: int = 10) -> list[Author]:
    return await _cached(info).find("v_author", limit=limit)


@fraiseql.query
async def posts(info, limit: int = 10) -> list[Post]:
    return await _cached(info).find("v_post", limit=limit)


@fraiseql.query
async def post(info, id: UUID) -> Post | None:
    return await info.context["db"].find_one("v_post", **_eq("id", id))


@fraiseql.query
async def note(info, id: UUID) -> Note | None:
    # Through the result cache (when one is configured), like the list queries.
    return await _cached(info).find_one("v_note", **_eq("id", id))


@fraiseql.input
class UpdateNoteInput:
    id: UUID
    title: str


@fraiseql.mutation
async def update_note(info, input: UpdateNoteInput) -> NoteResult:
    # What an app using FraiseQL's result cache does: the mutation runs through the
    # cached repository, whose execute_function invalidates what it derives from the
    # function's name (`update_note` -> note).
    args = input if isinstance(input, dict) else {"id": input.id, "title": input.title}
    row = await _cached(info).execute_function(
        f"{MUTATION_SCHEMA}.update_note", {"id": str(args["id"]), "title": args["title"]}
    )
    entity = (row.get("entity") if LINE_1X else row.get("object_data")) or {}
    return NoteResult(
        status=row.get("status") or "unknown",
        message=row.get("message") or "",
        version=entity.get("version"),
    )


@fraiseql.query
async def ledger_entry(info, op_id: str) -> LedgerEntry | None:
    return await info.context["db"].find_one("v_ledger", **_eq("op_id", op_id))


@fraiseql.query
async def counter(info, name: str = "default") -> Counter | None:
    return await info.context["db"].find_one("v_counter", **_eq("name", name))


@fraiseql.query
async def items(info, limit: int = 100) -> list[Item]:
    # Never through the result cache: a large read must cross the database path each time.
    return await info.context["db"].find("v_item", limit=limit)


@fraiseql.query
async def slow_query(info, seconds: float = 1.0) -> SlowResult:
    db = info.context["db"]
    row = await _surfaced(db.execute_function("core.slow_query", {"seconds": seconds}))
    return SlowResult(
        seconds=row["seconds"], slept_ms=row["slept_ms"], backend_pid=row["backend_pid"]
    )


ISOLATION_LEVELS = {
    "read_uncommitted": "READ UNCOMMITTED",
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}


async def _at_isolation(
    info, isolation: str, work: Callable[[Any], Awaitable[Any]], read_only: bool = False
) -> Any:
    """Run `work(conn)` in a transaction of FraiseQL's pool at `isolation` (see the module
    docstring for why this is the place)."""
    from graphql import GraphQLError

    level = ISOLATION_LEVELS.get(isolation)
    if level is None:
        raise GraphQLError(
            f"isolation must be one of {', '.join(ISOLATION_LEVELS)}, got {isolation!r}"
        )
    db = info.context["db"]
    return await _surfaced(_transaction(db, level, work, read_only))


async def _transaction(
    db: Any, level: str, work: Callable[[Any], Awaitable[Any]], read_only: bool
) -> Any:
    timeout_s = getattr(db, "query_timeout", None)
    async with db.get_pool().connection() as conn:
        # 1.9.x's pool check runs SELECT 1 on checkout and hands the connection over
        # inside that transaction; end it (nothing happened in it) so ours can begin with
        # SET TRANSACTION. On 0.5.x the connection is idle and this does nothing.
        await conn.rollback()
        async with conn.transaction():
            mode = " READ ONLY" if read_only else ""
            await conn.execute(f"SET TRANSACTION ISOLATION LEVEL {level}{mode}")
            if timeout_s:
                await conn.execute(f"SET LOCAL statement_timeout = '{int(timeout_s * 1000)}ms'")
            return await work(conn)


async def _fetch_one(conn, sql: str, params: tuple) -> dict[str, Any]:
    from psycopg.rows import dict_row

    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        return await cur.fetchone() or {}


@fraiseql.input
class TransferInput:
    op_id: str
    group: str
    from_account: str
    amount: int
    to_account: str | None = None
    isolation: str = "read_committed"
    hold_s: float = 0.0
    accounts: list[str] | None = None
    opening_balance: int = 100


_OPENED_GROUPS: set[str] = set()


def _input_values(input: Any) -> dict[str, Any]:
    """A resolver mutation's input as snake_case values: 1.9.x passes the input object,
    0.5.3 a dict (camelCase keys as sent)."""
    if not isinstance(input, dict):
        return {name: getattr(input, name) for name in TransferInput.__annotations__}
    import re

    snake = {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): v for k, v in input.items()}
    defaults = {
        "to_account": None,
        "isolation": "read_committed",
        "hold_s": 0.0,
        "accounts": None,
        "opening_balance": 100,
    }
    return {**defaults, **snake}


@fraiseql.mutation
async def transfer(info, input: TransferInput) -> TransferResult:
    # core.transfer through this line's mutation flavour at the chosen isolation level.
    # The group's accounts are opened first (once per process, in a READ COMMITTED
    # transaction of its own), so opening never conflicts with the experiment.
    import json

    args = _input_values(input)
    if args["group"] not in _OPENED_GROUPS:
        names = args["accounts"] or [n for n in (args["from_account"], args["to_account"]) if n]

        async def open_accounts(conn):
            await conn.execute(
                "SELECT core.open_accounts(%s, %s, %s)",
                (args["group"], names, args["opening_balance"]),
            )

        await _at_isolation(info, "read_committed", open_accounts)
        _OPENED_GROUPS.add(args["group"])
    payload = json.dumps(
        {
            "op_id": args["op_id"],
            "group": args["group"],
            "from": args["from_account"],
            "to": args["to_account"],
            "amount": args["amount"],
            "hold_s": args["hold_s"],
        }
    )

    async def work(conn):
        return await _fetch_one(
            conn, f"SELECT * FROM {MUTATION_SCHEMA}.transfer(%s::jsonb)", (payload,)
        )

    row = await _at_isolation(info, args["isolation"], work)
    entity = (row.get("entity") if LINE_1X else row.get("object_data")) or {}
    return TransferResult(
        status=row.get("status") or "unknown",
        message=row.get("message") or "",
        op_id=entity.get("op_id"),
        isolation=entity.get("isolation"),
        from_balance=entity.get("from_balance"),
        to_balance=entity.get("to_balance"),
    )


@fraiseql.query
async def account_snapshot(
    info, group: str, isolation: str = "read_committed", hold_s: float = 0.0
) -> AccountSnapshot:
    sql = "SELECT * FROM core.account_snapshot(%s)"

    async def work(conn):
        first = await _fetch_one(conn, sql, (group,))
        if hold_s > 0:
            await conn.execute("SELECT pg_sleep(%s)", (min(hold_s, 60.0),))
        second = await _fetch_one(conn, sql, (group,))
        return first, second

    first, second = await _at_isolation(info, isolation, work, read_only=True)
    return AccountSnapshot(
        group=group,
        isolation=first["isolation"],
        accounts=first["accounts"],
        total=first["total"],
        initial_total=first["initial_total"],
        withdrawn=first["withdrawn"],
        min_balance=first["min_balance"],
        transfers=first["transfers"],
        total_again=second["total"],
        initial_total_again=second["initial_total"],
        withdrawn_again=second["withdrawn"],
        transfers_again=second["transfers"],
    )


@fraiseql.input
class RecordOpInput:
    op_id: str
    client: str
    amount: int
    note: str | None = None


@fraiseql.success
class RecordOpSuccess:
    message: str
    ledger_entry: LedgerEntry


@failure_type
class RecordOpError:
    message: str
    if LINE_1X:
        code: int
    else:
        status: str


@fraiseql.mutation(function="record_op", schema=MUTATION_SCHEMA)
class RecordOp:
    input: RecordOpInput
    success: RecordOpSuccess
    error: RecordOpError


@fraiseql.input
class IncrementCounterInput:
    name: str
    by: int = 1


@fraiseql.success
class IncrementCounterSuccess:
    message: str
    counter: Counter


@failure_type
class IncrementCounterError:
    message: str
    if LINE_1X:
        code: int
    else:
        status: str


@fraiseql.mutation(function="increment_counter", schema=MUTATION_SCHEMA)
class IncrementCounter:
    input: IncrementCounterInput
    success: IncrementCounterSuccess
    error: IncrementCounterError


def _auth():
    if ENV.get("FRAISEQL_AUTH_ENABLED", "true") != "true":
        return None
    from fraiseql.auth.auth0 import Auth0Provider

    return Auth0Provider(
        domain=ENV["FRAISEQL_JWKS_DOMAIN"], api_identifier=ENV["FRAISEQL_AUDIENCE"]
    )


config = FraiseQLConfig(
    database_url=ENV["DATABASE_URL"],
    environment=ENV.get("FRAISEQL_ENVIRONMENT", "production"),
    database_pool_size=int(ENV.get("FRAISEQL_POOL_SIZE", "10")),
    database_pool_timeout=int(ENV.get("FRAISEQL_POOL_TIMEOUT", "5")),
    query_timeout=int(ENV.get("FRAISEQL_QUERY_TIMEOUT", "10")),
    auth_enabled=ENV.get("FRAISEQL_AUTH_ENABLED", "true") == "true",
    # The lab drives load on purpose; FraiseQL's own limiter would answer 429 instead.
    rate_limit_enabled=False,
    enable_playground=False,
)

app = create_fraiseql_app(
    config=config,
    auth=_auth(),
    types=[
        Author,
        AuthorRef,
        Post,
        LedgerEntry,
        Counter,
        Item,
        SlowResult,
        TransferResult,
        AccountSnapshot,
        Note,
        NoteResult,
    ],
    queries=[
        authors, posts, post, ledger_entry, counter, items, slow_query, account_snapshot, note,
    ],
    mutations=[RecordOp, IncrementCounter, transfer, update_note],
    title="FraiseQL chaos-lab demo",
)

if ENV.get("FRAISEQL_METRICS", "true") == "true":
    from fraiseql.monitoring.metrics import setup_metrics

    setup_metrics(app)
