"""The eval harness against a scripted panel whose answers are known: every figure checked by hand."""

import asyncio
import json
import re
from collections import Counter

import pytest

from consensus.errors import ProviderError
from consensus.eval.datasets import EvalItem
from consensus.eval.html import render_html
from consensus.eval.report import compare, load_summary, render_table, summarize
from consensus.eval.runner import RECORDS, panel_fingerprint, read_records, run_eval
from consensus.eval.scoring import extract_answer
from consensus.eval.stats import mcnemar_exact, paired_bootstrap, wilson_interval
from consensus.guard import CHECKS
from consensus.providers.base import Completion
from consensus.types import Usage
from tests.helpers import ans, make_panel

ERR = None  # a scripted outage
CHOICES = ["Lyon", "Paris", "Nice"]
# id: (type, gold, [round-0 a, b, c], [round-1 a, b, c] or None, synthesizer text or None)
SCRIPT = {
    "q01": ("number", "4", ["4", "4", "4"], None, "4"),
    "q02": (
        "number",
        "10",
        ["10", "12", "12"],
        ["10", "10", "12"],
        "The panel settles on 10.\n\nAgreement: two panelists say 10.\n\nDissent: Panelist C says 12.",
    ),
    "q03": ("number", "7", ["7", "7", "9"], ["7", "9", "9"], "The answer is 9."),
    "q04": ("number", "3", ["5", "3", "6"], ["3", "3", "3"], "3"),
    "q05": (
        "choice",
        "B",
        ["B", "C", "C"],
        ["B", "B", "C"],
        "The panel concludes (B).\n\nDissent: Panelist C chose C.",
    ),
    "q06": (
        "text",
        "Paris",
        ["Paris", "Paris", "Lyon"],
        ["Paris", "Paris", "Paris"],
        "Paris is the capital of France.",
    ),
    "q07": ("number", "42", [ERR, "41", "41"], None, "41"),
    "q08": ("number", "100", ["100", "90", "80"], ["90", "90", "80"], "Final answer: 90"),
    "q09": ("number", "8", ["8", "8", "8"], None, "The answer is 9."),
    "q10": ("number", "5", [ERR, ERR, ERR], None, None),
}
SEATS = ("a", "b", "c")


def items(ids=None):
    out = []
    for qid, (kind, gold, *_rest) in SCRIPT.items():
        if ids is None or qid in ids:
            choices = CHOICES if kind == "choice" else None
            out.append(EvalItem(id=qid, question=f"{qid}: what is it?", answer=gold, type=kind, choices=choices))
    return out


PANEL = make_panel(SEATS, max_rounds=1)


class QuestionFake:
    """Answers by the question id found in the prompt and by round; schema=None is the synthesis."""

    def __init__(self, delay_s=0.0):
        self.delay_s = delay_s
        self.calls: Counter[tuple[str, str]] = Counter()

    async def complete(self, seat, messages, *, timeout_s, schema=None, on_delta=None):
        qid = next(k for k in SCRIPT if k in messages[-1].content)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
        _, _, r0, r1, synth = SCRIPT[qid]
        if schema is None:
            self.calls[(qid, "synth")] += 1
            return Completion(text=synth, usage=usage, cost_usd=0.001)
        n = self.calls[(qid, seat.name)]
        self.calls[(qid, seat.name)] += 1
        answer = (r0 if n == 0 else r1)[SEATS.index(seat.name)]
        if answer is ERR:
            raise ProviderError("server", "scripted outage")
        text = ans(answer, f"I think {answer}.", 0.7)
        return Completion(text=text, usage=usage, cost_usd=0.001)


def stable(summary):
    """A summary without what depends on the clock."""
    return {k: v for k, v in summary.items() if k not in ("latency_ms", "run")}


def acc(k, n):
    return {"correct": k, "n": n, "accuracy": k / n, "ci95": list(wilson_interval(k, n))}


