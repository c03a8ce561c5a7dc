"""The generated certificates let kube-apiserver serve on loopback and admit the admin."""

import base64
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tailor_localenv import pki


def test_admin_certificate_serves_loopback_and_is_a_cluster_admin(tmp_path: Path) -> None:
    generated = pki.generate(tmp_path)
    ca = x509.load_pem_x509_certificate(generated.ca_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(generated.admin_cert.read_bytes())

    assert admin.issuer == ca.subject
    admin.verify_directly_issued_by(ca)
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    sans = admin.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1"}
    usages = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usages


def test_kubeconfig_embeds_the_credentials(tmp_path: Path) -> None:
    generated = pki.generate(tmp_path / "pki")
    path = pki.write_kubeconfig(tmp_path / "kubeconfig", "https://127.0.0.1:6443", generated)
    config = yaml.safe_load(path.read_text())

    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == generated.ca_cert.read_bytes()
    assert base64.b64decode(user["client-certificate-data"]) == generated.admin_cert.read_bytes()
    assert config["current-context"] == config["contexts"][0]["name"]
