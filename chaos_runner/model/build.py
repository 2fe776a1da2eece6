"""Typed models built from plain data (YAML), refusing unknown keys.

A model is a frozen dataclass; `build(Model, data, where)` checks every key against the
field's type annotation (str, int, float, bool, Literal, list[...], dict[str, ...],
Optional, nested models) and raises ConfigError naming the file, the dotted key and what
was expected. Field metadata may carry `check`: a function returning an error text or None.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from chaos_runner.errors import ConfigError

T = TypeVar("T")
# A check returns None, a message, or (leaf key below the field, message).
Check = Callable[[Any], str | tuple[str, str] | None]


class ModelError(ConfigError):
    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        super().__init__(f"{source}: {key or '(top level)'}: {message}")


def field(default: Any = dataclasses.MISSING, check: Check | None = None, **kw: Any) -> Any:
    """A dataclass field with an optional value check (meta `check`)."""
    meta = {"check": check} if check else {}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_describe(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({getattr(tp, '__name__', tp)})"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
    elif origin in (Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _convert(option, value, source, key)
            except ModelError as exc:
                errors.append(exc)
        # A value of the right shape with a bad part inside: name that part's leaf key.
        deeper = [e for e in errors if e.key != key]
        if deeper:
            raise max(deeper, key=lambda e: len(e.key))
    elif tp is type(None):
        if value is None:
            return None
    elif origin is list:
        if isinstance(value, list):
            (item,) = get_args(tp)
            return [_convert(item, v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, Mapping):
            _, item = get_args(tp)
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ModelError(source, f"{key}.{k}", "keys must be strings")
                out[k] = _convert(item, v, source, f"{key}.{k}")
            return out
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return build(typing.cast(type[Any], tp), value, source, key)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str and isinstance(value, str):
        return value
    raise ModelError(source, key, f"expected {_describe(tp)}, got {value!r}")


def build(model: type[T], data: Any, source: str, prefix: str = "") -> T:
    """Build `model` from `data`; every problem names `source` and the dotted key."""
    if not isinstance(data, Mapping):
        raise ModelError(source, prefix, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(model)
    names = {_key(f): f for f in dataclasses.fields(model)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - set(names))
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ModelError(source, where, f"unknown key (allowed: {', '.join(sorted(names))})")
    kwargs: dict[str, Any] = {}
    for key, f in names.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ModelError(source, dotted, f"required ({_describe(hints[f.name])})")
            continue
        value = _convert(hints[f.name], data[key], source, dotted)
        check = f.metadata.get("check")
        if check is not None:
            problem = check(value)
            if isinstance(problem, tuple):  # (leaf under this key, message)
                leaf = problem[0] if problem[0].startswith("[") else f".{problem[0]}"
                raise ModelError(source, f"{dotted}{leaf}", problem[1])
            if problem:
                raise ModelError(source, dotted, problem)
        kwargs[f.name] = value
    return model(**kwargs)


def _key(f: dataclasses.Field[Any]) -> str:
    """YAML key of a field: `class_` -> `class`, `fail_fast` stays."""
    return str(f.metadata.get("key") or f.name.rstrip("_"))


def positive(value: float | int | None) -> str | None:
    return None if value is None or value > 0 else f"must be > 0, got {value}"


def at_least(low: float) -> Check:
    return lambda v: None if v is None or v >= low else f"must be >= {low}, got {v}"


def between(low: float, high: float) -> Check:
    return lambda v: (
        None if v is None or low <= v <= high else f"must be in [{low}, {high}], got {v}"
    )


def source_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> tuple[Any, str]:
    """The YAML document of `path` and its display name; ConfigError names file and line."""
    import yaml

    source = source_name(path)
    try:
        return yaml.safe_load(path.read_text()), source
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "yaml"
        problem = getattr(exc, "problem", None) or exc
        raise ModelError(source, where, f"YAML syntax error: {problem}") from None
