"""fraiseql: the demo app answers GraphQL with lab-minted tokens and refuses others."""

import json
from pathlib import Path

import yaml

from chaos_runner.target.netguard import NetworkGuard
from chaos_runner.workload.graphql import GraphQLClient
from chaos_runner.workload.tokens import TokenMinter

STATE = Path("/var/lib/chaoslab-molecule")
# The scenario converges the role's default line.
ROLE = Path(__file__).resolve().parents[3] / "roles" / "fraiseql"
LINE = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["fraiseql_version"]


def _app():
    return json.loads((STATE / "apps" / "mol-fq.json").read_text())


def test_health(host):
    assert host.check_output("curl -sf http://198.18.0.141:8000/health").startswith(
        '{"status":"healthy"'
    )


def test_the_recorded_version_runs(host):
    app = _app()
    assert app["version"] == LINE and app["python"] == "3.13"
    out = host.check_output(
        f"/opt/chaoslab/fraiseql-{LINE}/bin/python"
        " -c 'import fraiseql; print(fraiseql.__version__)'"
    )
    assert out == LINE


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
