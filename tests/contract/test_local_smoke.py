"""The README's first command, for real: the embedded local panel answers with no keys and no network."""

import json
import os
import subprocess
import sys

import pytest

# `consensus` as the console script runs it, telling on exit whether LiteLLM was ever imported.
WATCH_LITELLM = (
    "import atexit, sys\n"
    "atexit.register(lambda: print('litellm imported:', 'litellm' in sys.modules, file=sys.stderr))\n"
    "sys.argv[0] = 'consensus'\n"
    "from consensus.cli import main\n"
    "main()\n"
)


@pytest.mark.local_model
@pytest.mark.timeout(600)
def test_consensus_ask_json_on_the_default_local_panel():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENSUS_PANEL")}
    p = subprocess.run(
        [sys.executable, "-c", WATCH_LITELLM, "ask", "What is the capital of France?", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=580,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "litellm imported: False" in p.stderr  # the default panel runs without LiteLLM (seconds of import)
    r = json.loads(p.stdout)
    assert r["status"] == "completed", r.get("reason")
    assert [x["model"] for x in r["panel"]] == ["local/smollm2"] * 3
    assert len(r["answers"]) == 3 and all(a["answer"].strip() for a in r["answers"].values())
    c = r["consensus"]
    # What the user sees passed the checks, or is the verified majority's answer labelled as such: never the
    # prompt's scaffolding (the 135M synthesizer echoed its data fence as "the consensus" before the guard).
    assert c["answer"].strip() and "DATA-" not in c["answer"] and "<<<" not in c["answer"]
    if c["source"] == "majority_answer":
        assert c["synthesizer"] is None and c["fallback"] and "Majority answer" in c["answer"]
    else:
        assert c["synthesizer"] in r["answers"] and all(check["passed"] for check in c["checks"])
    assert {check["name"] for check in c["checks"]} >= {"not_empty", "no_scaffolding", "majority_answer", "language"}
    assert r["usage"]["cost_usd"] == 0 and r["usage"]["llm_calls"] >= 4
