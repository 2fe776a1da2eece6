"""jwks.rotate: the new key published through the agent, the load on the new key with a
share on the withdrawn one, and the check that judges the withdrawn key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest

from chaos_runner.analysis.checkers import scoped
from chaos_runner.faults.steps import JwksRotation, build_fault
from chaos_runner.model.scenario import FaultStep
from chaos_runner.target.pki import load_or_create_signing_key
from chaos_runner.workload.tokens import WITHDRAWN, TokenMinter, TokenSwitch
from tests.unit.test_checkers import by_name, evidence, op
from tests.unit.test_client_burst import refusal


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A state directory's pki/ with one signing key, the active one."""
    pki = tmp_path / "pki"
    load_or_create_signing_key(pki, "lab-key-1")
    (pki / "active_kid").write_text("lab-key-1\n")
    return pki


def kid_of(authorization: str | None) -> str:
    assert authorization is not None
    return str(jwt.get_unverified_header(authorization.removeprefix("Bearer "))["kid"])


class Client:
    def __init__(self, pki: Path) -> None:
        self.state = SimpleNamespace(
            settings=SimpleNamespace(state_dir=pki.parent),
            host=lambda ref: "auth1",
            gateway="198.18.0.1",
            roles=None,
        )
        self.injected: list[dict] = []
        self.healed: list[str] = []

    def inject(self, spec):
        self.injected.append(spec.params)
        return {"id": spec.id, "mechanism": "jwks-document"}

    def verify(self, host, fault_id):
        return {"ok": True, "evidence": "published"}

    def heal(self, host, fault_id):
        self.healed.append(host)
        return {"healed": True}


def test_rotation_publishes_the_new_key_alone_and_the_load_follows_it(pki, monkeypatch):
    monkeypatch.setattr("chaos_runner.faults.steps.resolve_params", lambda p, roles: p)
    pki_dir = pki
    switch = TokenSwitch(TokenMinter(pki_dir, "https://i/", "https://a/"), ttl_s=60)
    client = Client(pki_dir)
    fault = build_fault(
        FaultStep("jwks.rotate", "@auth", {"withdrawn_share": 0.5}),
        client,
        switch,
        60,
        None,  # type: ignore[arg-type]
    )
    assert isinstance(fault, JwksRotation) and fault.host == "auth1"
    answer = fault.inject()
    (document,) = [p["document"] for p in client.injected]
    new_kid = fault.kid
    assert [k["kid"] for k in document["keys"]] == [new_kid]  # the old key withdrawn
    assert all("d" not in k for k in document["keys"])  # public parts only
    assert answer["mechanism"] == f"jwks-document: {new_kid} published, lab-key-1 withdrawn"
    tokens = [switch("query", i) for i in range(4)]
    assert [label for label, _ in tokens] == [WITHDRAWN, "valid", WITHDRAWN, "valid"]
    assert kid_of(tokens[0][1]) == "lab-key-1" and kid_of(tokens[1][1]) == new_kid
    # Probes and invalid GraphQL are not judged by their token: never the withdrawn key.
    assert switch("health", 0)[0] == switch("invalid", 0)[0] == "valid"
    assert (pki_dir / "jwt" / f"{new_kid}.key").exists()
    fault.heal()
    assert client.healed == ["auth1"]
    assert switch("query", 0)[0] == "valid" and kid_of(switch("query", 0)[1]) == "lab-key-1"
    assert not (pki_dir / "jwt" / f"{new_kid}.key").exists()


def withdrawn(start_ms: float, outcome: str, auth: bool = False):
    return op(start_ms, 10, outcome, token=WITHDRAWN, auth_rejected=auth)


def check(ops, limit_s=0.5):
    ev = evidence("tolerate", expect={"withdrawn_key_s": limit_s}, withdrawn_ops=ops)
    return by_name(scoped(ev))["withdrawn key refused"]


def test_the_withdrawn_key_must_be_refused_after_the_limit_and_the_stay_is_measured():
    # The fault starts at 1 s; the limit is 0.5 s: from 1.5 s on every one must be refused.
    still = check([withdrawn(1100, "ok"), withdrawn(1700, "ok"), withdrawn(1800, "fail", True)])
    assert not still.ok
    assert still.measured == "accepted until 0.71 s after the withdrawal"
    assert (
        still.detail
        == "1/2 accepted later than 0.5 s after the withdrawal; the last 0.71 s after it"
    )
    good = check(
        [withdrawn(1100, "ok"), withdrawn(1600, "fail", True), withdrawn(1900, "fail", True)]
    )
    assert good.ok and good.measured == "accepted until 0.11 s after the withdrawal"
    assert good.detail == "2/2 refused as an auth error"
    early = check([withdrawn(1100, "fail", True)])
    assert not early.ok and early.detail.startswith("no withdrawn-key request later than 0.5 s")
    masked = check([withdrawn(1600, "fail", False)])
    assert not masked.ok and "failed otherwise" in masked.detail


def test_withdrawn_key_operations_are_not_bad_tokens_nor_service_load():
    from chaos_runner.analysis.evaluate import service_ops

    ops = [withdrawn(1100, "ok"), op(1200, 10)]
    assert [o.token for o in service_ops(ops)] == ["valid"]


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"withdrawn_share": 0}, "withdrawn_share"),
        ({"keep_old": "yes"}, "keep_old"),
        ({"kid": "x"}, "kid"),
    ],
)
def test_bad_rotation_parameters_name_the_key(tmp_path, params, key):
    assert f"faults[0].params.{key}" in refusal(tmp_path, "jwks.rotate", "@auth", params)
