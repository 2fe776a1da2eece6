"""Cache faults against Redis on cache1, with app1 on the 0.5.3 line (Redis result cache)."""

from __future__ import annotations

import subprocess

import pytest

from chaos_runner.faults.channel import FaultClient, FaultSpec
from chaos_runner.target.lab import LabState
from chaos_runner.workload.graphql import GraphQLClient
from chaos_runner.workload.tokens import TokenMinter
from tests.conftest import DEFAULT_LINE, converge_app

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("healed_after")]

QUERY = "{ authors(limit: 3) { id name } }"
KEY = "fraiseql:v_author:limit:3"


@pytest.fixture(scope="module")
def app05(lab, lab_settings):
    if LabState.load(lab_settings).app("app1").version != "0.5.3":
        converge_app("0.5.3")
    state = LabState.load(lab_settings)
    assert state.app("app1").raw["cache"] == "redis"
    yield state
    converge_app(DEFAULT_LINE)


@pytest.fixture(scope="module")
def faults(app05):
    with FaultClient(app05) as client:
        yield client
        client.heal_all()


def redis(state: LabState, *args: str) -> str:
    address = state.guard.check(state.hosts["cache1"]["address"])
    proc = subprocess.run(
        ["redis-cli", "-h", address, "-p", "6379", "--raw", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return proc.stdout.strip()


def query(state: LabState):
    app = state.app("app1")
    minter = TokenMinter(state.settings.state_dir / "pki", app.issuer, app.audience)
    with GraphQLClient(app.url, state.guard) as client:
        return client.execute(QUERY, token=minter.mint())


def test_the_app_fills_the_cache(app05):
    redis(app05, "DEL", KEY)
    assert query(app05).ok
    assert "Ada Lovelace" in redis(app05, "GET", KEY)


def test_flush_empties_the_cache_and_the_app_refills_it(app05, faults):
    assert query(app05).ok
    assert int(redis(app05, "DBSIZE")) >= 1
    fault = faults.inject(FaultSpec("cache1", "cache.flush", {}, ttl_s=30))
    assert fault["mechanism"] == "redis"
    assert redis(app05, "DBSIZE") == "0"
    assert query(app05).ok
    assert redis(app05, "EXISTS", KEY) == "1"


def test_delete_removes_only_the_selected_keys(app05, faults):
    assert query(app05).ok
    redis(app05, "SET", "chaoslab:keep-me", "1", "EX", "60")
    fault = faults.inject(
        FaultSpec("cache1", "cache.delete", {"pattern": "fraiseql:v_author:*"}, ttl_s=30)
    )
    assert redis(app05, "EXISTS", KEY) == "0"
    assert redis(app05, "EXISTS", "chaoslab:keep-me") == "1"
    check = faults.verify("cache1", fault["id"])
    assert check["ok"] and "deleted 1 of 1 key(s) matching fraiseql:v_author:*" in check["evidence"]
    redis(app05, "DEL", "chaoslab:keep-me")


def test_a_rename_through_the_cached_repository_and_what_it_invalidates(app05):
    """FraiseQL's own invalidation after `update_note` (0.5.3's CachedRepository derives
    `fraiseql:note:*` from the function's name): measured, whatever it reaches."""
    app = app05.app("app1")
    minter = TokenMinter(app05.settings.state_dir / "pki", app.issuer, app.audience)
    read = '{ note(id: "00000000-0000-4000-a000-000000000001") { title version } }'
    write = "mutation($input: UpdateNoteInput!) { updateNote(input: $input) { status version } }"
    with GraphQLClient(app.url, app05.guard) as client:
        before = client.execute(read, token=minter.mint())
        assert before.ok, before.errors
        keys = redis(app05, "--scan", "--pattern", "fraiseql:v_note:*").split()
        assert keys, "the note read went through the result cache"
        renamed = client.execute(
            write,
            {"input": {"id": "00000000-0000-4000-a000-000000000001", "title": "renamed"}},
            token=minter.mint(),
        )
        assert renamed.ok and renamed.data["updateNote"]["status"] == "success", renamed.errors
        after = client.execute(read, token=minter.mint())
    for key in keys:  # the other tests count the cache's keys
        redis(app05, "DEL", key)
    new = renamed.data["updateNote"]["version"]
    seen = after.data["note"]["version"]
    print(f"note version {new} written; read after it: {seen}; keys {keys}")
    assert new == before.data["note"]["version"] + 1


def test_corrupt_overwrites_entries_and_heal_removes_the_garbage(app05, faults):
    assert query(app05).ok
    fault = faults.inject(FaultSpec("cache1", "cache.corrupt", {"value": "garbage{{"}, ttl_s=30))
    assert redis(app05, "GET", KEY) == "garbage{{"
    check = faults.verify("cache1", fault["id"])
    assert check["ok"] and check["evidence"].startswith("1 of 1 key(s) held the garbage"), check
    assert "1 still hold it" in check["evidence"]
    faults.heal("cache1", fault["id"])
    assert redis(app05, "EXISTS", KEY) == "0"
    assert query(app05).ok


def test_garbage_the_app_reads_as_a_miss_and_rewrites_still_counts_as_injected(app05, faults):
    assert query(app05).ok
    fault = faults.inject(FaultSpec("cache1", "cache.corrupt", {"value": "garbage{{"}, ttl_s=30))
    assert query(app05).ok  # 0.5.3 reads garbage as a miss, asks PostgreSQL, writes it back
    assert "Ada Lovelace" in redis(app05, "GET", KEY)
    check = faults.verify("cache1", fault["id"])
    assert check["ok"], check
    assert "0 still hold it, 1 rewritten since" in check["evidence"]
    faults.heal("cache1", fault["id"])


def test_evict_shrinks_memory_and_entries_are_evicted(app05, faults):
    before = int(redis(app05, "INFO", "stats").split("evicted_keys:")[1].split()[0])
    fault = faults.inject(FaultSpec("cache1", "cache.evict", {"maxmemory_kb": 1}, ttl_s=30))
    for _ in range(3):
        assert query(app05).ok
    evidence = faults.verify("cache1", fault["id"])["evidence"]
    after = int(redis(app05, "INFO", "stats").split("evicted_keys:")[1].split()[0])
    assert after > before, evidence
    faults.heal("cache1", fault["id"])
    assert redis(app05, "CONFIG", "GET", "maxmemory").split()[1] == str(64 * 1024 * 1024)


def test_write_fail_refuses_writes_until_healed(app05, faults):
    faults.inject(FaultSpec("cache1", "cache.write_fail", {"maxmemory_kb": 1}, ttl_s=30))
    assert "OOM" in redis(app05, "SET", "chaoslab:probe", "x")
    faults.heal_all(["cache1"])
    assert redis(app05, "SET", "chaoslab:probe", "x") == "OK"
    redis(app05, "DEL", "chaoslab:probe")


def test_stopped_cache_is_down_then_back(app05, faults):
    fault = faults.inject(FaultSpec("cache1", "proc.stop", {"program": "redis"}, ttl_s=30))
    address = app05.hosts["cache1"]["address"]
    down = subprocess.run(
        ["redis-cli", "-h", address, "-p", "6379", "PING"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert "PONG" not in down.stdout
    faults.heal("cache1", fault["id"])
    assert redis(app05, "PING") == "PONG"
