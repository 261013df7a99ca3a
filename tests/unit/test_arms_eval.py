"""Research mode's comparison arms (`consensus eval --arm`) on a scripted panel: records, summary, resume."""

import io
import json
import subprocess
import sys

from rich.console import Console

from consensus.arms import Arm
from consensus.errors import ProviderError
from consensus.eval.datasets import EvalItem
from consensus.eval.html import render_html
from consensus.eval.report import compare, render_table, summarize
from consensus.eval.runner import RUN_INFO, run_eval
from consensus.providers.fake import FunctionProvider, Step
from tests.helpers import make_panel

PANEL = make_panel("abc", max_rounds=0)
# question: (gold, answers of a, b, c)
SCRIPT = {"q1": ("4", "4", "5", "4"), "q2": ("9", "8", "9", "7"), "q3": ("6", "6", "6", "6")}
ITEMS = [EvalItem(id=q, question=f"{q}: what is it?", answer=g, type="number") for q, (g, *_) in SCRIPT.items()]


def fake(failing: str | None = None) -> FunctionProvider:
    """Each seat's answer by the question in the prompt; the synthesizer (no schema: free text) states a's."""

    def reply(seat, messages):
        qid = next(q for q in SCRIPT if q in messages[-1].content)
        if seat.name == failing:
            raise ProviderError("auth", "scripted refusal")
        said = SCRIPT[qid]["_abc".index(seat.name)]
        return Step(final=said)

    return FunctionProvider(reply)


def table_text(summary) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render_table(summary))
    return console.export_text()


async def test_the_debate_and_the_arms_answer_every_question_side_by_side(tmp_path):
    arms = [Arm("consensus"), Arm("vote"), Arm("single", "b")]
    run = await run_eval(ITEMS, PANEL, fake(), tmp_path, concurrency=2, arms=arms)
    by_id = {r.id: r for r in run.records}
    assert all(r.debated for r in run.records) and set(by_id["q1"].arms) == {"consensus-vote", "consensus-single-b"}
    q2 = by_id["q2"].arms["consensus-vote"]
    assert q2.tie and q2.extracted is None and not q2.correct and q2.reply.startswith("No majority")
    assert by_id["q1"].arms["consensus-single-b"].extracted == "5" and by_id["q1"].arms["consensus-vote"].correct
    s = summarize(run.records)
    assert list(s["arms"]) == ["consensus", "consensus-vote", "consensus-single-b"]
    assert (s["arms"]["consensus-vote"]["correct"], s["arms"]["consensus-vote"]["ties"]) == (2, 1)
    assert s["arms"]["consensus-single-b"]["correct"] == 2  # 5 (wrong), 9, 6
    assert s["arms"]["consensus-vote"]["llm_calls_per_question"] == 3
    assert s["arms"]["consensus"]["n"] == 3 and s["accuracy"]["round0_vote"]["n"] == 3  # the debate's own, kept
    assert set(s["tests"]["consensus_vs_arms"]) == {"consensus-vote", "consensus-single-b"}
    text = table_text(s)
    assert "arm consensus-vote" in text and "round-0 majority vote" in text and "alone (round 0)" in text
    assert "Comparison arms" in render_html(s, run.records)
    assert json.loads((tmp_path / RUN_INFO).read_text())["arms"] == [a.id for a in arms]


async def test_an_arm_added_on_resume_asks_only_that_arm(tmp_path):
    await run_eval(ITEMS, PANEL, fake(), tmp_path)
    provider = fake()
    run = await run_eval(ITEMS, PANEL, provider, tmp_path, arms=[Arm("consensus"), Arm("single", "c")])
    assert [c.name for c in provider.calls] == ["c", "c", "c"]  # the debates are kept, not paid again
    assert all(r.debated and "consensus-single-c" in r.arms for r in run.records)
    assert json.loads((tmp_path / RUN_INFO).read_text())["arms"] == ["consensus", "consensus-single-c"]
    again = await run_eval(ITEMS, PANEL, fake(), tmp_path, arms=[Arm("single", "c")])
    assert (again.resumed, again.new) == (3, 0)


