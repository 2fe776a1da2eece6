"""Cache faults: redis-cli on the cache host (flush, delete selected keys, corrupt
entries, shrink the memory bound); heal-all restores the configured memory bound."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.fault import Artifact, Family, Fault, Record
from chaosfault.processes import run
from chaosfault.validation import _number

if TYPE_CHECKING:
    from chaosfault.agent import Agent


def redis_cli(agent: Agent, *args: str, check: bool = True, raw: bool = False) -> str:
    """redis-cli against this host's Redis; `raw` for plain lines, else quoted replies."""
    facts = agent.config.get("redis")
    if not facts:
        raise FaultInputError(f"{agent.host} runs no Redis: cache faults target a cache host")
    fmt = "--raw" if raw else "--no-raw"
    cmd = ["redis-cli", "-h", facts["address"], "-p", str(facts["port"]), fmt, *args]
    return run(cmd, check=check).stdout.strip()


def _redis_int(agent: Agent, *args: str) -> int:
    return int(redis_cli(agent, *args).removeprefix("(integer) "))


def _redis_keys(agent: Agent, pattern: str) -> list[str]:
    return [k for k in redis_cli(agent, "--scan", "--pattern", pattern, raw=True).splitlines() if k]


def _redis_memory_config(agent: Agent) -> dict[str, str]:
    out = redis_cli(agent, "CONFIG", "GET", "maxmemory*", raw=True).split()
    return dict(zip(out[::2], out[1::2], strict=False))


def _redis_restore_memory(agent: Agent, saved: dict[str, str]) -> None:
    for name in ("maxmemory", "maxmemory-policy"):
        if name in saved:
            redis_cli(agent, "CONFIG", "SET", name, saved[name], check=False)


class CacheFlush(Fault):
    """FLUSHALL (one-shot: the cache rebuilds itself; heal has nothing to undo)."""

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: Record) -> None:
        record["artifacts"]["keys_before"] = _redis_int(agent, "DBSIZE")
        redis_cli(agent, "FLUSHALL")

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        now = _redis_int(agent, "DBSIZE")
        before = record["artifacts"]["keys_before"]
        return True, f"flushed {before} key(s) at inject; {now} key(s) now (refilled by the app)"

    def heal(self, agent: Agent, record: Record) -> None:
        return None


def _pattern(params: dict[str, Any], default: str) -> str:
    pattern = params.get("pattern", default)
    if not isinstance(pattern, str) or not pattern or len(pattern) > 200:
        raise FaultInputError("params.pattern: expected a key pattern (1-200 characters)")
    if any(c in pattern for c in "\n\r "):
        raise FaultInputError("params.pattern: one word, no spaces or line breaks")
    return pattern


class CacheDelete(Fault):
    """Deletes the keys matching `pattern`, and only those (one-shot, like an invalidation
    that reaches only some entries: the cache refills itself; heal has nothing to undo)."""

    params = ("pattern",)

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pattern": _pattern(params, "fraiseql:*")}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: Record) -> None:
        keys = _redis_keys(agent, record["params"]["pattern"])
        record["artifacts"]["keys_total"] = _redis_int(agent, "DBSIZE")
        record["artifacts"]["deleted"] = _redis_int(agent, "UNLINK", *keys) if keys else 0
        record["artifacts"]["matched"] = len(keys)

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        """In effect when it deleted something: a pattern that matched no key was no fault."""
        a = record["artifacts"]
        return a["deleted"] > 0, (
            f"deleted {a['deleted']} of {a['matched']} key(s) matching "
            f"{record['params']['pattern']} ({a['keys_total']} key(s) in the cache before)"
        )

    def heal(self, agent: Agent, record: Record) -> None:
        return None


_SET_AND_GET = "redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL'); return redis.call('GET', KEYS[1])"


class CacheCorrupt(Fault):
    """Overwrites cached entries with garbage (TTL kept); heal deletes what is still garbage."""

    params = ("pattern", "value")

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        pattern = params.get("pattern", "fraiseql:*")
        value = params.get("value", "chaoslab-garbage-not-json[")
        for key, v in (("pattern", pattern), ("value", value)):
            if not isinstance(v, str) or not v or len(v) > 200 or any(c in v for c in "\n\r"):
                raise FaultInputError(f"params.{key}: expected one line of text (1-200 characters)")
        return {"pattern": pattern, "value": value}

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: Record) -> None:
        keys = _redis_keys(agent, record["params"]["pattern"])
        landed = []
        for key in keys:
            # Write and read back in one script (atomic): the app cannot rewrite in between.
            answer = redis_cli(agent, "EVAL", _SET_AND_GET, "1", key, record["params"]["value"])
            if answer == json.dumps(record["params"]["value"]):
                landed.append(key)
        record["artifacts"]["corrupted"] = keys
        record["artifacts"]["landed"] = landed

    def _still_corrupt(self, agent: Agent, record: Record) -> list[str]:
        value = json.dumps(record["params"]["value"])
        return [
            k
            for k in record["artifacts"].get("corrupted", [])
            if redis_cli(agent, "GET", k, check=False) == value
        ]

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        """In effect when the garbage landed (written and read back in one script). An app
        that reads it as a miss rewrites the key within milliseconds under load, so the key
        may hold a good entry again by now: that is reported, not a failure."""
        corrupt = self._still_corrupt(agent, record)
        total = len(record["artifacts"]["corrupted"])
        landed = len(record["artifacts"].get("landed", []))
        return landed > 0, (
            f"{landed} of {total} key(s) held the garbage after the write; "
            f"{len(corrupt)} still hold it, {landed - len(corrupt)} rewritten since"
        )

    def heal(self, agent: Agent, record: Record) -> None:
        for key in self._still_corrupt(agent, record):
            redis_cli(agent, "DEL", key, check=False)


