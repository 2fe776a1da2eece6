"""The lab_pki module, run through Ansible for real on the controller (no lab needed)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography import x509

from chaos_runner.workload.tokens import TokenMinter

REPO = Path(__file__).resolve().parents[2]


def lab_pki(path: Path, **args) -> dict:
    module_args = json.dumps({"path": str(path), **args})
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-M",
            str(REPO / "library"),
            "-m",
            "lab_pki",
            "-a",
            module_args,
            "-o",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )
    line = proc.stdout.strip().splitlines()[-1]
    status, _, payload = line.partition(" => ")
    result = json.loads(payload)
    result["_status"] = status
    return result


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pki")
    result = lab_pki(
        path,
        servers=[{"name": "auth1", "ips": ["198.18.0.14"], "dns": ["auth1"]}],
        signing_kids=["k1", "k2"],
    )
    assert result["changed"] is True, result
    return path


def test_private_keys_are_0600_and_public_files_readable(pki):
    for key in ["ca.key", "auth1.key", "jwt/k1.key", "jwt/k2.key"]:
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600, key
    assert stat.S_IMODE((pki / "jwks.json").stat().st_mode) == 0o644
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700


def test_second_run_changes_nothing(pki):
    result = lab_pki(
        pki,
        servers=[{"name": "auth1", "ips": ["198.18.0.14"], "dns": ["auth1"]}],
        signing_kids=["k1", "k2"],
    )
    assert result["changed"] is False, result


def test_server_certificate_is_signed_by_the_ca_for_its_address(pki):
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((pki / "auth1.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["198.18.0.14"]


def test_rotation_publishes_only_the_listed_keys_and_keeps_existing_ones(tmp_path):
    first = lab_pki(tmp_path, signing_kids=["old"])
    old_key = (tmp_path / "jwt" / "old.key").read_bytes()
    rotated = lab_pki(tmp_path, signing_kids=["old", "new"])
    assert rotated["changed"] is True
    assert [k["kid"] for k in rotated["jwks"]["keys"]] == ["old", "new"]
    assert (tmp_path / "jwt" / "old.key").read_bytes() == old_key
    retired = lab_pki(tmp_path, signing_kids=["new"])
    assert [k["kid"] for k in retired["jwks"]["keys"]] == ["new"]
    assert first["jwks"]["keys"][0]["kid"] == "old"


def test_a_kid_with_a_path_is_refused(tmp_path):
    result = lab_pki(tmp_path, signing_kids=["../evil"])
    assert result["_status"].endswith("FAILED!")
    assert "is not a plain name" in result["msg"]


def test_minted_tokens_verify_against_the_published_jwks(pki):
    (pki / "active_kid").write_text("k2\n")
    minter = TokenMinter(pki_dir=pki, issuer="https://198.18.0.14/", audience="https://aud.lab/api")
    token = minter.mint(subject="alice", ttl_s=60)
    assert jwt.get_unverified_header(token)["kid"] == "k2"
    jwks = jwt.PyJWKSet.from_dict(json.loads((pki / "jwks.json").read_text()))
    key = next(k for k in jwks.keys if k.key_id == "k2")
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience="https://aud.lab/api",
        issuer="https://198.18.0.14/",
    )
    assert claims["sub"] == "alice"
    other = next(k for k in jwks.keys if k.key_id == "k1")
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.key, algorithms=["RS256"], audience="https://aud.lab/api")
