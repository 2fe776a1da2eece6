"""The stack end to end, for both FraiseQL lines: controller -> app1 (FraiseQL) -> proxy1
(HAProxy) -> db1 (PostgreSQL), with tokens validated against the JWKS on auth1."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

pytestmark = pytest.mark.integration

POSTS = "query($limit: Int!) { posts(limit: $limit) { id title tags published } }"
NESTED = (
    '{ post(id: "00000000-0000-4000-9000-000000000001") { id title author { id name email } } }'
)
RECORD = """mutation($input: RecordOpInput!) { recordOp(input: $input) {
  __typename ... on RecordOpSuccess { message ledgerEntry { id opId amount client } }
  ... on RecordOpError { message } } }"""
INCREMENT = """mutation($input: IncrementCounterInput!) { incrementCounter(input: $input) {
  __typename ... on IncrementCounterSuccess { counter { name value } } } }"""


def test_query_returns_seeded_rows(client, minter, db_admin):
    resp = client.execute(POSTS, {"limit": 5}, token=minter.mint())
    assert resp.ok, resp.text
    posts = resp.data["posts"]
    assert len(posts) == 5
    seeded = {str(r[0]) for r in db_admin.execute("SELECT id FROM core.tb_post").fetchall()}
    assert {p["id"] for p in posts} <= seeded
    assert all(p["title"].startswith("Post ") for p in posts)


def test_nested_query_embeds_the_author(client, minter, fraiseql_line, request):
    if fraiseql_line == "0.5.3":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="finding: FraiseQL 0.5.3 in production mode flattens nested objects "
                "into the "
                "parent and returns arrays as JSON strings",
            )
        )
    resp = client.execute(NESTED, token=minter.mint())
    assert resp.ok, resp.text
    assert resp.data["post"]["author"] == {
        "__typename": "AuthorRef",
        "id": "00000000-0000-4000-8000-000000000002",
        "name": "Grace Hopper",
        "email": "grace@lab.example",
    } or resp.data["post"]["author"] == {
        "id": "00000000-0000-4000-8000-000000000002",
        "name": "Grace Hopper",
        "email": "grace@lab.example",
    }


def test_mutation_writes_exactly_one_ledger_row(client, minter, db_admin):
    op_id = f"it-{uuid.uuid4()}"
    payload = {"input": {"opId": op_id, "client": "pytest", "amount": 7}}
    first = client.execute(RECORD, payload, token=minter.mint())
    assert first.ok, first.text
    assert first.data["recordOp"]["__typename"] == "RecordOpSuccess"
    assert first.data["recordOp"]["ledgerEntry"]["opId"] == op_id
    row = db_admin.execute(
        "SELECT client, amount FROM core.tb_ledger WHERE op_id = %s", (op_id,)
    ).fetchall()
    assert row == [("pytest", 7)]

    # The same operation again is refused as a duplicate and writes nothing.
    second = client.execute(RECORD, payload, token=minter.mint())
    assert second.data["recordOp"]["__typename"] == "RecordOpError", second.text
    assert "already recorded" in second.data["recordOp"]["message"]
    count = db_admin.execute(
        "SELECT count(*) FROM core.tb_ledger WHERE op_id = %s", (op_id,)
    ).fetchone()
    assert count == (1,)


def test_counter_increment_is_applied(client, minter, db_admin):
    name = f"it-{uuid.uuid4().hex[:8]}"
    for _ in range(3):
        resp = client.execute(INCREMENT, {"input": {"name": name, "by": 2}}, token=minter.mint())
        assert resp.ok, resp.text
    assert resp.data["incrementCounter"]["counter"] == {"name": name, "value": 6} or resp.data[
        "incrementCounter"
    ]["counter"] == {"__typename": "Counter", "name": name, "value": 6}
    assert db_admin.execute(
        "SELECT value FROM core.tb_counter WHERE name = %s", (name,)
    ).fetchone() == (6,)


def test_the_app_reaches_postgresql_through_the_proxy(client, minter, db_admin, app_state):
    assert client.execute(POSTS, {"limit": 1}, token=minter.mint()).ok
    clients = {
        str(r[0])
        for r in db_admin.execute(
            "SELECT client_addr FROM pg_stat_activity"
            " WHERE usename = 'fraiseql' AND client_addr IS NOT NULL"
        ).fetchall()
    }
    assert clients == {app_state.hosts["proxy1"]["address"]}, clients


def test_requests_without_a_token_are_refused(client):
    resp = client.execute(POSTS, {"limit": 1})
    assert resp.status == 401
    assert resp.data is None


def test_a_token_with_a_bad_signature_is_refused(client, minter):
    token = minter.mint()
    header, payload, signature = token.split(".")
    forged = ".".join(
        [
            header,
            payload,
            signature[:-6] + ("AAAAAA" if not signature.endswith("AAAAAA") else "BBBBBB"),
        ]
    )
    resp = client.execute(POSTS, {"limit": 1}, token=forged)
    assert resp.status == 401
    assert resp.data is None


def test_a_token_signed_by_an_unknown_key_is_refused(client, minter, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = stranger.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    now = int(time.time())
    token = jwt.encode(
        {"sub": "x", "iss": minter.issuer, "aud": minter.audience, "iat": now, "exp": now + 60},
        pem,
        algorithm="RS256",
        headers={"kid": minter.active_kid()},
    )
    assert client.execute(POSTS, {"limit": 1}, token=token).status == 401


def test_an_expired_token_is_refused(client, minter):
    token = minter.mint(
        ttl_s=-60, claims={"nbf": int(time.time()) - 120, "iat": int(time.time()) - 120}
    )
    assert client.execute(POSTS, {"limit": 1}, token=token).status == 401


def test_a_token_for_another_audience_is_refused(client, minter):
    token = minter.mint(claims={"aud": "https://someone-else.example/api"})
    assert client.execute(POSTS, {"limit": 1}, token=token).status == 401


def test_the_recorded_line_is_what_runs(app_state, fraiseql_line, client):
    app = app_state.app("app1")
    assert app.version == fraiseql_line
    assert app.raw["python"] == ("3.13" if fraiseql_line == "1.9.16" else "3.11")
