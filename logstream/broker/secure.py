"""A local cluster that only speaks SASL/SCRAM-SHA-512 over TLS (`broker start --secure`).

What it sets up, once, in `<data>/broker/secure/` (mode 0700):
- a CA (`ca.pem`, its key `ca.key`) and a broker certificate for 127.0.0.1 and localhost
  signed by it, generated locally with `openssl` (PEM files; Kafka reads PEM keystores);
- two SCRAM-SHA-512 users, written into the cluster metadata when each node's storage is
  formatted (`kafka-storage format --add-scram`, passed in a 0600 java @argfile so `ps`
  does not show the passwords): `admin` for the brokers among themselves
  and `logstream` for the stack, with random passwords (`credentials.json`, mode 0600);
- `<data>/logstream.env`, the client settings every `logstream` command reads from that data
  folder (`LOGSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL`, the user, its password, the CA):
  ingest, consumers, backfill, export/import and lag then connect over TLS with SCRAM.

Clients reach the brokers only through the SASL_SSL listener; brokers talk to each other
through it too. The KRaft controller listener stays PLAINTEXT, bound to 127.0.0.1 like
everything here. A folder holds a secure cluster or a plaintext one for its whole life.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from logstream.broker.assemble import write_private
from logstream.errors import BrokerError
from logstream.redact import register_secrets
from logstream.settings import SETTINGS_FILE

__all__ = [
    "CLIENT_USER",
    "MECHANISM",
    "SecureMaterial",
    "ensure_material",
    "load_material",
    "settings_env_file",
    "write_client_settings",
]

MECHANISM = "SCRAM-SHA-512"
ADMIN_USER = "admin"
CLIENT_USER = "logstream"
_DAYS = "3650"


@dataclass(frozen=True)
class SecureMaterial:
    folder: Path
    admin_password: str
    client_password: str

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's private key (PKCS#8) and certificate chain, one PEM file."""
        return self.folder / "broker-keystore.pem"

    def scram_args(self) -> list[str]:
        """`kafka-storage format` arguments that create both users at format time."""
        return [
            f"--add-scram={MECHANISM}=[name={user},password={password}]"
            for user, password in (
                (ADMIN_USER, self.admin_password),
                (CLIENT_USER, self.client_password),
            )
        ]

    def server_properties(self) -> dict[str, str]:
        """What a broker's `server.properties` adds for the SASL_SSL listener."""
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{ADMIN_USER}" password="{self.admin_password}";'
        )
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca),
            "ssl.client.auth": "none",
        }


def _credentials_file(folder: Path) -> Path:
    return folder / "credentials.json"


def load_material(broker_root: Path) -> SecureMaterial | None:
    """The secure material of the cluster in `broker_root`, None for a plaintext cluster."""
    folder = broker_root / "secure"
    try:
        data = json.loads(_credentials_file(folder).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BrokerError(f"cannot read {_credentials_file(folder)}: {exc}") from exc
    register_secrets([data["admin_password"], data["client_password"]])
    return SecureMaterial(folder, data["admin_password"], data["client_password"])


def ensure_material(broker_root: Path) -> SecureMaterial:
    """The material in `broker_root/secure`, generated on first use."""
    existing = load_material(broker_root)
    if existing is not None:
        return existing
    folder = broker_root / "secure"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    _generate_certificates(folder)
    material = SecureMaterial(folder, secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    register_secrets([material.admin_password, material.client_password])
    write_private(
        _credentials_file(folder),
        json.dumps(
            {
                "admin_password": material.admin_password,
                "client_password": material.client_password,
                "client_user": CLIENT_USER,
                "mechanism": MECHANISM,
            },
            indent=2,
        )
        + "\n",
    )
    return material


def settings_env_file(data_dir: Path) -> Path:
    return data_dir / SETTINGS_FILE


def write_client_settings(data_dir: Path, bootstrap: str, material: SecureMaterial) -> Path:
    """`<data>/logstream.env`: how every `logstream` command in this folder reaches the
    cluster. Environment variables still win over it."""
    path = settings_env_file(data_dir)
    body = "".join(
        f"{key}={value}\n"
        for key, value in {
            "LOGSTREAM_BOOTSTRAP_SERVERS": bootstrap,
            "LOGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LOGSTREAM_KAFKA_SASL_MECHANISM": MECHANISM,
            "LOGSTREAM_KAFKA_SASL_USERNAME": CLIENT_USER,
            "LOGSTREAM_KAFKA_SASL_PASSWORD": material.client_password,
            "LOGSTREAM_KAFKA_SSL_CA_LOCATION": str(material.ca.resolve()),
        }.items()
    )
    write_private(path, "# written by `logstream broker start --secure`\n" + body)
    return path


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise BrokerError("`broker start --secure` needs openssl (Debian: apt-get install openssl)")
    result = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BrokerError(f"openssl {args[0]} failed: {detail[-1] if detail else 'no output'}")


def _generate_certificates(folder: Path) -> None:
    """A CA, and a broker certificate for 127.0.0.1/localhost signed by it (10 years)."""
    (folder / "broker.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
    )
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", _DAYS, "-subj", "/CN=logstream local CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.crt", "-days", _DAYS, "-extfile", "broker.ext",
        cwd=folder,
    )  # fmt: skip
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.pk8", cwd=folder)
    keystore = (folder / "broker.pk8").read_text() + (folder / "broker.crt").read_text()
    write_private(folder / "broker-keystore.pem", keystore)
    for name in ("ca.key", "broker.key", "broker.pk8"):
        os.chmod(folder / name, 0o600)
    for name in ("broker.csr", "broker.ext"):
        (folder / name).unlink(missing_ok=True)
