"""A small GraphQL-over-HTTP client that obeys the network rule.

FraiseQL answers most errors with HTTP 200 and an `errors` list, so a response keeps
the status, the decoded body and the GraphQL error messages separately.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chaos_runner.target.netguard import NetworkGuard


@dataclass(frozen=True)
class GraphQLResponse:
    status: int
    body: dict[str, Any] | None
    text: str
    errors: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any] | None:
        return (self.body or {}).get("data") if isinstance(self.body, dict) else None

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.errors and self.data is not None


class GraphQLClient:
    """One keep-alive HTTP connection to one FraiseQL endpoint."""

    def __init__(self, url: str, guard: NetworkGuard, timeout_s: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected an http:// URL, got {url!r}")
        self.host = guard.check(parts.hostname)
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> GraphQLClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> GraphQLResponse:
        payload = json.dumps({"query": query, "variables": variables or {}}).encode()
        request_headers = {"content-type": "application/json", "accept": "application/json"}
        if token is not None:
            request_headers["authorization"] = f"Bearer {token}"
        request_headers.update(headers or {})
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            self._conn.request("POST", "/graphql", body=payload, headers=request_headers)
            resp = self._conn.getresponse()
            text = resp.read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        return parse_response(resp.status, text)


def parse_response(status: int, text: str) -> GraphQLResponse:
    try:
        body = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
    errors: list[str] = []
    if isinstance(body, dict):
        for err in body.get("errors") or []:
            errors.append(str(err.get("message", err)) if isinstance(err, dict) else str(err))
        if status >= 400 and "detail" in body:
            errors.append(str(body["detail"]))
    elif status >= 400:
        errors.append(text[:200] or f"HTTP {status}")
    return GraphQLResponse(
        status=status, body=body if isinstance(body, dict) else None, text=text, errors=errors
    )