async def test_a_failed_arm_answer_is_asked_again_on_resume(tmp_path):
    first = await run_eval(ITEMS, PANEL, fake(failing="b"), tmp_path, arms=[Arm("single", "b")])
    assert all(r.arms["consensus-single-b"].status == "failed" for r in first.records)
    assert "b did not answer" in first.records[0].arms["consensus-single-b"].reason
    second = await run_eval(ITEMS, PANEL, fake(), tmp_path, arms=[Arm("single", "b")])
    assert second.new == 3 and any("3 arm answer(s) that failed before" in p for p in second.problems)
    assert all(r.arms["consensus-single-b"].status == "completed" for r in second.records)


async def test_the_resume_warning_counts_only_the_failed_arms_asked_again(tmp_path):
    await run_eval(ITEMS, PANEL, fake(failing="b"), tmp_path, arms=[Arm("single", "b"), Arm("single", "c")])
    provider = fake()
    again = await run_eval(ITEMS, PANEL, provider, tmp_path, arms=[Arm("single", "c")])
    assert provider.calls == [] and again.new == 0  # c answered; b's failures are not asked this time
    assert not any("arm answer(s) that failed before" in p for p in again.problems)


async def test_a_run_of_arms_alone_reports_the_arms_and_no_debate(tmp_path):
    provider = fake()
    run = await run_eval(ITEMS, PANEL, provider, tmp_path, arms=[Arm("sample", "a", 3)])
    assert len(provider.calls) == 9 and {c.name for c in provider.calls} == {"a"}  # no synthesis: no debate
    assert all(not r.debated and r.status == "not_run" for r in run.records)
    s = summarize(run.records)
    assert (s["n"], s["n_questions"], list(s["arms"])) == (0, 3, ["consensus-sample-a-3"])
    assert s["arms"]["consensus-sample-a-3"]["correct"] == 2 and s["status"] == {}  # a: 4, 8, 6
    text = table_text(s)
    assert "arm consensus-sample-a-3" in text and "round-0 majority vote" not in text and "3 questions" in text
    render_html(s, run.records)  # no debate figures to draw: it still renders
    compared = Console(record=True, width=200, file=io.StringIO())
    compared.print(compare([tmp_path]))
    text = compared.export_text()
    assert "arm consensus-sample-a-3" in text and "66.7%" in text
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in text.splitlines() if "│" in line}
    assert lines["panel"] == "a, b, c"  # from run.json: no debate named its seats
    for label in ("consensus", "round-0 vote", "vs best: McNemar p", "vs round-0 vote: McNemar p", "failed debates"):
        assert lines[label] == "—", label  # no debate ran: nothing measured, not 0-100 % or p = 1


async def test_a_round0_tie_keeps_its_tie_break_and_is_counted_beside_the_vote_arms_rule(tmp_path):
    said = {"a": "9", "b": "8", "c": "7"}  # split three ways: the tie-break (seat a) is right, the arm's tie wrong
    provider = FunctionProvider(lambda seat, messages: Step(final=said.get(seat.name, "9")))
    item = EvalItem(id="t1", question="What is 4+5?", answer="9", type="number")
    run = await run_eval([item], PANEL, provider, tmp_path, arms=[Arm("consensus"), Arm("vote")])
    s = summarize(run.records)
    assert s["accuracy"]["round0_vote"]["correct"] == 1  # the figure keeps its meaning
    assert s["arms"]["consensus-vote"]["correct"] == 0 and s["arms"]["consensus-vote"]["ties"] == 1
    ties = s["round0_vote_ties"]
    assert (ties["ties"], ties["tie_break_right"], ties["ties_counted_wrong"]["correct"]) == (1, 1, 0)
    assert "1 round-0 ties broken by seat order above (right on 1)" in table_text(s)
    compared = Console(record=True, width=200, file=io.StringIO())
    compared.print(compare([tmp_path]))
    assert "round-0 vote ties (tie-break right)" in compared.export_text()


def test_scoring_does_not_import_the_arms_it_scores():
    """The arms' result type is for mypy only: importing scoring runs no arm code."""
    code = "import sys, consensus.eval.scoring; print('consensus.arms' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
