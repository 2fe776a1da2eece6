"""Command line and `serve` loop: argv commands and JSON-line requests map to the same ops,
answered as {"ok": true, "result": ...} or {"ok": false, "error": ..., "input_error": ...}."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn, TextIO

import chaosfault
from chaosfault.agent import Agent
from chaosfault.artifacts import list_artifacts
from chaosfault.capabilities import capabilities
from chaosfault.errors import FaultFailed, FaultInputError
from chaosfault.kinds import FAULTS, WORKERS
from chaosfault.programs import probe, program_states


def kinds() -> dict[str, list[str]]:
    return {kind: list(fault.params) for kind, fault in sorted(FAULTS.items())}


def handle(agent: Agent, request: Any) -> dict[str, Any]:
    """The answer to one request; never raises for anything a request can cause. The
    request's `rid`, when it has one, is echoed so the caller can match the answer."""
    if not isinstance(request, dict):
        return {"ok": False, "error": "request: expected a JSON object", "input_error": True}
    answer = _answer(agent, request)
    if "rid" in request:
        answer["rid"] = request["rid"]
    return answer


def _answer(agent: Agent, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    handlers: dict[str, Callable[[], Any]] = {
        "inject": lambda: agent.inject(request.get("fault", {})),
        "plan": lambda: agent.plan(request.get("fault", {})),
        "verify": lambda: agent.verify(str(request.get("id"))),
        "heal": lambda: (
            agent.heal_all() if request.get("all") else agent.heal(str(request.get("id")))
        ),
        "renew": lambda: agent.renew(request.get("ids"), request.get("lease_s")),
        "list": lambda: agent.records(),
        "kinds": kinds,
        "capabilities": lambda: capabilities(agent, refresh=bool(request.get("refresh"))),
        "artifacts": lambda: list_artifacts(agent),
        "programs": lambda: program_states(agent),
        "proc": lambda: probe(agent, request.get("program")),
        "ping": lambda: {"host": agent.host, "pid": os.getpid()},
    }
    if not isinstance(op, str) or op not in handlers:
        return {
            "ok": False,
            "error": f"op: unknown operation {op!r}; known: {', '.join(handlers)}",
            "input_error": True,
        }
    try:
        return {"ok": True, "result": handlers[op]()}
    except FaultInputError as exc:
        return {"ok": False, "error": str(exc), "input_error": True}
    except FaultFailed as exc:
        return {"ok": False, "error": str(exc), "input_error": False}
    except Exception as exc:
        # A bug or an unexpected host state: answered like a failure, with the traceback
        # in the agent's log, and the session goes on.
        with contextlib.suppress(OSError):
            agent.log(f"{op} raised:\n{traceback.format_exc()}")
        return {"ok": False, "error": f"{op}: {type(exc).__name__}: {exc}", "input_error": False}


def _encode(answer: dict[str, Any]) -> str:
    try:
        return json.dumps(answer)
    except (TypeError, ValueError) as exc:
        fallback = {"ok": False, "error": f"answer is not JSON: {exc}", "input_error": False}
        if "rid" in answer:
            fallback["rid"] = answer["rid"]
        return json.dumps(fallback, default=repr)


def serve(agent: Agent, lines: Iterable[bytes], out: TextIO) -> None:
    """One JSON request per line in, one JSON answer per line out, until end of input."""
    for raw in lines:
        line = raw.decode(errors="replace")
        if not line.strip():
            continue
        try:
            request = json.loads(line)
        except ValueError as exc:
            answer = {"ok": False, "error": f"request is not JSON: {exc}", "input_error": True}
        else:
            answer = handle(agent, request)
        out.write(_encode(answer) + "\n")
        out.flush()


def _argv_request(cmd: str, args: list[str]) -> dict[str, Any] | None:
    requests: dict[str, Callable[[], dict[str, Any]]] = {
        "inject": lambda: {"op": "inject", "fault": json.loads(args[0]) if args else {}},
        "plan": lambda: {"op": "plan", "fault": json.loads(args[0]) if args else {}},
        "verify": lambda: {"op": "verify", "id": args[0]},
        "heal": lambda: (
            {"op": "heal", "all": True} if args == ["--all"] else {"op": "heal", "id": args[0]}
        ),
        "renew": lambda: {"op": "renew", "lease_s": float(args[0]), "ids": args[1:]},
        "list": lambda: {"op": "list"},
        "capabilities": lambda: {"op": "capabilities", "refresh": args == ["--refresh"]},
        "artifacts": lambda: {"op": "artifacts"},
        "programs": lambda: {"op": "programs"},
        "proc": lambda: {"op": "proc", "program": args[0]},
    }
    return requests[cmd]() if cmd in requests else None


def _print(answer: dict[str, Any]) -> int:
    print(json.dumps(answer, indent=2, sort_keys=True))
    if answer["ok"]:
        return 0
    return 2 if answer.get("input_error") else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    config = Path(os.environ.get("CHAOSFAULT_CONFIG", ""))
    if len(argv) >= 2 and argv[0] == "--config":
        config, argv = Path(argv[1]), argv[2:]
    if not argv:
        print(chaosfault.__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "kinds":  # needs no host
        return _print({"ok": True, "result": kinds()})
    agent = Agent(config)
    if cmd == "watchdog":
        agent.watchdog(args[0], float(args[1]))
        return 0
    if cmd in WORKERS:
        WORKERS[cmd](agent, args)
        return 0
    if cmd == "serve":
        serve(agent, sys.stdin.buffer, sys.stdout)
        return 0
    try:
        request = _argv_request(cmd, args)
    except (IndexError, ValueError) as exc:
        return _print({"ok": False, "error": f"{cmd}: bad arguments ({exc})", "input_error": True})
    if request is None:
        print(f"chaosfault: unknown command {cmd!r}", file=sys.stderr)
        return 2
    return _print(handle(agent, request))


def entry() -> NoReturn:
    """The zipapp's entry point (`python3 chaosfault.pyz ...`)."""
    sys.exit(main())
