"""jwks: the JWKS over HTTPS with the lab CA; only public keys reach the host."""

import json

ROOT = "/srv/chaoslab/mol-jwks"


def test_serves_the_jwks_over_https_trusting_only_the_lab_ca(host):
    body = host.check_output(
        f"curl -sf --cacert {ROOT}/etc/tls/ca.crt https://198.18.0.131/.well-known/jwks.json"
    )
    keys = json.loads(body)["keys"]
    assert [k["kid"] for k in keys] == ["lab-key-1"]
    assert all(k["kty"] == "RSA" and k["alg"] == "RS256" and "d" not in k for k in keys)


def test_an_untrusted_client_fails_tls(host):
    assert host.run("curl -sf https://198.18.0.131/.well-known/jwks.json").rc == 60


def test_tls_key_is_private_and_no_signing_key_is_on_the_host(host):
    assert host.file(f"{ROOT}/etc/tls/server.key").mode == 0o600
    assert host.run(f"grep -rl 'PRIVATE KEY' {ROOT}/data").rc == 1


def test_signing_keys_stay_on_the_controller_0600():
    import os
    import stat

    path = "/var/lib/chaoslab-molecule/pki/jwt/lab-key-1.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
