"""docker-compose.yml and deploy/Dockerfile, validated without a Docker engine: Debian's
docker-compose 1.29 parses and checks the file (`config -q`), then structural checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hangwatch.grafana.constants import GRAFANA_IMAGE, PLUGIN_ID, PLUGIN_VERSION
from hangwatch.platform.settings import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV = {"CLICKHOUSE_PASSWORD": "x", "HANGWATCH_GRAFANA_CH_PASSWORD": "y", "GRAFANA_ADMIN_PASSWORD": "z",
       "HANGWATCH_ALERT_WEBHOOK_URL": "http://alerts.example/hook"}


def _compose_bin() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose (Debian's docker-compose 1.29) is missing; deploy/local/bootstrap.sh installs it")
    return exe


def _config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ENV}
    return subprocess.run([_compose_bin(), "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


def test_compose_config_is_valid() -> None:
    r = _config(ENV)
    assert r.returncode == 0, r.stderr


def test_compose_refuses_missing_secrets() -> None:
    r = _config({k: v for k, v in ENV.items() if k != "CLICKHOUSE_PASSWORD"})
    assert r.returncode != 0 and "CLICKHOUSE_PASSWORD" in r.stderr


def _services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def test_services_images_and_order() -> None:
    s = _services()
    assert set(s) == {"kafka", "clickhouse", "migrate", "worker", "sink", "simulator", "grafana"}
    for name, svc in s.items():
        if "image" in svc and "build" not in svc:
            assert re.search(r":\d+(\.\d+)+", svc["image"]), f"{name}: pin the image version"
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in s["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, single node
    assert s["grafana"]["image"] == GRAFANA_IMAGE
    assert s["grafana"]["environment"]["GF_INSTALL_PLUGINS"] == f"{PLUGIN_ID} {PLUGIN_VERSION}"
    for name in ("kafka", "clickhouse", "grafana"):
        assert "healthcheck" in s[name], name
    assert s["migrate"]["restart"] == "no"
    for name in ("worker", "sink", "simulator", "grafana"):
        assert s[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert s["migrate"]["depends_on"]["clickhouse"] == {"condition": "service_healthy"}
    assert "ports" not in s["worker"] and "container_name" not in s["worker"], "worker must scale with --scale"
    assert s["simulator"]["profiles"] == ["sim"]


def test_grafana_mounts_exist() -> None:
    for svc in ("grafana", "clickhouse"):
        for vol in _services()[svc]["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), src


def test_no_secret_literals() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for line in text.splitlines():
        if re.search(r"PASSWORD\s*:", line) and "GRAFANA_CH_PASSWORD: ${" not in line:
            assert "${" in line, line


def test_dockerfile() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    base = re.search(r"^FROM (\S+)", text, re.M)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base.group(1)), "slim, pinned base"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "runs as non-root"
    assert "pip install" in text
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert ".env" in ignore and ".venv" in ignore and ".git" in ignore


def test_clickhouse_grafana_user_is_read_only() -> None:
    text = Path(ROOT / "deploy/grafana/clickhouse/grafana-user.xml").read_text(encoding="utf-8")
    assert "<readonly>2</readonly>" in text and 'from_env="HANGWATCH_GRAFANA_CH_PASSWORD"' in text
