"""auth.expired-token: tokens minted as each request is sent, expiring within 1 s, and the
check that a request is executed whole or refused - never failed another way."""

from __future__ import annotations

import time

import jwt

from chaos_runner.analysis.checkers import Evidence, scoped
from chaos_runner.workload.tokens import EXPIRING, EXPIRING_TTL_S, TokenMinter, TokenSwitch
from tests.unit.test_checkers import by_name, evidence, op
from tests.unit.test_jwks_rotation import pki  # noqa: F401 - the fixture

NAME = "expiring tokens: executed whole or refused"


def test_each_expiring_token_is_minted_as_its_request_is_sent(pki):  # noqa: F811
    switch = TokenSwitch(TokenMinter(pki, "https://auth1.lab/", "https://fraiseql.lab/api"), 600)
    switch.activate([EXPIRING], share=0.5, ops=["mutation"])
    before = int(time.time())
    label, header = switch("mutation", 0)
    after = int(time.time())
    assert label == EXPIRING and header is not None
    claims = jwt.decode(header.removeprefix("Bearer "), options={"verify_signature": False})
    # Whole seconds: it expires 1-2 s (EXPIRING_TTL_S whole seconds ahead) after minting.
    assert before + EXPIRING_TTL_S <= claims["exp"] <= after + EXPIRING_TTL_S
    _, again = switch("mutation", 2)
    assert again != header  # a new token (new jti) per request
    assert switch("mutation", 1)[0] == "valid"  # the other half
    assert switch("query", 0)[0] == "valid"  # only the chosen kinds
    switch.deactivate()
    assert switch("mutation", 0)[0] == "valid"


def expiring(ev: Evidence, ops: list) -> Evidence:
    return Evidence(**{**ev.__dict__, "expiring_ops": ops})


def test_executed_or_refused_passes_when_tokens_expired_in_flight():
    ops = [
        op(1000, 2500, token=EXPIRING),  # answered 2.5 s later: its token expired in flight
        op(1100, 50, token=EXPIRING),
        op(1200, 2600, "fail", token=EXPIRING, auth_rejected=True, status=401),
    ]
    check = by_name(scoped(expiring(evidence("consistent"), ops)))[NAME]
    assert check.ok
    assert check.measured == (
        "2 executed (1 answered after the token expired), 1 refused,"
        " 0 failed as valid tokens did, 0 other"
    )


def test_any_other_failure_fails_it():
    ops = [
        op(1000, 2500, token=EXPIRING),
        op(1100, 3000, "info", token=EXPIRING, timed_out=True, error="timeout"),
        op(1200, 900, "fail", token=EXPIRING, status=500, error="Internal server error"),
    ]
    check = by_name(scoped(expiring(evidence("consistent"), ops)))[NAME]
    assert not check.ok and check.measured.endswith(
        "0 refused, 0 failed as valid tokens did, 2 other"
    )
    assert check.detail.startswith("2 failed otherwise")


def test_a_failure_valid_tokens_got_too_is_the_faults_not_the_tokens():
    masked = {"error": "Internal server error", "kind": "mutation"}
    ops = [
        op(1000, 2500, token=EXPIRING, kind="mutation"),
        op(1100, 5000, "info", token=EXPIRING, **masked),
    ]
    ev = evidence("consistent", [op(1050, 5000, "info", **masked)])
    check = by_name(scoped(expiring(ev, ops)))[NAME]
    assert check.ok and check.measured.endswith("1 failed as valid tokens did, 0 other")
    assert check.detail.startswith("failed as valid tokens did: mutation info")


def test_it_fails_when_no_token_expired_in_flight():
    quick = [op(1000, 30, token=EXPIRING), op(1100, 40, token=EXPIRING)]
    check = by_name(scoped(expiring(evidence("consistent"), quick)))[NAME]
    assert not check.ok and "no token expired in flight" in check.detail