async def test_scripted_panel_gives_the_hand_computed_figures(tmp_path):
    run = await run_eval(items(), PANEL, QuestionFake(), tmp_path, concurrency=3)
    s = summarize(run.records)
    assert s["n"] == 10 and s["panelists"] == ["a", "b", "c"]
    # Round 0 alone: a right on q01-03,05,06,08,09; b on q01,03,04,06,09; c on q01,09. Errors count as wrong.
    assert s["accuracy"]["panelists"] == {"a": acc(7, 10), "b": acc(5, 10), "c": acc(2, 10)}
    assert s["best_panelist"] == "a"
    # Round-0 vote right on q01,03,06,08 (tie 100/90/80 -> first seat),09; q04 tie goes to a's wrong 5.
    assert s["accuracy"]["round0_vote"] == acc(5, 10)
    assert s["accuracy"]["final_vote"] == acc(6, 10)  # q01,02,04,05,06,09
    # q09's synthesizer states 9 against the verified majority 8: the guard rejects it twice and the majority
    # answer stands (before the guard, the consensus flipped q09 from right to wrong).
    assert s["accuracy"]["consensus"] == acc(6, 10)  # q01,02,04,05,06,09
    rounds = s["flips"]["rounds"]
    assert len(rounds) == 1 and (rounds[0]["wrong_to_right"], rounds[0]["right_to_wrong"]) == (5, 2)
    assert rounds[0]["by_panelist"] == {
        "a": {"wrong_to_right": 1, "right_to_wrong": 1},  # q04 5->3, q08 100->90
        "b": {"wrong_to_right": 2, "right_to_wrong": 1},  # q02 12->10, q05 C->B; q03 7->9
        "c": {"wrong_to_right": 2, "right_to_wrong": 0},  # q04 6->3, q06 Lyon->Paris
    }
    assert s["flips"]["round0_vote_to_final_vote"] == {"wrong_to_right": 3, "right_to_wrong": 2}
    assert s["flips"]["final_vote_to_consensus"] == {"wrong_to_right": 0, "right_to_wrong": 0}
    vs_best = s["tests"]["consensus_vs_best_panelist"]
    assert (vs_best["against"], vs_best["b"], vs_best["c"]) == ("a", 1, 2)  # b: q04; c: q03, q08
    assert vs_best["mcnemar_p"] == pytest.approx(1.0) == mcnemar_exact(1, 2)
    cons = [True, True, False, True, True, True, False, False, True, False]
    best = [True, True, True, False, True, True, False, True, True, False]
    # 4 discordant pairs: the bootstrap's p is withheld (it collapses on so few), its CI is kept
    assert vs_best["bootstrap"] == {**paired_bootstrap(cons, best, iterations=10_000), "p_value": None}
    vs_vote = s["tests"]["consensus_vs_round0_vote"]
    assert (vs_vote["b"], vs_vote["c"], vs_vote["mcnemar_p"]) == (3, 2, 1.0)  # b: q02,04,05; c: q03,08
    buckets = {b["label"]: (b["correct"], b["n"]) for b in s["agreement_vs_accuracy"]}
    assert buckets == {"[0, 0.5)": (0, 0), "[0.5, 0.8)": (2, 4), "[0.8, 1]": (4, 5)}  # q10 failed: in none
    assert s["status"] == {"completed": 8, "degraded": 1, "failed": 1}
    assert s["panelist_errors"] == {"a": {"server": 2}, "b": {"server": 1}, "c": {"server": 1}}
    assert s["failures"][0]["id"] == "q10" and "fewer than 2 panelists" in s["failures"][0]["reason"]
    # 59 calls (4 of them failed, no tokens), 15 tokens and $0.001 per successful call; q09's synthesis is written
    # three times (the synthesizer twice, a fallback seat once), each rejected by the guard.
    assert s["usage"]["llm_calls_per_question"] == pytest.approx(5.9)
    assert s["usage"]["tokens_per_question"] == pytest.approx(82.5)  # 55 successful calls x 15 tokens / 10
    assert s["usage"]["cost_usd_per_question"] == pytest.approx(0.0055)
    assert s["unreadable"] == {"consensus": 0, "round0_answers": 0}
    assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p95"] >= s["latency_ms"]["p50"]


