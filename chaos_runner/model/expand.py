"""Scenario documents before they are built: profiles, variants and sweeps as plain data.

A profile (`scenarios/profiles/<name>.yml`) holds load / windows / abort / prepare presets that a
scenario extends with `profile: NAME`; the scenario's own keys win (its `load.mix`
replaces the profile's whole). Variants and sweep points deep-merge into the document.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos_runner.model.build import ModelError, build, field, read_yaml

PROFILE_DIR = "profiles"
KEY_PATH = re.compile(r"[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)*")
# Mappings a scenario replaces whole instead of merging into the profile's.
REPLACED = {("load", "mix")}


def deep_merge(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping) and path not in REPLACED:
        out = dict(base)
        for k, v in override.items():
            out[k] = deep_merge(base.get(k), v, (*path, str(k))) if k in base else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(override, list)
        and all(isinstance(b, Mapping) for b in base)
        and all(isinstance(v, Mapping) for v in override)
    ):
        # Lists of mappings (faults, stages) merge by position: `faults: [{params: ...}]`
        # changes the first fault's parameters. A list of values (suites, anomalies,
        # operation kinds) is replaced whole: a variant can shorten or clear it.
        merged = [copy.deepcopy(b) for b in base]
        for i, v in enumerate(override):
            merged[i : i + 1] = [
                deep_merge(base[i], v, path) if i < len(base) else copy.deepcopy(v)
            ]
        return merged
    return copy.deepcopy(override)


def set_path(data: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with `key` (like `faults[0].params.delay_ms`) set to `value`. The
    path must exist up to its last mapping; KeyError says where it stops."""
    out = copy.deepcopy(dict(data))
    node: Any = out
    parts = key.split(".")
    for n, part in enumerate(parts):
        name, _, index = part.partition("[")
        last = n == len(parts) - 1
        if not isinstance(node, dict):
            raise KeyError(f"{'.'.join(parts[:n])} is not a mapping")
        if index:
            items = node.get(name)
            i = int(index.rstrip("]"))
            if not isinstance(items, list) or i >= len(items):
                raise KeyError(f"{key}: {'.'.join([*parts[:n], name])} has no item {i}")
            if last:
                items[i] = value
            node = items[i]
        elif last:
            node[name] = value
        else:
            node = node.setdefault(name, {})
    return out


def default_label(key: str) -> str:
    """`windows.hold_s` -> `hold`, `faults[0].params.delay_ms` -> `delay`."""
    leaf = key.rsplit(".", 1)[-1].split("[")[0]
    leaf = re.sub(r"_(s|ms)$", "", leaf)
    return re.sub(r"[^a-z0-9]", "", leaf) or "value"


@dataclass(frozen=True)
class Profile:
    """What a profile may preset; each key is checked to its leaf here, in the profile file."""

    description: str | None = None
    load: dict[str, Any] = field({})
    windows: dict[str, Any] = field({})
    abort: dict[str, Any] = field({})
    expect: dict[str, Any] = field({})
    tags: list[str] = field([])
    # Steps before the load (the scenario's own `prepare` replaces the whole list).
    prepare: list[dict[str, Any]] = field([])


class Profiles:
    """The profiles of one scenario directory, read and checked once each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cache: dict[str, dict[str, Any]] = {}

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.yml"))

    def get(self, name: str, source: str) -> dict[str, Any]:
        if name not in self._cache:
            path = self.directory / f"{name}.yml"
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name) or not path.is_file():
                known = ", ".join(self.names()) or "none"
                raise ModelError(source, "profile", f"unknown profile {name!r} (known: {known})")
            data, where = read_yaml(path)
            build(Profile, data if data is not None else {}, where)
            self._cache[name] = _checked_parts(data or {}, where)
        return self._cache[name]

    def apply(self, data: Any, source: str) -> Any:
        """The scenario document with its profile underneath (unchanged without one)."""
        if not isinstance(data, Mapping) or data.get("profile") is None:
            return data
        name = data["profile"]
        if not isinstance(name, str):
            raise ModelError(source, "profile", f"expected a profile name, got {name!r}")
        preset = {k: v for k, v in self.get(name, source).items() if k != "description"}
        merged: dict[str, Any] = deep_merge(preset, data)
        if "tags" in preset and "tags" in data:
            merged["tags"] = list(dict.fromkeys([*preset["tags"], *data["tags"]]))
        return merged


def _checked_parts(data: dict[str, Any], where: str) -> dict[str, Any]:
    """Each preset section built with the scenario's own model, so a bad value names the
    profile file and its leaf key (`load.mix.query`)."""
    from chaos_runner.model.scenario import Abort, LoadProfile, PrepareStep, Windows

    for key, model in (("load", LoadProfile), ("windows", Windows), ("abort", Abort)):
        if key in data:
            build(model, data[key], where, key)
    for i, step in enumerate(data.get("prepare") or []):
        build(PrepareStep, step, where, f"prepare[{i}]")
    return data
