"""`hangwatch demo` end to end, shortened: history with a spike, then live traffic, against the
broker the test command started (HANGWATCH_KAFKA__BOOTSTRAP_SERVERS, as every integration
test), into an embedded store of its own. Flags and a spike alert must be stored, and shown in
Chinese in the summary it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

_COUNT = """
import json, sys
from hangwatch.platform.settings import Settings
from hangwatch.sinks.backends import database_name, open_backend
s = Settings()
b = open_backend(s.clickhouse)
db = database_name(s.clickhouse)
out = {
    "events": b.query(f"SELECT count() FROM {db}.call_events FINAL").scalar(),
    "flags": b.query(f"SELECT uniqExact(flag_id) FROM {db}.borrower_flags WHERE rule_id = 'repeated_refusal'").scalar(),
    "firing": b.query(f"SELECT groupUniqArray(value) FROM {db}.hangup_alerts WHERE status = 'firing'").scalar(),
}
b.close()
print(json.dumps(out))
"""


def test_demo_shows_flags_and_a_spike_alert(tmp_path: Path) -> None:
    env = dict(os.environ)
    env.pop("HANGWATCH_CLICKHOUSE__URL", None)  # the demo's store: embedded (chdb)
    env["HANGWATCH_CLICKHOUSE__EMBEDDED_PATH"] = str(tmp_path / "chdb")
    env["HANGWATCH_LANGUAGE"] = "zh-CN"
    env["COLUMNS"] = "200"
    demo = subprocess.run([sys.executable, "-m", "hangwatch", "demo", "--duration", "25", "--rate", "100",
                           "--history-hours", "2"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    shown = demo.stderr + demo.stdout
    assert demo.returncode == 0, shown[-4000:]

    stored = subprocess.run([sys.executable, "-c", _COUNT], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert stored.returncode == 0, stored.stderr[-2000:]
    counts = json.loads(stored.stdout.strip().splitlines()[-1])
    assert counts["events"] > 10_000
    assert counts["flags"] > 0
    assert "shanghai-pudong" in counts["firing"]  # the injected spike fired

    # shown: the summary in Chinese, with the glossary's words and display names
    assert "被标记借款人" in shown and "多次拒绝/挂断" in shown
    assert "突增告警" in shown and "分行 上海浦东" in shown and "告警中" in shown
    assert "挂断率" in shown and "拒接率" in shown
    assert "HANGWATCH_WORKER__GRACE_S=" in shown
    assert "演示结束" in shown and "hangwatch query" in shown
