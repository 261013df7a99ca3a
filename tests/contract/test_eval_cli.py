"""`consensus eval` and `consensus compare` end to end: CLI -> engine -> LiteLLM -> loopback stub."""

import json
import os
import signal
import subprocess
import sys
import time

from tests.contract.test_cli import cli, cli_here
from tests.helpers import ans, make_panel, write_panel


def setup(tmp_path, stub):
    panel = write_panel(tmp_path / "panel.toml", make_panel(stub=stub, synthesizer="judge", max_rounds=1))
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"id": "one", "question": "What is 2+2?", "answer": "4"}\n'
        '{"question": "no answer here"}\n'
        '{"id": "two", "question": "What is 2+3?", "answer": 5, "type": "number"}\n',
        encoding="utf-8",
    )
    for name in ("alice", "bob", "carol"):
        stub.script(name, [{"text": ans("4")}])
    stub.script("judge", [{"text": "The panel agrees: 4.\n\nAgreement: everyone says 4."}])
    return panel, data


def test_eval_scores_a_jsonl_dataset_reports_bad_lines_and_resumes(tmp_path, stub):
    panel, data = setup(tmp_path, stub)
    out = tmp_path / "run"
    p = cli_here("eval", str(data), "--panel-file", str(panel), "--out", str(out), "--concurrency", "1")
    assert p.returncode == 0, p.stderr
    assert "line 2: missing field 'answer'" in p.stderr and "skipped 1 malformed record" in p.stderr
    assert "consensus" in p.stdout and "summary.json" in p.stdout
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["consensus"]["correct"]) for r in records) == [("one", True), ("two", False)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"]["consensus"]["accuracy"] == 0.5 and summary["run"]["dataset"] == str(data)
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    hits = stub.hits()
    assert hits == {"alice": 2, "bob": 2, "carol": 2, "judge": 2}  # unanimous: openings + synthesis
    again = cli_here("eval", os.path.relpath(data), "--panel-file", str(panel), "--out", str(out))  # the same file
    assert again.returncode == 0, again.stderr
    assert "2 of 2 questions already done" in again.stderr and stub.hits() == hits
    both = cli_here("compare", str(out), str(out))
    assert both.returncode == 0 and "50.0%" in both.stdout


def test_eval_and_compare_refuse_bad_input_with_exit_2(tmp_path, stub):
    panel, _ = setup(tmp_path, stub)
    p = cli("eval", "no-such-dataset", "--panel-file", str(panel))
    assert p.returncode == 2 and "unknown dataset 'no-such-dataset'" in p.stderr
    p = cli("eval", str(tmp_path / "missing.jsonl"), "--panel-file", str(panel))
    assert p.returncode == 2 and "dataset file not found" in p.stderr
    p = cli("compare", str(tmp_path / "nowhere"))
    assert p.returncode == 2 and "run directory not found" in p.stderr
    p = cli("eval", str(tmp_path / "missing.jsonl"), "--panel-file", str(panel), "--arm", "single-zed")
    assert p.returncode == 2 and "--arm: model 'single-zed' does not exist" in p.stderr  # before the dataset
    assert stub.hits() == {}


def test_ctrl_c_keeps_finished_questions_and_says_how_to_resume(tmp_path, stub):
    panel, _ = setup(tmp_path, stub)
    # The first question runs (3 openings agree, alice synthesizes); every later call hangs, so the
    # interrupt lands mid-question however slowly this machine runs the test.
    quick, hang = {"text": ans("4"), "delay_s": 0.1}, {"text": ans("4"), "delay_s": 60}
    stub.script("alice", [quick, quick, hang])
    for name in ("bob", "carol"):
        stub.script(name, [quick, hang])
    data = tmp_path / "many.jsonl"
    data.write_text("".join(f'{{"id": "q{i}", "question": "What is {i}+0?", "answer": {i}}}\n' for i in range(8)))
    out = tmp_path / "run"
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    args = [
        sys.executable,
        "-m",
        "consensus",
        "eval",
        str(data),
        "--panel-file",
        str(panel),
        "--out",
        str(out),
        "--concurrency",
        "1",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    records = out / "records.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (records.exists() and records.read_text().count("\n") >= 1):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    kept = len(records.read_text().splitlines())
    assert kept == 1 and "1 of 8 questions are done" in stderr and "Resume with the same command" in stderr
    assert (out / "summary.json").exists()


def test_eval_input_and_output_problems_are_one_line_each(tmp_path, stub):
    panel, data = setup(tmp_path, stub)
    long = tmp_path / "long.jsonl"
    long.write_text(
        '{"id": "big", "question": "%s", "answer": "4"}\n{"id": "ok", "question": "2+2?", "answer": "4"}\n'
        % ("x" * 9000),
        encoding="utf-8",
    )
    out = tmp_path / "d[/]out"  # Rich markup in a path: a MarkupError traceback when it was printed
    p = cli_here("eval", str(long), "--panel-file", str(panel), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "item big:" in p.stderr and "9000 characters" in p.stderr and "skipped" in p.stderr
    assert [json.loads(x)["id"] for x in (out / "records.jsonl").read_text().splitlines()] == ["ok"]
    again = cli_here("eval", str(long), "--panel-file", str(panel), "--out", str(out))
    assert again.returncode == 0 and f"resuming {out}" in again.stderr
    assert cli_here("compare", str(out)).returncode == 0
    p = cli_here("eval", str(data), "--panel-file", str(panel), "--out", str(data / "sub"))  # under a file
    assert p.returncode == 2 and "error:" in p.stderr and "Traceback" not in p.stderr
    p = cli_here("eval", str(data), "--panel-file", str(panel), "--limit", "0")
    assert p.returncode == 2 and "--limit 0 selects no questions" in p.stderr
    (out / "summary.json").write_text('{"n": 3}')
    (out / "records.jsonl").unlink()
    p = cli_here("compare", str(out))
    assert p.returncode == 2 and "summary.json: not a summary" in p.stderr


def test_an_eval_where_every_debate_failed_exits_1_and_a_re_run_asks_again(tmp_path, stub):
    panel, data = setup(tmp_path, stub)
    for name in ("alice", "bob", "carol"):
        stub.script(name, [{"fault": "401"}])
    out = tmp_path / "run"
    p = cli_here("eval", str(data), "--panel-file", str(panel), "--out", str(out))
    assert p.returncode == 1 and "every debate failed (2 of 2)" in p.stderr
    for name in ("alice", "bob", "carol"):
        stub.script(name, [{"text": ans("4")}])  # the key is fixed
    again = cli_here("eval", str(data), "--panel-file", str(panel), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "2 debate(s) that failed before are asked again" in again.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == {"completed": 2}


def test_an_eval_whose_debates_failed_but_an_arm_answered_exits_0(tmp_path, stub):
    panel, data = setup(tmp_path, stub)
    for name in ("bob", "carol"):
        stub.script(name, [{"fault": "401"}])  # alice alone answers: every debate fails, alice's arm does not
    out = tmp_path / "run"
    p = cli_here("eval", str(data), "--panel-file", str(panel), "--out", str(out), "--arm", "consensus,single-alice")
    assert p.returncode == 0, p.stderr
    assert "2 debate(s) failed" in p.stderr and "nothing was measured" not in p.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == {"failed": 2} and summary["arms"]["consensus-single-alice"]["correct"] == 1
