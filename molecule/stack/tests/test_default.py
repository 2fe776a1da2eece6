"""stack: controller -> mol-app (FraiseQL) -> mol-proxy -> mol-db, JWKS on mol-auth."""

import json
import uuid
from pathlib import Path

import pytest

from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.graphql import GraphQLClient
from chaos_runner.workload.tokens import TokenMinter

STATE = Path("/var/lib/chaoslab-molecule")


@pytest.fixture()
def db(host):
    return host.get_host("ansible://mol-db", ansible_inventory=host.backend.ansible_inventory)


def test_mutation_through_the_stack_lands_in_the_database(db):
    app = json.loads((STATE / "apps" / "mol-app.json").read_text())
    assert app["database_host"] == "198.18.0.152"
    minter = TokenMinter(pki_dir=STATE / "pki", issuer=app["issuer"], audience=app["audience"])
    op_id = f"mol-{uuid.uuid4()}"
    with GraphQLClient(app["url"], NetworkGuard()) as client:
        resp = client.execute(
            "mutation($i: RecordOpInput!) { recordOp(input: $i) { __typename } }",
            {"i": {"opId": op_id, "client": "molecule", "amount": 1}},
            token=minter.mint(),
        )
    assert resp.ok and resp.data["recordOp"]["__typename"] == "RecordOpSuccess", resp.text
    socket_dir = "/srv/chaoslab/mol-db/run/postgresql"
    psql = f"runuser -u postgres -- psql -X -At -h {socket_dir} -d fraiseql_demo -c"
    assert (
        db.check_output(f"{psql} \"SELECT count(*) FROM core.tb_ledger WHERE op_id = '{op_id}'\"")
        == "1"
    )
    clients = db.check_output(
        f"{psql} \"SELECT DISTINCT client_addr FROM pg_stat_activity WHERE usename = 'fraiseql'\""
    )
    assert clients.split() == ["198.18.0.152"]
