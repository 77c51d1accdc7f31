"""A private Kafka broker with a SASL_SSL listener (SCRAM-SHA-512 over TLS) and a private
ClickHouse server with TLS on its secure native port, started with the project's own scripts
(deploy/local/kafka.sh and clickhouse.sh, their opt-in TLS variables) on ports of their own and
a state dir under the test's tmp, with a CA and a server certificate made at test time."""

from __future__ import annotations

import contextlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deploy" / "local"

KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_SASL_SSL_PORT = 39092, 39093, 39094
CH_TCP_PORT, CH_HTTP_PORT, CH_TLS_PORT = 39000, 38123, 39440
SCRAM_USER, SCRAM_PASSWORD = "hangwatch", "s3cret-for-tests"
DATABASE = "hw_secure"  # the URL's path names the project database


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path) -> dict[str, Path]:
    """A CA, and a server certificate for 127.0.0.1/localhost signed by it (PKCS#8 key)."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=hangwatch-test-ca", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.rsa.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "server.rsa.key", "-out", "server.key", cwd=d)
    return {"ca": d / "ca.crt", "cert": d / "server.crt", "key": d / "server.key"}


@dataclass
class SecureServices:
    base: Path

    def __post_init__(self) -> None:
        self.certs = make_certs(self.base / "certs")
        self.script_env = {
            **os.environ, "HANGWATCH_LOCAL_STATE": str(self.base / "state"),
            "KAFKA_PORT": str(KAFKA_PORT), "KAFKA_CONTROLLER_PORT": str(KAFKA_CONTROLLER_PORT),
            "KAFKA_SASL_SSL_PORT": str(KAFKA_SASL_SSL_PORT), "KAFKA_SSL_CERT_PEM": str(self.certs["cert"]),
            "KAFKA_SSL_KEY_PEM": str(self.certs["key"]), "KAFKA_SCRAM_USERS": f"{SCRAM_USER}={SCRAM_PASSWORD}",
            "CH_TCP_PORT": str(CH_TCP_PORT), "CH_HTTP_PORT": str(CH_HTTP_PORT), "CH_TLS_PORT": str(CH_TLS_PORT),
            "CH_TLS_CERT": str(self.certs["cert"]), "CH_TLS_KEY": str(self.certs["key"]),
        }
        self.started: list[str] = []

    def _script(self, name: str, action: str) -> None:
        subprocess.run([str(SCRIPTS / f"{name}.sh"), action], env=self.script_env, check=True,
                       capture_output=True, timeout=150)

    def start(self) -> None:
        for name in ("kafka", "clickhouse"):
            self.started.append(name)  # stopped even if its start failed half-way
            self._script(name, "start")

    def stop(self) -> None:
        for name in reversed(self.started):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._script(name, "stop")

    @property
    def ch_url(self) -> str:
        return f"clickhouses://default@127.0.0.1:{CH_TLS_PORT}/{DATABASE}?ca_certs={self.certs['ca']}"

    def hangwatch_env(self, **overrides: str) -> dict[str, str]:
        """The environment of a hangwatch process that talks to both over TLS (SASL for Kafka)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("HANGWATCH_")}
        env.update({
            "HANGWATCH_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{KAFKA_SASL_SSL_PORT}",
            "HANGWATCH_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "HANGWATCH_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "HANGWATCH_KAFKA__SASL_USERNAME": SCRAM_USER,
            "HANGWATCH_KAFKA__SASL_PASSWORD": SCRAM_PASSWORD,
            "HANGWATCH_KAFKA__SSL_CAFILE": str(self.certs["ca"]),
            "HANGWATCH_CLICKHOUSE__URL": self.ch_url,
        })
        env.update({f"HANGWATCH_{k}": v for k, v in overrides.items()})
        return env
