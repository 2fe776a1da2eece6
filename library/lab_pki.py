#!/usr/bin/python
"""Ansible module: the lab's PKI on the controller.

Creates (only what is missing) a lab CA, TLS server certificates signed by it, RSA
signing keys for JWTs, and the JWKS document publishing the chosen public keys.
Private keys never leave the controller except the TLS server key, which the jwks
role copies to the host that serves it. Every private key file is mode 0600.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: lab_pki
short_description: Lab CA, TLS server certificates, JWT signing keys and JWKS document
description:
  - Idempotent; existing keys are kept; a server certificate is re-issued only when its
    names change or it expires within 30 days.
options:
  path:
    description: Directory for the PKI (created 0700).
    type: path
    required: true
  ca_name:
    description: Common name of the lab CA.
    type: str
    default: chaoslab CA
  servers:
    description: TLS server certificates to issue, each {name, ips, dns}.
    type: list
    elements: dict
    default: []
  signing_kids:
    description: Key ids of the RSA signing keys to create; all are published in the JWKS.
    type: list
    elements: str
    default: []
  key_size:
    description: RSA key size for signing keys.
    type: int
    default: 2048
"""

import base64
import datetime
import ipaddress
import json
import os

from ansible.module_utils.basic import AnsibleModule

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # pragma: no cover - reported through fail_json
    x509 = None


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _write_public(path: str, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o644)


def _load_or_create_key(path: str, key_size: int, changed: list[str]) -> rsa.RSAPrivateKey:
    if os.path.exists(path):
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
        os.chmod(path, 0o600)
        return key  # type: ignore[return-value]
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    changed.append(path)
    return key


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _ensure_ca(path: str, name: str, changed: list[str]):
    key = _load_or_create_key(os.path.join(path, "ca.key"), 2048, changed)
    cert_path = os.path.join(path, "ca.crt")
    if os.path.exists(cert_path) and os.path.join(path, "ca.key") not in changed:
        with open(cert_path, "rb") as handle:
            return key, x509.load_pem_x509_certificate(handle.read())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    changed.append(cert_path)
    return key, cert


def _server_names(cert) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    ips = sorted(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    dns = sorted(san.get_values_for_type(x509.DNSName))
    return ips, dns


def _ensure_server(path, ca_key, ca_cert, server, ca_changed, changed):
    name = server["name"]
    ips = sorted(str(ipaddress.ip_address(ip)) for ip in server.get("ips") or [])
    dns = sorted(server.get("dns") or [name])
    key = _load_or_create_key(os.path.join(path, f"{name}.key"), 2048, changed)
    cert_path = os.path.join(path, f"{name}.crt")
    if (
        os.path.exists(cert_path)
        and not ca_changed
        and os.path.join(path, f"{name}.key") not in changed
    ):
        with open(cert_path, "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        fresh = cert.not_valid_after_utc > _now() + datetime.timedelta(days=30)
        if fresh and _server_names(cert) == (ips, dns):
            return
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    changed.append(cert_path)


def _jwk(kid: str, key) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": kid,
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "ca_name": {"type": "str", "default": "chaoslab CA"},
            "servers": {"type": "list", "elements": "dict", "default": []},
            "signing_kids": {"type": "list", "elements": "str", "default": []},
            "key_size": {"type": "int", "default": 2048},
        },
        supports_check_mode=True,
    )
    if x509 is None:
        module.fail_json(msg="lab_pki needs the 'cryptography' package on the controller")
    path = module.params["path"]
    for kid in module.params["signing_kids"]:
        if not kid or "/" in kid or kid.startswith("."):
            module.fail_json(msg=f"lab_pki: signing key id {kid!r} is not a plain name")
    for server in module.params["servers"]:
        if "name" not in server:
            module.fail_json(msg=f"lab_pki: server entry {server!r} has no 'name'")
    if module.check_mode:
        module.exit_json(changed=not os.path.exists(os.path.join(path, "jwks.json")))

    changed: list[str] = []
    os.makedirs(os.path.join(path, "jwt"), mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    ca_key, ca_cert = _ensure_ca(path, module.params["ca_name"], changed)
    ca_changed = bool(changed)
    for server in module.params["servers"]:
        _ensure_server(path, ca_key, ca_cert, server, ca_changed, changed)
    keys = [
        _jwk(
            kid,
            _load_or_create_key(
                os.path.join(path, "jwt", f"{kid}.key"), module.params["key_size"], changed
            ),
        )
        for kid in module.params["signing_kids"]
    ]
    document = json.dumps({"keys": keys}, indent=2, sort_keys=True) + "\n"
    jwks_path = os.path.join(path, "jwks.json")
    previous = None
    if os.path.exists(jwks_path):
        with open(jwks_path) as handle:
            previous = handle.read()
    if previous != document:
        _write_public(jwks_path, document.encode())
        changed.append(jwks_path)
    module.exit_json(
        changed=bool(changed),
        written=changed,
        jwks=json.loads(document),
        ca_cert=os.path.join(path, "ca.crt"),
    )


if __name__ == "__main__":
    main()
