"""JWTs minted from the lab's signing keys (they never leave the controller)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chaos_runner.errors import ConfigError
from chaos_runner.workload.operations import EXPECTED_REFUSAL_KINDS, OP_KINDS, PROBE_PATHS


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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(minter: TokenMinter, ttl_s: int) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "chaos-bad-token",
        "iss": minter.issuer,
        "aud": minter.audience,
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }


def bad_authorization(kind: str, minter: TokenMinter, ttl_s: int = 600) -> str | None:
    """The Authorization header value of a token that must be refused (None = no header).

    Every variant is a real attack or mistake: missing, empty, not a JWT, `alg: none`,
    HS256 keyed with the RSA public key (algorithm confusion), a key the JWKS does not
    publish, a forged signature under the active kid, expired, another audience.
    """
    kid = minter.active_kid()
    if kind == "none":
        return None
    if kind == "empty":
        return "Bearer "
    if kind == "malformed":
        return "Bearer not-a.jwt"
    if kind == "alg-none":
        head = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
        return f"Bearer {head}.{_b64(json.dumps(_claims(minter, ttl_s)).encode())}."
    if kind == "hs256-public":
        public = (
            serialization.load_pem_private_key(minter.private_key(kid).encode(), None)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
        body = _b64(json.dumps(_claims(minter, ttl_s)).encode())
        sig = _b64(hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest())
        return f"Bearer {head}.{body}.{sig}"
    if kind in ("unknown-kid", "bad-signature"):
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        use_kid = f"chaos-unknown-{uuid.uuid4().hex[:8]}" if kind == "unknown-kid" else kid
        token = jwt.encode(
            _claims(minter, ttl_s), stranger, algorithm="RS256", headers={"kid": use_kid}
        )
        return f"Bearer {token}"
    if kind == "expired":
        claims = _claims(minter, ttl_s)
        claims.update(iat=claims["iat"] - 7200, exp=claims["iat"] - 3600)
        return _signed(claims, minter, kid)
    if kind == "wrong-audience":
        claims = _claims(minter, ttl_s)
        claims["aud"] = "https://elsewhere.lab/api"
        return _signed(claims, minter, kid)
    raise ConfigError(f"unknown bad token kind {kind!r}")


def _signed(claims: dict[str, Any], minter: TokenMinter, kid: str) -> str:
    token = jwt.encode(claims, minter.private_key(kid), algorithm="RS256", headers={"kid": kid})
    return f"Bearer {token}"


# The label of operations sent with a token under a key the JWKS no longer publishes.
WITHDRAWN = "withdrawn-key"
# The label (a client.bad-token kind) of operations whose token is minted as they are
# sent with `exp` EXPIRING_TTL_S whole seconds ahead: JWT times are whole seconds, so it
# expires between 1 and 2 s after it is sent - never on a request's fast path, always on
# one slower than 2 s (its token expired in flight); a request that waited longer than its
# token's life before FraiseQL looked at it must be refused.
EXPIRING = "expiring"
EXPIRING_TTL_S = 2
# The operations whose answer depends on the token: GraphQL ones that FraiseQL executes
# (not the GET probes, not invalid GraphQL refused before any token is looked at).
SIGNED_KINDS = frozenset(OP_KINDS) - set(PROBE_PATHS) - EXPECTED_REFUSAL_KINDS


class TokenSwitch:
    """The load's token policy: valid tokens, or (while a client fault holds) bad ones for a
    share of the chosen operation kinds, cycling through the bad kinds."""

    def __init__(self, minter: TokenMinter, ttl_s: int) -> None:
        self.minter = minter
        self.ttl_s = ttl_s
        self.valid = f"Bearer {minter.mint(subject='chaos-runner', ttl_s=ttl_s)}"
        self.bad: list[tuple[str, str | None]] = []
        self.every = 1
        self.ops: set[str] = set()
        self.sent = 0
        # After a key rotation: the token under the withdrawn key, sent for every
        # `withdrawn_every`-th operation (label WITHDRAWN); the rest use the new key.
        self.withdrawn: str | None = None
        self.withdrawn_every = 1

    def rotate(self, kid: str, withdrawn_share: float) -> None:
        """From now on the valid token is signed with `kid`; a share of the operations
        keeps the token under the key it replaced."""
        self.withdrawn = self.valid
        self.withdrawn_every = max(1, round(1 / withdrawn_share))
        self.valid = f"Bearer {self.minter.mint(subject='chaos-runner', ttl_s=self.ttl_s, kid=kid)}"

    def unrotate(self) -> None:
        if self.withdrawn is not None:
            self.valid, self.withdrawn = self.withdrawn, None

    def activate(self, tokens: list[str], share: float, ops: list[str]) -> None:
        # An expiring token is minted per request (below), not once here.
        self.bad = [
            (t, None if t == EXPIRING else bad_authorization(t, self.minter)) for t in tokens
        ]
        self.every = max(1, round(1 / share))
        self.ops = set(ops)

    def deactivate(self) -> None:
        self.bad = []

    def __call__(self, kind: str, index: int) -> tuple[str, str | None]:
        bad = self.bad
        if bad and kind in self.ops and index % self.every == 0:
            self.sent += 1
            label, header = bad[(index // self.every) % len(bad)]
            if label == EXPIRING:
                token = self.minter.mint(subject="chaos-expiring", ttl_s=EXPIRING_TTL_S)
                return label, f"Bearer {token}"
            return label, header
        withdrawn = self.withdrawn
        if withdrawn is not None and kind in SIGNED_KINDS and index % self.withdrawn_every == 0:
            return WITHDRAWN, withdrawn
        return "valid", self.valid
