"""fraiseql: the demo app answers GraphQL with lab-minted tokens and refuses others."""

import json
from pathlib import Path

from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.graphql import GraphQLClient
from chaos_runner.workload.tokens import TokenMinter

STATE = Path("/var/lib/chaoslab-molecule")


def _app():
    return json.loads((STATE / "apps" / "mol-fq.json").read_text())


def test_health(host):
    assert host.check_output("curl -sf http://198.18.0.141:8000/health").startswith(
        '{"status":"healthy"'
    )


def test_the_recorded_version_runs(host):
    app = _app()
    assert app["version"] == "1.9.16" and app["python"] == "3.13"
    out = host.check_output(
        "/opt/chaoslab/fraiseql-1.9.16/bin/python -c 'import fraiseql; print(fraiseql.__version__)'"
    )
    assert out == "1.9.16"


def test_query_with_a_lab_token_and_refusal_without():
    app = _app()
    minter = TokenMinter(pki_dir=STATE / "pki", issuer=app["issuer"], audience=app["audience"])
    with GraphQLClient(app["url"], NetworkGuard()) as client:
        ok = client.execute("{ authors(limit: 5) { name } }", token=minter.mint())
        assert ok.ok, ok.text
        assert sorted(a["name"] for a in ok.data["authors"]) == [
            "Ada Lovelace",
            "Edgar Codd",
            "Grace Hopper",
        ]
        assert client.execute("{ authors { name } }").status == 401
