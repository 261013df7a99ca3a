"""Third-party evaluation suites against the OpenAI-compatible endpoint: Inspect AI runs the quiz of
tests/data/suites with the very command docs/suites.md gives, on a panel of the loopback stub (inspect -> the
service under uvicorn -> engine -> LiteLLM -> stub); and log-probabilities, which no arm has, are a 400."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.api.conftest import stub_panel
from tests.helpers import SEATS, ans

ROOT = Path(__file__).resolve().parents[2]
QUIZ = ROOT / "tests/data/suites/quiz.py"
TARGETS = {q["id"]: q["target"] for q in map(json.loads, QUIZ.with_name("quiz.jsonl").read_text().splitlines())}
WRONG = {"author": "Marlowe"}  # the one question the scripted panel gets wrong


def inspect_command() -> list[str]:
    """`inspect`, or a skip saying why; under CI=true (where the dev extra installs it) a failure instead."""
    if importlib.util.find_spec("inspect_ai") is None:  # not imported here: it is heavy, and the command runs it
        reason = "Inspect AI is not installed: pip install -e '.[dev]' (or pip install inspect-ai)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    found = shutil.which("inspect", path=str(Path(sys.executable).parent)) or shutil.which("inspect")
    return [found] if found else [sys.executable, "-m", "inspect_ai"]


def script_quiz(stub) -> dict[str, str]:
    """Every seat answers each question in the quiz's order (the eval runs one sample at a time), all alike; alice
    then synthesizes. What the panel's consensus will be, per question."""
    answers = {qid: WRONG.get(qid, target) for qid, target in TARGETS.items()}
    stub.script("alice", [s for a in answers.values() for s in ({"text": ans(a)}, {"text": f"The panel agrees: {a}."})])
    for name in SEATS[1:]:
        stub.script(name, [{"text": ans(a)} for a in answers.values()])
    return {qid: f"The panel agrees: {a}." for qid, a in answers.items()}


def test_inspect_ai_scores_the_panel_through_the_openai_endpoint(make_service, stub, tmp_path):
    """Each sample is one real debate (three openings and a synthesis at the stub), its reply the consensus, scored
    by Inspect's own `includes` scorer: 4 of 5 right."""
    command = inspect_command()
    srv = make_service(stub_panel(stub, max_rounds=0))
    consensus = script_quiz(stub)
    logs = tmp_path / "logs"
    run = subprocess.run(
        [
            *command,
            "eval",
            str(QUIZ.relative_to(ROOT)),  # Inspect 0.3.285 cannot load a task from an absolute path
            "--model",
            "openai-api/council/consensus",
            "--model-base-url",
            f"{srv.url}/v1",
            "--max-connections",
            "1",
            "--log-dir",
            str(logs),
            "--log-format",
            "json",
            "--display",
            "plain",
        ],
        env={**os.environ, "COUNCIL_API_KEY": "unused-on-an-open-loopback-service", "NO_COLOR": "1"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "accuracy  0.800" in run.stdout, run.stdout
    [path] = logs.glob("*.json")
    log = json.loads(path.read_text())
    assert log["status"] == "success", log.get("error")
    assert log["results"]["scores"][0]["metrics"]["accuracy"]["value"] == pytest.approx(0.8)
    got = {s["id"]: (s["output"]["completion"], s["scores"]["includes"]["value"]) for s in log["samples"]}
    assert got == {qid: (text, "I" if qid in WRONG else "C") for qid, text in consensus.items()}
    assert stub.hits() == {"alice": 10, "bob": 5, "carol": 5}  # per question: three openings, one synthesis
    usage = log["stats"]["model_usage"]["openai-api/council/consensus"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0  # the debates' usage, summed over the calls


@pytest.mark.parametrize("field, value", [("logprobs", True), ("top_logprobs", 3)])
def test_log_probabilities_are_a_400_naming_the_field(service, stub, field, value):
    """A consensus has no token probabilities: asking for them is a 400 naming the field (code
    logprobs_unavailable) before any model is called; logprobs=false is the default and answers."""
    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key="unused", max_retries=0)
    hi = [{"role": "user", "content": "What is the capital of France?"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="consensus", messages=hi, **{field: value})
    assert info.value.body["param"] == field and info.value.body["code"] == "logprobs_unavailable"
    assert "generative tasks" in info.value.body["message"]
    assert stub.hits() == {}
    for name in SEATS:
        stub.script(name, [{"text": ans("Paris")}])
    reply = client.chat.completions.create(model="consensus", messages=hi, logprobs=False, extra_body={"rounds": 0})
    assert reply.choices[0].message.content and reply.choices[0].logprobs is None
