"""`consensus ask` and `consensus panels` end to end: CLI -> engine -> LiteLLM -> loopback stub."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ans, make_panel, write_panel


def cli(*args, env=None):
    e = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
    e.pop("CONSENSUS_PANEL", None)
    e.pop("CONSENSUS_PANEL_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "consensus", *args], capture_output=True, text=True, env=e, timeout=120
    )


def test_ask_json_end_to_end(tmp_path, stub):
    stub.script("alice", [{"text": ans("Paris")}, {"text": "The panel agrees: Paris."}])
    stub.script("bob", [{"text": ans("Paris")}])
    stub.script("carol", [{"text": ans("Lyon")}, {"text": ans("Paris")}])
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub))
    p = cli("ask", "What is the capital of France?", "--panel-file", str(panel), "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["status"] == "completed" and r["language"] == "en"
    assert [x["agreement"]["score"] for x in r["rounds"]] == [pytest.approx(2 / 3), 1.0]
    assert r["answers"]["carol"]["final_answer"] == "Paris"
    assert r["consensus"]["answer"] == "The panel agrees: Paris." and r["consensus"]["synthesizer"] == "alice"


def cli_here(*args):
    """The same CLI in this process (typer's runner): no second ~6 s LiteLLM import. `ask --json` and Ctrl-C
    keep their own process (test_ask_json_end_to_end, the eval Ctrl-C test)."""
    from typer.testing import CliRunner

    from consensus.cli import app

    r = CliRunner().invoke(app, list(args), env={"CONSENSUS_PANEL": None, "CONSENSUS_PANEL_FILE": None})
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def test_ask_shows_every_answer_and_the_consensus(tmp_path, stub):
    stub.script("alice", [{"text": ans("4")}, {"text": "Four."}])
    stub.script("bob", [{"text": ans("4")}])
    stub.script("carol", [{"text": ans("4")}])
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub))
    p = cli_here("ask", "What is 2+2?", "--panel-file", str(panel), "--rounds", "0", "--language", "fr")
    assert p.returncode == 0, p.stderr
    for needle in ("alice", "bob", "carol", "Consensus", "Four.", "language fr"):
        assert needle in p.stdout
    assert "French" in stub.requests("bob")[0]["messages"][0]["content"]


def test_bad_inputs_exit_2_with_one_clear_line(tmp_path, stub):
    good = write_panel(tmp_path / "panel.toml", make_panel(stub=stub))
    p = cli_here("ask", "   ", "--panel-file", str(good))
    assert p.returncode == 2 and "question: is empty" in p.stderr
    p = cli_here("ask", "x" * 9000, "--panel-file", str(good))
    assert p.returncode == 2 and "question" in p.stderr and "limit" in p.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text() + '[[panelist]]\nname = "bob"\nmodel = "openai/x"\n')
    p = cli_here("panels", "--panel-file", str(bad))
    assert p.returncode == 2 and "panelist[3].name" in p.stderr and "duplicate" in p.stderr and str(bad) in p.stderr
    keyed_judge = '[synthesizer]\nmodel = "openai/judge"\napi_key_env = "JUDGE_KEY_UNSET"\n'
    keyed = write_panel(tmp_path / "panel.toml", make_panel(stub=stub), keyed_judge)
    p = cli_here("ask", "q?", "--panel-file", str(keyed))
    assert p.returncode == 2 and "JUDGE_KEY_UNSET" in p.stderr
    assert stub.hits() == {}  # nothing ran


def test_panels_prints_the_configured_panel(tmp_path, stub):
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub))
    p = cli("panels", "--panel-file", str(panel), "--json")
    assert p.returncode == 0
    assert [s["name"] for s in json.loads(p.stdout)["panelists"]] == ["alice", "bob", "carol"]
