"""--web.config.file in the exporter-toolkit format: TLS, mTLS, basic auth, headers, rotation.

Certificates come from a throwaway CA made in the test (trustme); passwords are bcrypt-hashed in the
test. Failures are asserted the way the toolkit fails: 401 with ``WWW-Authenticate: Basic``, Go's
400 for plain HTTP on the TLS port, a refused handshake without a client certificate.
"""

import shutil
import socket
import ssl
import subprocess
import sys

import bcrypt
import pytest
import requests
import trustme
import yaml

from harness import ExporterProcess, free_port
from hostile_api import HostileAPI, good
from metric_samples import parse_exposition, value
from promstack import PrometheusServer

KEY = "sk-test-web-tls-51aa"
PASSWORD = "s3cret-scrape-pw"


@pytest.fixture(scope="module")
def api():
    with HostileAPI({"ij-1": good()}) as fake:
        yield fake


@pytest.fixture
def pki(tmp_path):
    """A CA, a server certificate for 127.0.0.1, and a client certificate, as files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("prometheus@example.test")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.crt", "key": tmp_path / "server.key",
             "client_cert": tmp_path / "client.crt", "client_key": tmp_path / "client.key"}
    ca.cert_pem.write_to_path(files["ca"])
    server.cert_chain_pems[0].write_to_path(files["cert"])
    server.private_key_pem.write_to_path(files["key"])
    client.cert_chain_pems[0].write_to_path(files["client_cert"])
    client.private_key_pem.write_to_path(files["client_key"])
    return files


def web_config(path, **sections) -> str:
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def bcrypt_hash(password: str) -> str:
    # $2y$ is what htpasswd writes and the toolkit's docs show.
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)


def exporter_with(api, web_config_path: str, **client) -> ExporterProcess:
    return ExporterProcess({"api": {"base_url": api.url}, "jobs": ["ij-1"]}, KEY,
                           extra_args=["--web.config.file", web_config_path], scheme="https", client=client)


@pytest.mark.slow
def test_tls_with_basic_auth_refuses_like_the_toolkit(api, pki, tmp_path):
    path = web_config(tmp_path / "web.yml",
                      tls_server_config={"cert_file": "server.crt", "key_file": "server.key"},
                      basic_auth_users={"prometheus": bcrypt_hash(PASSWORD)},
                      http_server_config={"headers": {"Strict-Transport-Security": "max-age=31536000"}})
    verify = str(pki["ca"])
    with exporter_with(api, path, verify=verify, auth=("prometheus", PASSWORD)) as exporter:
        good_answer = exporter.scrape()
        anonymous = requests.get(exporter.url + "/metrics", verify=verify, timeout=10)
        wrong = requests.get(exporter.url + "/metrics", verify=verify, auth=("prometheus", "nope"), timeout=10)
        unknown = requests.get(exporter.url + "/metrics", verify=verify, auth=("root", PASSWORD), timeout=10)
        plain = requests.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=10)
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(exporter.url + "/metrics", timeout=10, auth=("prometheus", PASSWORD))  # unknown CA
    got = parse_exposition(good_answer.text)
    assert value(got, "seekrflow_ingestion_job_scrape_success", job_id="ij-1") == 1
    assert good_answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    for refused in (anonymous, wrong, unknown):
        assert (refused.status_code, refused.text) == (401, "Unauthorized\n")
        assert refused.headers["WWW-Authenticate"] == "Basic"
        assert refused.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert (plain.status_code, plain.text) == (400, "Client sent an HTTP request to an HTTPS server.\n")
    assert PASSWORD not in exporter.log


@pytest.mark.parametrize("client_auth", ["RequireAndVerifyClientCert", "VerifyClientCertIfGiven"])
@pytest.mark.slow
def test_mutual_tls_with_and_without_a_client_certificate(api, pki, tmp_path, client_auth):
    path = web_config(tmp_path / "web.yml", tls_server_config={
        "cert_file": str(pki["cert"]), "key_file": str(pki["key"]), "client_auth_type": client_auth,
        "client_ca_file": str(pki["ca"]), "min_version": "TLS12"})
    verify = str(pki["ca"])
    with_cert = {"verify": verify, "cert": (str(pki["client_cert"]), str(pki["client_key"]))}
    stranger = trustme.CA().issue_cert("intruder@example.test")
    stranger.cert_chain_pems[0].write_to_path(tmp_path / "stranger.crt")
    stranger.private_key_pem.write_to_path(tmp_path / "stranger.key")
    with exporter_with(api, path, **with_cert) as exporter:
        assert exporter.scrape().status_code == 200
        if client_auth == "RequireAndVerifyClientCert":
            # The handshake is refused (requests' SSLError is a kind of ConnectionError).
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(exporter.url + "/metrics", verify=verify, timeout=10)
        else:
            assert requests.get(exporter.url + "/metrics", verify=verify, timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):  # a certificate from another CA
            requests.get(exporter.url + "/metrics", verify=verify, timeout=10,
                         cert=(str(tmp_path / "stranger.crt"), str(tmp_path / "stranger.key")))


def served_certificate(port: int, ca_file) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_file))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
            return tls.getpeercert(binary_form=True)


@pytest.mark.slow
def test_a_certificate_swapped_on_disk_is_served_on_the_next_connection(api, pki, tmp_path):
    path = web_config(tmp_path / "web.yml", tls_server_config={"cert_file": "server.crt", "key_file": "server.key"})
    with exporter_with(api, path, verify=str(pki["ca"])) as exporter:
        first = served_certificate(exporter.port, pki["ca"])
        new_ca = trustme.CA()
        new_cert = new_ca.issue_cert("127.0.0.1")
        new_ca.cert_pem.write_to_path(tmp_path / "new-ca.pem")
        new_cert.private_key_pem.write_to_path(pki["key"])
        new_cert.cert_chain_pems[0].write_to_path(pki["cert"])
        second = served_certificate(exporter.port, tmp_path / "new-ca.pem")
        with pytest.raises(ssl.SSLCertVerificationError):
            served_certificate(exporter.port, pki["ca"])
    assert first != second
    assert ssl.DER_cert_to_PEM_cert(second).strip() == new_cert.cert_chain_pems[0].bytes().decode().strip()


def start_and_fail(api, web_config_path: str) -> subprocess.CompletedProcess:
    config = tmp = web_config_path + ".exporter.yaml"
    with open(config, "w") as handle:
        yaml.safe_dump({"api": {"base_url": api.url}, "jobs": ["ij-1"]}, handle)
    return subprocess.run([sys.executable, "-m", "exporter", "--config.file", tmp, "--web.config.file", web_config_path,
                           "--web.listen-address", f"127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "SEEKR_API_KEY": KEY})


@pytest.mark.parametrize("sections, reason", [
    ({"tls_server_config": {"cert_file": "server.crt"}}, "tls_server_config: cert_file and key_file are both required"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "missing.key"}},
     "tls_server_config.key_file: cannot read {dir}/missing.key: No such file or directory"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "ca.pem"}},
     "tls_server_config: cannot use cert_file and key_file: not a PEM certificate and its private key"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "client.key"}},
     "tls_server_config: cannot use cert_file and key_file: KEY_VALUES_MISMATCH"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "client_auth_type": "Sometimes"}},
     "tls_server_config.client_auth_type: must be one of NoClientCert, VerifyClientCertIfGiven, "
     "RequireAndVerifyClientCert, got 'Sometimes'"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key",
                            "client_auth_type": "RequireAndVerifyClientCert"}},
     "tls_server_config.client_ca_file: required with client_auth_type RequireAndVerifyClientCert"),
    ({"tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", "min_version": "SSL3"}},
     "tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13, got 'SSL3'"),
    ({"basic_auth_users": {"prometheus": "plaintext"}}, "basic_auth_users.prometheus: must be a bcrypt hash ($2y$...)"),
    ({"http_server_config": {"headers": {"Set-Cookie": "x"}}},
     "http_server_config.headers: 'Set-Cookie' cannot be set (allowed: Strict-Transport-Security, "
     "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"),
    ({"tls_config": {}}, "tls_config: unknown key (allowed: basic_auth_users, http_server_config, tls_server_config)"),
])
def test_an_invalid_web_config_stops_start_up_with_one_line(api, pki, tmp_path, sections, reason):
    path = web_config(tmp_path / "web.yml", **sections)
    proc = start_and_fail(api, path)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert 'msg="invalid web configuration"' in lines[0]
    assert f'err="{reason.format(dir=tmp_path)}"' in lines[0].replace('\\"', '"')
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_prometheus_scrapes_over_tls_with_basic_auth(api, pki, tmp_path):
    path = web_config(tmp_path / "web.yml",
                      tls_server_config={"cert_file": "server.crt", "key_file": "server.key"},
                      basic_auth_users={"prometheus": bcrypt_hash(PASSWORD)})
    assert shutil.which("prometheus")
    with exporter_with(api, path, verify=str(pki["ca"]), auth=("prometheus", PASSWORD)) as exporter:
        scrape = {"job_name": "seekrflow", "scheme": "https", "scrape_interval": "1s", "scrape_timeout": "1s",
                  "tls_config": {"ca_file": str(pki["ca"])},
                  "basic_auth": {"username": "prometheus", "password": PASSWORD},
                  "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}
        with PrometheusServer(scrape_configs=[scrape]) as prometheus:
            rows = prometheus.wait_for('up{job="seekrflow"} == 1')
            success = prometheus.wait_for('seekrflow_ingestion_job_scrape_success{job_id="ij-1"} == 1')
    assert len(rows) == 1 and len(success) == 1