async def test_each_question_is_one_jsonl_record_with_every_round(tmp_path):
    await run_eval(items(), PANEL, QuestionFake(), tmp_path, concurrency=2)
    lines = (tmp_path / RECORDS).read_text().splitlines()
    assert sorted(json.loads(x)["id"] for x in lines) == sorted(SCRIPT)
    r = {json.loads(x)["id"]: json.loads(x) for x in lines}["q02"]
    assert [[(a["panelist"], a["final_answer"], a["correct"]) for a in rnd["answers"]] for rnd in r["rounds"]] == [
        [("a", "10", True), ("b", "12", False), ("c", "12", False)],
        [("a", "10", True), ("b", "10", True), ("c", "12", False)],
    ]
    assert r["round0_vote"]["extracted"] == "12" and not r["round0_vote"]["correct"]
    assert r["final_vote"]["extracted"] == "10" and r["final_vote"]["correct"]
    assert r["consensus"]["extracted"] == "10" and r["consensus"]["correct"]  # the Dissent's 12 is not read
    assert r["llm_calls"] == 7 and r["tokens"] == 105 and r["status"] == "completed"
    assert [rnd["agreement"] for rnd in r["rounds"]] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]
    run_info = json.loads((tmp_path / "run.json").read_text())
    assert run_info["language"] == "en" and run_info["panel_fingerprint"]["max_rounds"] == 1


async def test_resuming_skips_finished_questions_and_gives_the_same_summary(tmp_path):
    whole = await run_eval(items(), PANEL, QuestionFake(), tmp_path / "whole", concurrency=2)
    first = await run_eval(items({"q01", "q02", "q03", "q04"}), PANEL, QuestionFake(), tmp_path / "parts")
    fake = QuestionFake()
    rest = await run_eval(items(), PANEL, fake, tmp_path / "parts", concurrency=2)
    assert (first.new, rest.resumed, rest.new) == (4, 4, 6)
    assert not any(qid in {"q01", "q02", "q03", "q04"} for qid, _ in fake.calls)
    assert stable(summarize(rest.records)) == stable(summarize(whole.records))


async def test_a_resume_with_a_smaller_limit_is_summarised_and_compared_on_its_own_items(tmp_path):
    """records.jsonl keeps all 10 answers; the run now covers 4, and `eval compare` counted all 10."""
    await run_eval(items(), PANEL, QuestionFake(), tmp_path / "r", concurrency=2)
    four = await run_eval(items({"q01", "q02", "q03", "q04"}), PANEL, QuestionFake(), tmp_path / "r")
    assert (four.resumed, four.new, len(four.records)) == (4, 0, 4)
    assert len(read_records(tmp_path / "r" / RECORDS)[0]) == 10
    assert stable(load_summary(tmp_path / "r")) == stable(
        summarize(four.records, json.loads((tmp_path / "r" / "run.json").read_text()))
    )
    assert load_summary(tmp_path / "r")["n"] == 4 and "item_ids" not in load_summary(tmp_path / "r")["run"]