class CacheMemory(Fault):
    """Shrinks Redis's memory bound at runtime: `evict` (LRU evicts under load) or
    `write_fail` (noeviction: every write is refused with OOM). Heal restores both settings."""

    params = ("maxmemory_kb", "headroom_kb")
    policy = "allkeys-lru"

    def check(self, params: dict[str, Any]) -> dict[str, Any]:
        """`maxmemory_kb`: an absolute bound; `headroom_kb`: the memory Redis uses at inject
        plus this much (an absolute bound below Redis's own ~1 MB refuses every write
        whatever the policy: nothing can be evicted to get under it)."""
        if "headroom_kb" in params:
            if "maxmemory_kb" in params:
                raise FaultInputError("params: maxmemory_kb or headroom_kb, not both")
            return {"headroom_kb": _number(params, "headroom_kb", 1, 64 * 1024, integer=True)}
        return {
            "maxmemory_kb": _number(
                params, "maxmemory_kb", 1, 64 * 1024 * 1024, default=1, integer=True
            )
        }

    @staticmethod
    def _bound(record: Record) -> int:
        """The bound in bytes this fault set (or sets)."""
        if "headroom_kb" in record["params"]:
            return int(record["artifacts"]["maxmemory_bytes"])
        return int(record["params"]["maxmemory_kb"]) * 1024

    def mechanism(self, agent: Agent, params: dict[str, Any]) -> str:
        return "redis"

    def inject(self, agent: Agent, record: Record) -> None:
        record["artifacts"]["saved"] = _redis_memory_config(agent)
        if "headroom_kb" in record["params"]:
            used = re.search(r"used_memory:(\d+)", redis_cli(agent, "INFO", "memory", raw=True))
            if used is None:
                raise FaultFailed("Redis's INFO memory has no used_memory")
            headroom = record["params"]["headroom_kb"] * 1024
            record["artifacts"]["maxmemory_bytes"] = int(used.group(1)) + headroom
        agent.save(record)  # the original bound must survive anything before heal
        redis_cli(agent, "CONFIG", "SET", "maxmemory-policy", self.policy)
        redis_cli(agent, "CONFIG", "SET", "maxmemory", str(self._bound(record)))

    def verify(self, agent: Agent, record: Record) -> tuple[bool, str]:
        current = _redis_memory_config(agent)
        want = str(self._bound(record))
        evicted = re.search(r"evicted_keys:(\d+)", redis_cli(agent, "INFO", "stats"))
        ok = current.get("maxmemory") == want and current.get("maxmemory-policy") == self.policy
        return (
            ok,
            f"maxmemory={current.get('maxmemory')} policy={current.get('maxmemory-policy')}, "
            f"evicted_keys={evicted.group(1) if evicted else '?'}",
        )

    def heal(self, agent: Agent, record: Record) -> None:
        _redis_restore_memory(agent, record["artifacts"].get("saved", {}))


class CacheWriteFail(CacheMemory):
    policy = "noeviction"


# ----------------------------------------------------------------- artifacts


def _runs_redis(agent: Agent) -> bool:
    return bool(agent.config.get("redis"))


def _configured_memory(agent: Agent) -> dict[str, str]:
    facts = agent.config["redis"]
    return {
        "maxmemory": str(facts["maxmemory_mb"] * 1024 * 1024),
        "maxmemory-policy": facts["policy"],
    }


def _memory_drift(agent: Agent) -> dict[str, str]:
    """The live memory settings when they differ from the configured ones, else {}."""
    current = _redis_memory_config(agent)
    want = _configured_memory(agent)
    drift = current.get("maxmemory") != want["maxmemory"] or (
        current.get("maxmemory-policy") != want["maxmemory-policy"]
    )
    return current if drift else {}


def _restore_configured_memory(agent: Agent) -> list[str]:
    want = _configured_memory(agent)
    try:
        if _redis_memory_config(agent) != want:
            _redis_restore_memory(agent, want)
            return ["Redis memory bound restored"]
    except FaultFailed as exc:
        return [f"Redis not reachable for sweep: {exc}"]
    return []


FAMILY = Family(
    name="cache",
    faults={
        "cache.flush": CacheFlush(),
        "cache.delete": CacheDelete(),
        "cache.corrupt": CacheCorrupt(),
        "cache.evict": CacheMemory(),
        "cache.write_fail": CacheWriteFail(),
    },
    artifacts=(
        Artifact(
            "redis_config",
            _memory_drift,
            _restore_configured_memory,
            _runs_redis,
            error_key="redis_error",
        ),
    ),
)
