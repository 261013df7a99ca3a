"""The README's first command, for real: the embedded local panel answers with no keys and no network."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.local_model
@pytest.mark.timeout(600)
def test_consensus_ask_json_on_the_default_local_panel():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENSUS_PANEL")}
    p = subprocess.run(
        [sys.executable, "-m", "consensus", "ask", "What is the capital of France?", "--json"],
        capture_output=True, text=True, env=env, timeout=580,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["status"] == "completed", r.get("reason")
    assert [x["model"] for x in r["panel"]] == ["local/smollm2"] * 3
    assert len(r["answers"]) == 3 and all(a["answer"].strip() for a in r["answers"].values())
    assert r["consensus"]["answer"].strip() and r["consensus"]["synthesizer"] in r["answers"]
    assert r["usage"]["cost_usd"] == 0 and r["usage"]["llm_calls"] >= 4