async def test_an_interrupted_run_keeps_what_finished_and_resumes_to_the_same_summary(tmp_path):
    whole = await run_eval(items(), PANEL, QuestionFake(), tmp_path / "whole", concurrency=2)
    task: asyncio.Task | None = None

    def stop_after_three(done, total):
        if done >= 3 and task is not None:
            task.cancel()

    task = asyncio.create_task(
        run_eval(items(), PANEL, QuestionFake(delay_s=0.01), tmp_path / "cut", concurrency=2, progress=stop_after_three)
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    kept, problems = read_records(tmp_path / "cut" / RECORDS)
    assert 3 <= len(kept) < 10 and problems == []
    resumed = await run_eval(items(), PANEL, QuestionFake(), tmp_path / "cut", concurrency=2)
    assert resumed.resumed == len(kept) and resumed.new == 10 - len(kept)
    assert stable(summarize(resumed.records)) == stable(summarize(whole.records))


async def test_a_half_written_last_line_is_dropped_reported_and_re_run(tmp_path):
    await run_eval(items({"q01", "q02"}), PANEL, QuestionFake(), tmp_path)
    with (tmp_path / RECORDS).open("a") as fh:
        fh.write('{"id": "q03", "question": "q03: wh')
    fake = QuestionFake()
    run = await run_eval(items({"q01", "q02", "q03"}), PANEL, fake, tmp_path)
    assert run.resumed == 2 and run.new == 1 and "half-written" in run.problems[0]
    assert {qid for qid, _ in fake.calls} == {"q03"}
    assert len((tmp_path / RECORDS).read_text().splitlines()) == 3


async def test_resuming_refuses_a_different_panel(tmp_path):
    await run_eval(items({"q01"}), PANEL, QuestionFake(), tmp_path)
    with pytest.raises(ValueError, match="its panel differs"):
        await run_eval(
            items({"q01"}), make_panel(SEATS, seat={"temperature": 0.5}, max_rounds=1), QuestionFake(), tmp_path
        )


async def test_html_report_is_self_contained_and_escapes_dataset_text(tmp_path):
    bad = EvalItem(id="q01", question="q01: <script>alert(1)</script> what?", answer="4", type="number")
    run = await run_eval([bad, *items({"q02", "q05"})], PANEL, QuestionFake(), tmp_path)
    page = render_html(summarize(run.records, {"dataset": "<b>x</b>"}), run.records)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert not re.search(r"\b(src|href)\s*=", page) and "http" not in page and "@import" not in page
    assert page.count("<svg") == 3 and '<meta charset="utf-8">' in page


async def test_table_and_compare_render_every_run(tmp_path):
    await run_eval(items(), PANEL, QuestionFake(), tmp_path / "one")
    s = load_summary(tmp_path / "one")
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(render_table(s))
    console.print(compare([tmp_path / "one", tmp_path / "one"]))
    text = console.export_text()
    assert "a alone (round 0) *best" in text and "70.0%" in text and "p=1" in text
    assert "consensus" in text and "wrong→right 5 · right→wrong 2" in text and text.count(str(tmp_path / "one")) >= 2
    with (tmp_path / "one" / RECORDS).open("a") as fh:
        fh.write('{"id": "broken"\n')  # compare left such lines out without a word; now it says so
    problems: list[str] = []
    compare([tmp_path / "one"], problems)
    assert len(problems) == 1 and "unreadable record" in problems[0] and "left out" in problems[0]


@pytest.mark.parametrize(
    ("text", "kind", "want"),
    [
        ("Janet sells 16 - 3 - 4 = 9 eggs at $2, so she makes $18 a day.", "number", "18"),
        ("$1,234.50", "number", "1234.5"),
        ("The answer is 9.\n\n**Agreement:** A and B.\n\n**Dissent:** Panelist C says 12.", "number", "9"),
        ("Working...\nFinal answer: 42\nConfidence 0.9", "number", "42"),
        ("no idea", "number", None),
        ("La réponse est 3,5.", "number", "3.5"),  # read as 5: a decimal comma
        ("La respuesta es 42.\n\nAcuerdo: todos.\n\nDisidencia: el Panelista C dijo 41.", "number", "42"),  # was 41
        ("La réponse est 42.\n\n**Désaccord :** le panéliste C dit 41.", "number", "42"),
        ("उत्तर 42 है।\n\nअसहमति: C ने 41 कहा।", "number", "42"),
        ("Il coûte 12,50 €.", "number", "12.5"),
        ("Il coûte 1.234,50 €.", "number", "1234.5"),  # read as 1.234
        ("A is wrong; the capital is B.", "choice", "B"),  # A is named only to be rejected
        ("values 1,2,3", "number", "1"),  # a list, not 2,3 read as 2.3
        ("(b)", "choice", "B"),
        ("The correct answer is C because A is wrong.", "choice", "C"),
        ("A is correct.", "choice", "A"),  # the letter, not the article: read as unreadable, only for A
        ("A is the answer", "choice", "A"),
        ("A cat sat on the mat.", "choice", None),  # the article
        ("Option A is wrong, so the answer is C.", "choice", "C"),  # was A: the first option named
        ("The panel rejects option B; the answer is C.", "choice", "C"),
        ("Option A or option B, hard to say.", "choice", None),
        ("Paris", "choice", "B"),
        ("It must be Nice, on the coast.", "choice", "C"),
        ("A city in France: B fits.", "choice", "B"),
        ("B or C", "choice", None),
        ("  Paris  ", "text", "Paris"),
    ],
)
def test_extract_answer_reads_the_documented_forms(text, kind, want):
    assert extract_answer(text, kind, CHOICES if kind == "choice" else None) == want


async def test_an_out_that_is_a_file_or_a_broken_run_json_is_a_clear_error(tmp_path):
    """Both ended in a traceback (FileExistsError) or an error naming no file."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        await run_eval(items(), PANEL, QuestionFake(), afile, concurrency=1)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text('{"dataset": "x"\n')
    with pytest.raises(ValueError, match="run.json is not readable JSON"):
        await run_eval(items(), PANEL, QuestionFake(), broken, concurrency=1)
    assert afile.read_text() == "x" and (broken / "run.json").read_text() == '{"dataset": "x"\n'  # nothing lost


def test_bootstrap_p_is_withheld_below_ten_discordant_pairs_and_kept_above():
    from consensus.eval.report import _paired

    few = _paired([True] * 3, [False] * 3, "x")  # p was 0.0001 (McNemar's exact p: 0.25)
    assert few["bootstrap"]["p_value"] is None and few["mcnemar_p"] == pytest.approx(0.25)
    assert few["bootstrap"]["ci_low"] == few["bootstrap"]["ci_high"] == 1.0
    many = _paired([True] * 8 + [False] * 4 + [True] * 10, [False] * 8 + [True] * 4 + [True] * 10, "x")
    assert 0 < many["bootstrap"]["p_value"] < 1 and many["b"] + many["c"] == 12


async def test_resume_asks_again_what_the_dataset_now_states_differently_and_what_failed(tmp_path):
    """Records were reused by id alone: ids default to line numbers, and a corrected gold kept its old score."""
    await run_eval(items(), PANEL, QuestionFake(), tmp_path)  # q10's debate fails
    corrected = [i.model_copy(update={"answer": "999"}) if i.id == "q02" else i for i in items()]
    fake = QuestionFake()
    again = await run_eval(corrected, PANEL, fake, tmp_path)
    assert (again.resumed, again.new) == (8, 2) and {qid for qid, _ in fake.calls} == {"q02", "q10"}
    assert any("no longer match" in p and "q02" in p for p in again.problems)
    assert any("1 debate(s) that failed before" in p for p in again.problems)
    stored, _ = read_records(tmp_path / RECORDS)  # the re-run's line supersedes the old one
    assert stored["q02"].gold == "999" and [r.gold for r in again.records if r.id == "q02"] == ["999"]


async def test_a_second_run_into_the_same_directory_is_refused_while_the_first_writes(tmp_path):
    """Two runs into one --out asked every question twice (and paid twice)."""
    first = asyncio.create_task(run_eval(items(), PANEL, QuestionFake(delay_s=0.05), tmp_path))
    await asyncio.sleep(0.1)
    with pytest.raises(ValueError, match="in use by another"):
        await run_eval(items(), PANEL, QuestionFake(), tmp_path)
    assert (await first).new == 10
    assert (await run_eval(items(), PANEL, QuestionFake(), tmp_path)).resumed == 9  # free again; q10 re-asked


async def test_resume_compares_settings_as_they_act_and_says_what_differs(tmp_path):
    """--rounds 1 and the panel's max_rounds 1 are the same run; a refusal names the old and the new value."""
    panel = PANEL
    await run_eval(items({"q01"}), panel, QuestionFake(), tmp_path, rounds=None)
    same = await run_eval(items({"q01"}), panel, QuestionFake(), tmp_path, rounds=panel.debate.max_rounds)
    assert same.resumed == 1
    with pytest.raises(ValueError, match=r"rounds 1 then, 0 now"):
        await run_eval(items({"q01"}), panel, QuestionFake(), tmp_path, rounds=0)
    with pytest.raises(ValueError, match=r"language 'en' then, 'fr' now"):
        await run_eval(items({"q01"}), panel, QuestionFake(), tmp_path, language="fr")


async def test_a_run_json_with_a_relative_dataset_path_resumes(tmp_path, monkeypatch):
    """run.json files written before paths were stored resolved hold the path as typed: their resume was refused."""
    monkeypatch.chdir(tmp_path)
    info = {"dataset": "data/x.jsonl", "seed": None, "limit": None}
    await run_eval(items({"q01"}), PANEL, QuestionFake(), tmp_path / "r", run_info=info)
    again = await run_eval(
        items({"q01"}),
        PANEL,
        QuestionFake(),
        tmp_path / "r",
        run_info={**info, "dataset": str(tmp_path / "data" / "x.jsonl")},
    )
    assert again.resumed == 1


# The guard in research mode: a second scripted panel whose synthesizer is rejected in known ways.
# id: (type, gold, [a, b, c] final answers, the analyst's reply or None, the synthesis writings in call order)
PARIS = "Paris, because it is the capital."
CLAIM_MAP = json.dumps(
    {
        "claims": [
            {
                "text": "Paris",
                "asserts": [{"panelist": "A", "quote": "Paris"}, {"panelist": "B", "quote": "Paris"}],
                "contradicts": [],
            },
            {"text": "Lyon", "asserts": [{"panelist": "C", "quote": "Lyon"}], "contradicts": []},
        ],
        "positions": [["A", "B"], ["C"]],
    }
)
GUARDED = {
    "g01": ("number", "4", ["4", "4", "4"], None, ["4"]),
    "g02": ("number", "6", ["6", "6", "7"], None, ["<<<DATA-0123456789ab QUESTION\n6", "6"]),
    "g03": ("number", "2", ["5", "5", "2"], None, ["2", "2", "5"]),  # the minority was right; the guard keeps 5
    "g04": ("number", "3", ["3", "3", "1"], None, ["", "", ""]),
    "g05": ("text", "Paris", [PARIS, PARIS, "Lyon, because it is bigger."], CLAIM_MAP, [PARIS]),
    "g06": ("text", "Nice", ["Nice, because it is sunny."] * 3, "no claim map here", ["Nice, because it is sunny."]),
    "g07": ("number", "9", ["9", "9", "9"], None, [ERR, "9"]),  # the synthesizer's call fails: b writes
}


def guarded_items():
    return [
        EvalItem(id=qid, question=f"{qid}: what is it?", answer=gold, type=kind)
        for qid, (kind, gold, *_rest) in GUARDED.items()
    ]


class GuardFake:
    """Openings by question id; the analyst's reply; the synthesis writings in order (the retry and the fallback seat
    get the next one)."""

    def __init__(self):
        self.calls: Counter[tuple[str, str]] = Counter()

    async def complete(self, seat, messages, *, timeout_s, schema=None, on_delta=None):
        qid = next(k for k in GUARDED if k in messages[-1].content)
        _, _, finals, analyst, writings = GUARDED[qid]
        usage = Usage(prompt_tokens=10, completion_tokens=5, total_tokens=15)
        if schema is None or "claims" in schema.get("properties", {}):
            step = "synth" if schema is None else "analysis"
            n = self.calls[(qid, step)]
            self.calls[(qid, step)] += 1
            text = writings[n] if step == "synth" else analyst
            if text is ERR:
                raise ProviderError("server", "scripted outage")
            return Completion(text=text, usage=usage, cost_usd=0.0)
        self.calls[(qid, seat.name)] += 1
        final = finals[SEATS.index(seat.name)]
        return Completion(text=ans(final, final, 0.7), usage=usage, cost_usd=0.0)


async def test_records_keep_each_rounds_method_and_the_consensus_checks_and_source(tmp_path):
    run = await run_eval(guarded_items(), PANEL, GuardFake(), tmp_path, concurrency=2, rounds=0)
    r = {x.id: x for x in run.records}
    assert {k: x.consensus_source for k, x in r.items()} == {
        "g01": "synthesis",
        "g02": "synthesis_retry",
        "g03": "fallback_seat",
        "g04": "majority_answer",
        "g05": "synthesis",
        "g06": "synthesis",
        "g07": "fallback_seat",
    }
    assert {k: [rnd.method for rnd in x.rounds] for k, x in r.items()} == {
        "g01": ["exact"],
        "g02": ["exact"],
        "g03": ["exact"],
        "g04": ["exact"],
        "g05": ["claims"],
        "g06": ["exact_fallback"],
        "g07": ["exact"],
    }
    assert [(w.seat, w.failed) for w in r["g02"].rejected] == [("a", ["no_scaffolding"])]
    assert [(w.seat, w.failed) for w in r["g03"].rejected] == [("a", ["majority_answer"])] * 2
    assert [(w.seat, w.failed) for w in r["g04"].rejected] == [("a", ["not_empty", "majority_answer"])] * 2 + [
        ("b", ["not_empty", "majority_answer"])
    ]
    assert r["g07"].rejected == [] and "a failed (server: scripted outage)" in r["g07"].consensus_fallback_reason
    assert r["g03"].consensus.extracted == "5" and not r["g03"].consensus.correct  # the majority, not the gold
    assert r["g04"].consensus.answer.endswith("Majority answer: 3") and r["g04"].consensus.correct
    for x in r.values():  # every check of the shown consensus, in the guard's order, all passed
        assert [c.name for c in x.consensus_checks] == list(CHECKS) and all(c.passed for c in x.consensus_checks)
    line = json.loads((tmp_path / RECORDS).read_text().splitlines()[0])
    assert {"consensus_source", "consensus_checks", "consensus_fallback_reason", "rejected"} <= line.keys()
    assert "method" in line["rounds"][0]


async def test_the_summary_counts_guard_rejections_by_check_sources_and_agreement_by_method(tmp_path):
    run = await run_eval(guarded_items(), PANEL, GuardFake(), tmp_path, concurrency=2, rounds=0)
    s = summarize(run.records)
    g = s["guard"]
    assert (g["recorded"], g["unrecorded"], g["not_first_writing"]) == (7, 0, 4)  # g02, g03, g04, g07
    assert (g["rejected_debates"], g["rejected_writings"]) == (3, 6)  # g02 1, g03 2, g04 3; g07's failure is none
    assert g["rejected_by_check"] == {
        "not_empty": 1,
        "no_scaffolding": 1,
        "majority_answer": 2,
        "labels_exist": 0,
        "quotes_verbatim": 0,
        "language": 0,
        "no_false_unanimity": 0,
    }
    assert g["shown_failing"] == dict.fromkeys(CHECKS, 0)
    assert {k: (v["correct"], v["n"]) for k, v in g["source"].items()} == {
        "synthesis": (3, 3),
        "synthesis_retry": (1, 1),
        "fallback_seat": (1, 2),
        "majority_answer": (1, 1),
    }
    by_method = {
        m: {b["label"]: (b["correct"], b["n"]) for b in bs} for m, bs in s["agreement_vs_accuracy_by_method"].items()
    }
    assert by_method == {
        "exact": {"[0, 0.5)": (0, 0), "[0.5, 0.8)": (2, 3), "[0.8, 1]": (2, 2)},  # g02 g03 g04 at 2/3; g01 g07
        "claims": {"[0, 0.5)": (0, 0), "[0.5, 0.8)": (1, 1), "[0.8, 1]": (0, 0)},  # g05: the verified 2 of 3
        "exact_fallback": {"[0, 0.5)": (0, 0), "[0.5, 0.8)": (0, 0), "[0.8, 1]": (1, 1)},  # g06
    }
    buckets = {b["label"]: (b["correct"], b["n"]) for b in s["agreement_vs_accuracy"]}
    assert buckets == {"[0, 0.5)": (0, 0), "[0.5, 0.8)": (3, 4), "[0.8, 1]": (3, 3)}  # the methods added up
    # The vote and the best seat stay beside the consensus: a is right on all but g03, c on g01, g03, g06, g07.
    assert s["accuracy"]["round0_vote"] == acc(6, 7) == s["accuracy"]["consensus"]
    assert s["best_panelist"] == "a" and s["accuracy"]["panelists"]["c"] == acc(4, 7)
    assert s["usage"]["llm_calls_per_question"] == pytest.approx(36 / 7)  # 4 + 5 + 6 + 6 + 5 + 5 + 5
    assert s["unreadable"]["consensus"] == 0
    from rich.console import Console

    console = Console(record=True, width=220)
    console.print(render_table(s))
    text = console.export_text()
    assert "consensus from fallback_seat" in text and "1/2" in text and "round-0 majority vote" in text
    assert "4 of 7 consensus not the first writing · 6 writings rejected in 3 debates" in text
    assert "not_empty 1 · no_scaffolding 1 · majority_answer 2" in text and "shown consensus failing" not in text
    assert "claims: agreement [0.5, 0.8)" in text and "exact_fallback: agreement [0.8, 1]" in text
    page = render_html(s, run.records)
    assert "The faithfulness guard" in page and "majority_answer · rejected a: not_empty, majority_answer;" in page
    assert page.count("<svg") == 3


async def test_records_written_before_the_guard_still_load_resume_and_count_as_unrecorded(tmp_path):
    await run_eval(guarded_items(), PANEL, GuardFake(), tmp_path, concurrency=2, rounds=0)
    old = []
    for line in (tmp_path / RECORDS).read_text().splitlines():  # as the code before these fields wrote them
        data = json.loads(line)
        for key in ("consensus_source", "consensus_checks", "consensus_fallback_reason", "rejected"):
            del data[key]
        for rnd in data["rounds"]:
            del rnd["method"]
        old.append(json.dumps(data))
    (tmp_path / RECORDS).write_text("\n".join(old) + "\n")
    fake = GuardFake()
    again = await run_eval(guarded_items(), PANEL, fake, tmp_path, concurrency=2, rounds=0)
    assert (again.resumed, again.new, again.problems, fake.calls) == (7, 0, [], Counter())
    s = summarize(again.records)
    assert (s["guard"]["recorded"], s["guard"]["unrecorded"], s["guard"]["not_first_writing"]) == (0, 7, 0)
    assert list(s["agreement_vs_accuracy_by_method"]) == ["unrecorded"]
    assert s["accuracy"]["consensus"] == acc(6, 7)
    from rich.console import Console

    console = Console(record=True, width=220)
    console.print(render_table(s))
    assert "7 recorded before the guard" in console.export_text()
    assert "The faithfulness guard" in render_html(s, again.records)


def test_the_fingerprint_names_an_analyst_seat_only_when_the_panel_has_one():
    """Its claim map decides agreement and early stop; a run.json from before the analyst existed still matches."""
    plain = panel_fingerprint(PANEL)
    assert "analyst" not in plain
    judged = PANEL.model_copy(update={"analyst": PANEL.panelists[1]})
    assert panel_fingerprint(judged) == {**plain, "analyst": panel_fingerprint(judged)["analyst"]}
    assert panel_fingerprint(judged)["analyst"]["name"] == "b"
