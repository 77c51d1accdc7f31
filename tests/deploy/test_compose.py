"""docker-compose.yml, .env.example and the Dockerfiles, validated without a Docker engine:
Debian's docker-compose 1.29 parses and checks the file (`config -q`), then structural checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from hangwatch.grafana.constants import GRAFANA_IMAGE, PLUGIN_ID, PLUGIN_VERSION
from hangwatch.platform.settings import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ENV = {"CLICKHOUSE_PASSWORD": "x", "HANGWATCH_GRAFANA_CH_PASSWORD": "y", "GRAFANA_ADMIN_PASSWORD": "z",
       "HANGWATCH_ALERT_WEBHOOK_URL": "http://alerts.example/hook", "HANGWATCH_PRIVACY__HASH_KEY": "k" * 16}


def _compose_bin() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose (Debian's docker-compose 1.29) is missing; deploy/local/bootstrap.sh installs it")
    return exe


def _config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ENV}
    # --env-file (empty): a developer's own .env must not fill in what the test leaves out
    empty = Path(tempfile.gettempdir()) / "hangwatch-test-empty.env"
    empty.write_text("")
    return subprocess.run([_compose_bin(), "-f", str(COMPOSE), "--env-file", str(empty), "config",
                           *(args or ("-q",))], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


def _compose_vars() -> dict[str, bool]:
    """Every ${VAR} of docker-compose.yml -> whether it is required (${VAR:?...})."""
    text = "\n".join(line.split(" #")[0] for line in COMPOSE.read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))
    out: dict[str, bool] = {}
    for name, op in re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)(:?[?-])?", text):
        out[name] = out.get(name, False) or op in (":?", "?")
    return out


def _env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    assert all(len(p) == 2 for p in pairs), "every line of .env.example is NAME=value or a comment"
    return {k.strip(): v for k, v in pairs}


def test_compose_config_is_valid() -> None:
    r = _config(ENV)
    assert r.returncode == 0, r.stderr


def test_compose_refuses_missing_secrets() -> None:
    for name in ("CLICKHOUSE_PASSWORD", "HANGWATCH_PRIVACY__HASH_KEY"):
        r = _config({k: v for k, v in ENV.items() if k != name})
        assert r.returncode != 0 and name in r.stderr


def test_one_set_of_variable_names() -> None:
    """Every ${VAR} the compose file uses is in .env.example and in the README or docs; the
    required ones are exactly those the tests pass; .env.example holds nothing else."""
    used = _compose_vars()
    example = _env_example()
    assert set(example) == set(used), (sorted(set(used) - set(example)), sorted(set(example) - set(used)))
    assert {k for k, required in used.items() if required} == set(ENV)
    docs = (ROOT / "README.md").read_text(encoding="utf-8") + "".join(
        p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
    for name in used:
        assert f"`{name}`" in docs, f"{name} is not documented in README.md or docs/"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ".env.example" in readme and "GF_SECURITY_ADMIN_PASSWORD" not in docs.replace(
        "GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD", "")


def test_compose_starts_from_env_example() -> None:
    """.env.example, as committed, is a complete environment for the compose file."""
    r = _config(_env_example(), "--services")
    assert r.returncode == 0, r.stderr


def test_healthchecks_of_worker_and_sink() -> None:
    s = _services()
    worker, sink = s["worker"], s["sink"]
    port = worker["environment"]["HANGWATCH_METRICS_PORT"]
    test = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/metrics" in test and "hangwatch_ready 1.0" in test
    assert f"127.0.0.1:{sink['environment']['HANGWATCH_METRICS_PORT']}/metrics" in " ".join(sink["healthcheck"]["test"])
    # the probe's script runs: against a fake exposition, ready and not ready
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    for value, code in ((1, 0), (0, 1)):
        reg = CollectorRegistry()
        Gauge("hangwatch_ready", "readiness", registry=reg).set(value)
        script = worker["healthcheck"]["test"][-1].replace(
            f"urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=3).read()", "sys.stdin.buffer.read()")
        r = subprocess.run([sys.executable, "-c", script], input=generate_latest(reg), capture_output=True, check=False)
        assert r.returncode == code, r.stderr
    from hangwatch.sinks.writer import metrics as sink_metrics

    assert "hangwatch_sink_rows_written_total" in " ".join(sink["healthcheck"]["test"])
    assert sink_metrics.ROWS_WRITTEN._name == "hangwatch_sink_rows_written"


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
    assert "GF_INSTALL_PLUGINS" not in s["grafana"]["environment"], "no download at container start"
    assert s["grafana"]["build"]["context"] == "deploy/grafana"
    for name in ("kafka", "clickhouse", "grafana", "worker", "sink"):
        assert "healthcheck" in s[name], name
    assert s["migrate"]["restart"] == "no"
    for name in ("worker", "sink", "simulator", "grafana"):
        assert s[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
    assert s["migrate"]["depends_on"]["clickhouse"] == {"condition": "service_healthy"}
    assert "ports" not in s["worker"] and "container_name" not in s["worker"], "worker must scale with --scale"
    assert s["simulator"]["profiles"] == ["sim"]


def test_grafana_image_bakes_the_plugin() -> None:
    text = (ROOT / "deploy" / "grafana" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM (\S+)", text, re.M).group(1) == GRAFANA_IMAGE  # type: ignore[union-attr]
    assert f"ARG PLUGIN_ID={PLUGIN_ID}" in text and f"ARG PLUGIN_VERSION={PLUGIN_VERSION}" in text
    assert "plugins install" in text and "GF_PATHS_PLUGINS=/opt/grafana-plugins" in text
    assert re.findall(r"^USER (\S+)", text, re.M)[-1] == "472", "back to Grafana's own user"
    tag = _services()["grafana"]["image"]
    assert GRAFANA_IMAGE.split(":")[1] in tag and PLUGIN_VERSION in tag


def test_unused_dependencies_are_gone() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "uvloop" not in text


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
