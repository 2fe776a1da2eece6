"""FraiseQL demo app for the chaos lab - one file for both supported lines.

Views with JSONB data (v_author, v_post with a nested author, v_ledger, v_counter) and
two PL/pgSQL mutations. The lines differ only in the mutation API:
  1.9.x: functions in schema `app` return app.mutation_response (8 columns); failures are
         @fraiseql.error types with an integer `code`;
  0.5.x: functions in schema `app_v05` return app_v05.mutation_result (6 columns); failures
         are @fraiseql.failure types, which carry the status string.
Every setting comes from the environment the service layer passes (see the fraiseql role).
"""

from __future__ import annotations

import os
from datetime import datetime
from uuid import UUID

import fraiseql
from fraiseql.fastapi import FraiseQLConfig, create_fraiseql_app

ENV = os.environ
LINE_1X = int(fraiseql.__version__.split(".")[0]) >= 1
MUTATION_SCHEMA = "app" if LINE_1X else "app_v05"
failure_type = fraiseql.error if LINE_1X else fraiseql.failure


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
    return await info.context["db"].find_one("v_post", id=id)


@fraiseql.query
async def ledger_entry(info, op_id: str) -> LedgerEntry | None:
    return await info.context["db"].find_one("v_ledger", op_id=op_id)


@fraiseql.query
async def counter(info, name: str = "default") -> Counter | None:
    return await info.context["db"].find_one("v_counter", name=name)


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
    types=[Author, AuthorRef, Post, LedgerEntry, Counter],
    queries=[authors, posts, post, ledger_entry, counter],
    mutations=[RecordOp, IncrementCounter],
    title="FraiseQL chaos-lab demo",
)

if ENV.get("FRAISEQL_METRICS", "true") == "true":
    from fraiseql.monitoring.metrics import setup_metrics

    setup_metrics(app)
