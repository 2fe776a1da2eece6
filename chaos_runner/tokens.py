"""JWTs minted from the lab's signing keys (they never leave the controller)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from chaos_runner.errors import ConfigError


@dataclass(frozen=True)
class TokenMinter:
    pki_dir: Path
    issuer: str
    audience: str

    def active_kid(self) -> str:
        path = self.pki_dir / "active_kid"
        if not path.is_file():
            raise ConfigError(f"{path} is missing: the jwks role has not run (chaoslab lab up)")
        return path.read_text().strip()

    def private_key(self, kid: str) -> str:
        path = self.pki_dir / "jwt" / f"{kid}.key"
        if not path.is_file():
            raise ConfigError(f"no signing key {kid!r} in {path.parent}")
        return path.read_text()

    def mint(
        self,
        subject: str = "chaos-runner",
        ttl_s: int = 300,
        kid: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        kid = kid or self.active_kid()
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims or {})
        return jwt.encode(payload, self.private_key(kid), algorithm="RS256", headers={"kid": kid})
