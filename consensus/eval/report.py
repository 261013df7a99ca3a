"""Pure summary of an eval run (exactly what summary.json holds), its terminal table, and run comparison.

Definitions: a panelist "alone" is its round-0 (opening) answer. A panelist's state after round r
is its latest successful answer up to r (a failed call keeps the previous state; before any
answer it is wrong), so flips count changes of state between consecutive rounds, and a question
whose debate stopped early simply has no more flips. The best single panelist is the one with the
highest round-0 accuracy on these same questions (ties go to the earlier seat): choosing it after
the fact favours it, so "consensus beats the best panelist" is a conservative claim.
In the paired tests b = consensus right and the other wrong, c = consensus wrong and the other right.
The round-0 and final votes break a tie by seat order, as they always have; the consensus-vote arm counts a tie
wrong. `round0_vote_ties` says how many round-0 votes tied, how often the tie-break was right, and the round-0
vote's accuracy with ties counted wrong, the arm's rule.

Comparison arms (`consensus eval --arm`; consensus/arms.py): `arms` holds, for every arm the records answered
(the debate as `consensus` among them when it ran), its accuracy with a Wilson CI over the questions it answered,
its ties and failures, calls, tokens and cost per question (its median latency is under `latency_ms.arms`);
`tests.consensus_vs_arms` pairs the
consensus with each arm over the questions both answered. The debate's own figures (panelists alone, votes,
flips, buckets, guard) count the debated records only; `n_questions` counts every record.

The guard (over debates that produced a consensus whose record has a source; records written before
the guard have none and are counted as unrecorded): the consensus's source and the consensus's
accuracy for each; "not first writing" counts every consensus whose source is not "synthesis"; for
each check, the debates in which at least one writing the guard rejected failed it, and the debates
whose shown consensus fails it. Agreement against accuracy is also split by the agreement method of
the debate's final round.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from consensus.eval.html import write_html
from consensus.eval.runner import RECORDS, RUN_INFO, read_records
from consensus.eval.scoring import EvalRecord, round0_tied
from consensus.eval.stats import flips, mcnemar_exact, paired_bootstrap, percentile, wilson_interval
from consensus.guard import CHECKS

__all__ = ["SUMMARY", "compare", "load_summary", "render_table", "summarize", "write_html"]

SUMMARY = "summary.json"
BUCKETS = ((0.0, 0.5), (0.5, 0.8), (0.8, 1.0))
SOURCES = ("synthesis", "synthesis_retry", "fallback_seat", "majority_answer")
METHODS = ("exact", "claims", "exact_fallback")
UNRECORDED = "unrecorded"  # a record written before the field existed
BOOTSTRAP_ITERATIONS = 10_000
MIN_DISCORDANT_FOR_BOOTSTRAP_P = 10


def _accuracy(flags: Sequence[bool]) -> dict[str, Any]:
    k, n = sum(flags), len(flags)
    lo, hi = wilson_interval(k, n)
    return {"correct": k, "n": n, "accuracy": k / n if n else None, "ci95": [lo, hi]}


def _seats(records: Sequence[EvalRecord]) -> list[str]:
    seats: list[str] = []
    for r in records:
        seats += [p for p in r.panelists if p not in seats]
    return seats


def _states(r: EvalRecord, seats: Sequence[str], last: int) -> list[dict[str, bool]]:
    """Each panelist's correctness after rounds 0..last (latest successful answer carried forward)."""
    state = dict.fromkeys(seats, False)
    out = []
    for i in range(last + 1):
        if i < len(r.rounds):
            for a in r.rounds[i].answers:
                if a.error is None and a.panelist in state:
                    state[a.panelist] = a.correct
        out.append(dict(state))
    return out


def _paired(cons: list[bool], other: list[bool], against: str | None) -> dict[str, Any]:
    b = sum(1 for x, y in zip(cons, other, strict=True) if x and not y)
    c = sum(1 for x, y in zip(cons, other, strict=True) if y and not x)
    boot: dict[str, Any] | None = paired_bootstrap(cons, other, iterations=BOOTSTRAP_ITERATIONS) if cons else None
    if boot is not None and b + c < MIN_DISCORDANT_FOR_BOOTSTRAP_P:
        # With few discordant pairs the resampled differences barely vary and the shifted-null p collapses
        # (3 questions, all discordant one way: p = 0.0001 where McNemar's exact p is 0.25). Its CI stays.
        boot["p_value"] = None
    return {"against": against, "b": b, "c": c, "mcnemar_p": mcnemar_exact(b, c), "bootstrap": boot}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _buckets(records: Sequence[EvalRecord]) -> list[dict[str, Any]]:
    """The consensus's accuracy in each agreement bucket of the final round."""
    out = []
    for lo, hi in BUCKETS:
        inside = [
            r.consensus.correct
            for r in records
            if lo <= r.final_agreement < hi or (hi == 1.0 and r.final_agreement >= 1.0)
        ]
        out.append({"range": [lo, hi], "label": f"[{lo:g}, {hi:g}{']' if hi == 1.0 else ')'}", **_accuracy(inside)})
    return out


def _final_method(r: EvalRecord) -> str:
    return (r.rounds[-1].method if r.rounds else None) or UNRECORDED


def _guard(debated: Sequence[EvalRecord]) -> dict[str, Any]:
    """Where each consensus came from, and which checks the guard rejected writings for (module docstring)."""
    known = [r for r in debated if r.consensus_source is not None]
    sources = {src: _accuracy([r.consensus.correct for r in known if r.consensus_source == src]) for src in SOURCES}
    rejected = [r for r in known if r.rejected]
    return {
        "recorded": len(known),
        "unrecorded": len(debated) - len(known),
        "source": sources,
        "not_first_writing": sum(1 for r in known if r.consensus_source != "synthesis"),
        "rejected_debates": len(rejected),
        "rejected_writings": sum(len(r.rejected) for r in rejected),
        "rejected_by_check": {c: sum(1 for r in rejected if any(c in w.failed for w in r.rejected)) for c in CHECKS},
        "shown_failing": {
            c: sum(1 for r in known if any(k.name == c and not k.passed for k in r.consensus_checks)) for c in CHECKS
        },
    }


def _panel(run: dict[str, Any] | None, records: Sequence[EvalRecord]) -> list[str]:
    """The seats' names as run.json states the panel (a run of arms alone has no debated seats), else the records'."""
    seats = ((run or {}).get("panel") or {}).get("panelists") or []
    names = [str(p["name"]) for p in seats if isinstance(p, dict) and "name" in p]
    return names or _seats(records)


def _arm_ids(records: Sequence[EvalRecord]) -> list[str]:
    ids = ["consensus"] if any(r.debated for r in records) else []
    for r in records:
        ids += [a for a in r.arms if a not in ids]
    return ids


def _arm_summary(records: Sequence[EvalRecord], arm: str) -> dict[str, Any]:
    """One arm's accuracy, ties, failures, usage and latency over the questions it answered."""
    if arm == "consensus":
        rows = [
            (r.consensus.correct, r.consensus_split, r.status, r.llm_calls, r.tokens, r.cost_usd, r.latency_ms)
            for r in records
            if r.debated
        ]
    else:
        rows = [
            (a.correct, a.tie, a.status, a.llm_calls, a.tokens, a.cost_usd, a.latency_ms)
            for r in records
            if (a := r.arms.get(arm)) is not None
        ]
    costs = [row[5] for row in rows]
    known = [c for c in costs if c is not None]
    return {
        **_accuracy([row[0] for row in rows]),
        "ties": sum(1 for row in rows if row[1]),
        "failed": sum(1 for row in rows if row[2] == "failed"),
        "llm_calls_per_question": _mean([row[3] for row in rows]),
        "tokens_per_question": _mean([row[4] for row in rows]),
        "cost_usd_per_question": _mean(known) if len(known) == len(costs) else None,
    }


def _arm_latency(records: Sequence[EvalRecord], arm: str) -> float | None:
    """An arm's median latency in ms (summary["latency_ms"]["arms"]: the clock's figures stay together)."""
    if arm == "consensus":
        latency = [float(r.latency_ms) for r in records if r.debated]
    else:
        latency = [float(a.latency_ms) for r in records if (a := r.arms.get(arm)) is not None]
    return percentile(latency, 50) if latency else None


def _arms_vs_consensus(records: Sequence[EvalRecord], arms: Sequence[str]) -> dict[str, Any]:
    """The consensus paired with each arm over the questions both answered."""
    out = {}
    for arm in arms:
        both = [r for r in records if r.debated and arm in r.arms]
        if arm != "consensus" and both:
            out[arm] = _paired([r.consensus.correct for r in both], [r.arms[arm].correct for r in both], arm)
    return out


def summarize(records: Sequence[EvalRecord], run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Accuracies with 95 % Wilson CIs, flips, paired tests, usage, latency and agreement buckets; and each arm's."""
    every = sorted(records, key=lambda r: r.id)  # a canonical order: the bootstrap depends on it
    arms = _arm_ids(every)
    recs = [r for r in every if r.debated]
    seats = _seats(recs)
    last = max((len(r.rounds) for r in recs), default=1) - 1
    states = [_states(r, seats, max(last, 0)) for r in recs]
    alone = {p: [s[0][p] for s in states] for p in seats}
    best = max(seats, key=lambda p: (sum(alone[p]), -seats.index(p))) if seats else None
    cons = [r.consensus.correct for r in recs]
    vote0 = [r.round0_vote.correct for r in recs]
    tied0 = [round0_tied(r) for r in recs]
    vote_final = [r.final_vote.correct for r in recs]
    rounds = []
    for i in range(1, last + 1):
        per = {p: flips([s[i - 1][p] for s in states], [s[i][p] for s in states]) for p in seats}
        rounds.append(
            {
                "from": i - 1,
                "to": i,
                **{k: sum(f[k] for f in per.values()) for k in ("wrong_to_right", "right_to_wrong")},
                "by_panelist": per,
            }
        )
    debated = [
        r for r in recs if r.status != "failed"
    ]  # a failed debate's "agreement" is one answer agreeing with itself
    buckets = _buckets(debated)
    by_method: dict[str, list[dict[str, Any]]] = {}
    for method in (*METHODS, UNRECORDED):
        inside = [r for r in debated if _final_method(r) == method]
        if inside:
            by_method[method] = _buckets(inside)
    latency = [float(r.latency_ms) for r in recs]
    costs = [r.cost_usd for r in recs]
    known = [c for c in costs if c is not None]
    errors: dict[str, Counter[str]] = {p: Counter() for p in seats}
    for r in recs:
        for rnd in r.rounds:
            for a in rnd.answers:
                if a.error and a.panelist in errors:
                    errors[a.panelist][a.error] += 1
    ok = [r for r in recs if r.status != "failed"]
    return {
        "run": {k: v for k, v in (run or {}).items() if k not in ("panel", "panel_fingerprint", "item_ids")},
        "n": len(recs),
        "n_questions": len(every),
        "arms": {arm: _arm_summary(every, arm) for arm in arms},
        "panelists": seats,
        "panel": _panel(run, every),
        "accuracy": {
            "panelists": {p: _accuracy(alone[p]) for p in seats},
            "round0_vote": _accuracy(vote0),
            "final_vote": _accuracy(vote_final),
            "consensus": _accuracy(cons),
        },
        "best_panelist": best,
        "round0_vote_ties": {  # the round-0 vote breaks a tie by seat order; the consensus-vote arm counts it wrong
            "ties": sum(tied0),
            "tie_break_right": sum(1 for ok, tie in zip(vote0, tied0, strict=True) if ok and tie),
            "ties_counted_wrong": _accuracy([ok and not tie for ok, tie in zip(vote0, tied0, strict=True)]),
        },
        "flips": {
            "rounds": rounds,
            "round0_vote_to_final_vote": flips(vote0, vote_final),
            "final_vote_to_consensus": flips(vote_final, cons),
        },
        "tests": {
            "consensus_vs_best_panelist": _paired(cons, alone[best] if best else [False] * len(recs), best),
            "consensus_vs_round0_vote": _paired(cons, vote0, "round-0 vote"),
            "consensus_vs_arms": _arms_vs_consensus(every, arms),
        },
        "usage": {
            "llm_calls_per_question": _mean([r.llm_calls for r in recs]),
            "tokens_per_question": _mean([r.tokens for r in recs]),
            "prompt_tokens_per_question": _mean([r.prompt_tokens for r in recs]),
            "completion_tokens_per_question": _mean([r.completion_tokens for r in recs]),
            "cost_usd_per_question": _mean(known) if len(known) == len(costs) else None,
            "cost_usd_total": sum(known) if len(known) == len(costs) else None,
            "questions_with_unknown_cost": len(costs) - len(known),
        },
        "latency_ms": {
            "p50": percentile(latency, 50) if latency else None,
            "p95": percentile(latency, 95) if latency else None,
            "mean": _mean(latency),
            "arms": {arm: _arm_latency(every, arm) for arm in arms},
        },
        "agreement_vs_accuracy": buckets,
        "agreement_vs_accuracy_by_method": by_method,
        "guard": _guard(debated),
        "status": dict(sorted(Counter(r.status for r in recs).items())),
        "panelist_errors": {p: dict(sorted(c.items())) for p, c in errors.items()},
        "unreadable": {
            "consensus": sum(
                1 for r in ok if r.consensus.answer and r.consensus.extracted is None and not r.consensus_split
            ),
            "round0_answers": sum(
                1 for r in recs if r.rounds for a in r.rounds[0].answers if a.error is None and a.extracted is None
            ),
        },
        "split": {  # the consensus is the guard's list of tied positions (scoring's docstring): wrong, not unreadable
            "consensus": sum(1 for r in ok if r.consensus_split),
            "round0_vote_right": sum(1 for r in ok if r.consensus_split and r.round0_vote.correct),
            "final_vote_right": sum(1 for r in ok if r.consensus_split and r.final_vote.correct),
            "tie_break_right": sum(1 for r in ok if r.consensus_split and r.consensus.correct),
            "consensus_splits_counted_wrong": _accuracy([r.consensus.correct and not r.consensus_split for r in recs]),
        },
        "failures": [{"id": r.id, "reason": r.reason} for r in recs if r.status == "failed"][:50],
    }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _ci(acc: dict[str, Any]) -> str:
    lo, hi = acc["ci95"]
    return f"{100 * lo:.1f}–{100 * hi:.1f}%"


def _num(x: float | None, fmt: str = ",.1f") -> str:
    return "—" if x is None else format(x, fmt)


def _test_line(t: dict[str, Any]) -> str:
    boot = t["bootstrap"]
    head = f"McNemar b={t['b']} c={t['c']} p={t['mcnemar_p']:.3g}"
    if boot is None:
        return head
    p = (
        f"p={boot['p_value']:.3g}"
        if boot["p_value"] is not None
        else f"p: n/a (b+c < {MIN_DISCORDANT_FOR_BOOTSTRAP_P})"
    )
    return (
        f"{head} · bootstrap Δ {100 * boot['mean_difference']:+.1f} pts "
        f"[{100 * boot['ci_low']:+.1f}, {100 * boot['ci_high']:+.1f}] {p}"
    )


def _latency(s: dict[str, Any]) -> str:
    lat = s["latency_ms"]
    return "—" if lat["p50"] is None else f"p50 {lat['p50'] / 1000:.1f} s · p95 {lat['p95'] / 1000:.1f} s"


def _usage(s: dict[str, Any]) -> str:
    u = s["usage"]
    cost = "unknown" if u["cost_usd_per_question"] is None else f"${u['cost_usd_per_question']:.5f}"
    return f"{_num(u['llm_calls_per_question'])} calls · {_num(u['tokens_per_question'], ',.0f')} tokens · {cost}"


def _counts(by_check: dict[str, int]) -> str:
    return " · ".join(f"{name} {n}" for name, n in by_check.items() if n) or "none"


def _guard_line(guard: dict[str, Any]) -> str:
    line = (
        f"{guard['not_first_writing']} of {guard['recorded']} consensus not the first writing · "
        f"{guard['rejected_writings']} writings rejected in {guard['rejected_debates']} debates"
    )
    return line + (f" · {guard['unrecorded']} recorded before the guard" if guard["unrecorded"] else "")


def render_table(summary: dict[str, Any]) -> Table:
    """The terminal table: accuracy with CIs, paired tests, flips, usage, latency, agreement buckets."""
    run = summary.get("run") or {}
    n = summary.get("n_questions", summary["n"])
    title = f"{escape(str(run.get('dataset') or 'eval'))} — {n} questions"  # a path may hold [brackets]
    t = Table(title=title, title_justify="left")
    for col, justify in (("", "left"), ("accuracy", "right"), ("95% CI", "right"), ("detail", "left")):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    arms = summary.get("arms") or {}
    if len(arms) > 1 or (arms and "consensus" not in arms):
        _arm_rows(t, summary)
    if not summary["n"]:  # no debate ran: the arms are the whole table
        return t
    _debate_rows(t, summary)
    return t


def _arm_rows(t: Table, summary: dict[str, Any]) -> None:
    """One row per arm: accuracy, CI, and calls, tokens, ties and failures per question; then the paired tests."""
    for arm, a in summary["arms"].items():
        detail = (
            f"{a['correct']}/{a['n']} · {_num(a['llm_calls_per_question'])} calls · "
            f"{_num(a['tokens_per_question'], ',.0f')} tokens · {a['ties']} ties · {a['failed']} failed"
        )
        t.add_row(f"arm {escape(arm)}", _pct(a["accuracy"]), _ci(a), detail)
    for arm, test in summary["tests"].get("consensus_vs_arms", {}).items():
        t.add_row(f"consensus vs {escape(arm)}", "", "", _test_line(test))
    t.add_section()


def _debate_rows(t: Table, summary: dict[str, Any]) -> None:
    """The debate's rows: panelists alone, votes, consensus, tests, flips, buckets, guard, usage, latency."""
    acc = summary["accuracy"]
    best = summary["best_panelist"]
    for p, a in acc["panelists"].items():
        t.add_row(
            f"{p} alone (round 0){' *best' if p == best else ''}",
            _pct(a["accuracy"]),
            _ci(a),
            f"{a['correct']}/{a['n']}",
        )
    for key, label in (
        ("round0_vote", "round-0 majority vote"),
        ("final_vote", "final-round vote"),
        ("consensus", "consensus"),
    ):
        a = acc[key]
        t.add_row(label, _pct(a["accuracy"]), _ci(a), f"{a['correct']}/{a['n']}")
        ties = summary.get("round0_vote_ties")
        if key == "round0_vote" and ties and ties["ties"]:
            wrong = ties["ties_counted_wrong"]
            t.add_row(
                "  ties counted wrong",
                _pct(wrong["accuracy"]),
                _ci(wrong),
                f"{ties['ties']} round-0 ties broken by seat order above (right on {ties['tie_break_right']}); "
                "counted wrong here, as the consensus-vote arm counts a tie",
            )
        split = summary.get("split")
        if key == "consensus" and split and split["consensus"] and "consensus_splits_counted_wrong" in split:
            wrong = split["consensus_splits_counted_wrong"]
            t.add_row(
                "  splits counted wrong",
                _pct(wrong["accuracy"]),
                _ci(wrong),
                f"{split['consensus']} split consensus read on their tie-break line above (right on "
                f"{split['tie_break_right']}); counted wrong here",
            )
    t.add_section()
    tests = summary["tests"]
    t.add_row(f"consensus vs best ({best})", "", "", _test_line(tests["consensus_vs_best_panelist"]))
    t.add_row("consensus vs round-0 vote", "", "", _test_line(tests["consensus_vs_round0_vote"]))
    t.add_section()
    for f in summary["flips"]["rounds"]:
        t.add_row(
            f"flips round {f['from']}→{f['to']}",
            "",
            "",
            f"wrong→right {f['wrong_to_right']} · right→wrong {f['right_to_wrong']}",
        )
    for key, label in (
        ("round0_vote_to_final_vote", "flips vote 0→final"),
        ("final_vote_to_consensus", "flips final vote→consensus"),
    ):
        f = summary["flips"][key]
        t.add_row(label, "", "", f"wrong→right {f['wrong_to_right']} · right→wrong {f['right_to_wrong']}")
    t.add_section()
    for b in summary["agreement_vs_accuracy"]:
        t.add_row(f"consensus at agreement {b['label']}", _pct(b["accuracy"]), _ci(b), f"{b['correct']}/{b['n']}")
    for method, buckets in summary.get("agreement_vs_accuracy_by_method", {}).items():
        for b in buckets:
            if b["n"]:
                t.add_row(
                    f"  {method}: agreement {b['label']}", _pct(b["accuracy"]), _ci(b), f"{b['correct']}/{b['n']}"
                )
    guard = summary.get("guard")
    if guard:
        t.add_section()
        for src, a in guard["source"].items():
            if a["n"]:
                t.add_row(f"consensus from {src}", _pct(a["accuracy"]), _ci(a), f"{a['correct']}/{a['n']}")
        t.add_row("guard rejections", "", "", _guard_line(guard))
        t.add_row("rejected writings failing", "", "", _counts(guard["rejected_by_check"]))
        if any(guard["shown_failing"].values()):
            t.add_row("shown consensus failing", "", "", _counts(guard["shown_failing"]))
    t.add_section()
    t.add_row("per question", "", "", _usage(summary))
    t.add_row("latency", "", "", _latency(summary))
    status = ", ".join(f"{k} {v}" for k, v in summary["status"].items())
    errs = sum(sum(c.values()) for c in summary["panelist_errors"].values())
    unread = summary["unreadable"]
    t.add_row(
        "debates",
        "",
        "",
        f"{status} · {errs} failed panelist calls · unreadable: "
        f"{unread['consensus']} consensus, {unread['round0_answers']} round-0 answers",
    )
    split = summary.get("split")
    if split and split["consensus"]:
        t.add_row(
            "consensus: the panel is split",
            "",
            "",
            f"{split['consensus']} (read on the tie-break line: right on {split.get('tie_break_right', 0)}; the "
            f"round-0 vote's tie-break was right on {split['round0_vote_right']}, the final vote's on "
            f"{split['final_vote_right']})",
        )


def load_summary(run_dir: str | Path, problems: list[str] | None = None) -> dict[str, Any]:
    """The summary of a run directory, recomputed from records.jsonl when present, else summary.json;
    unreadable record lines go to `problems` (they are left out, as `eval` would re-run them)."""
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"run directory not found: {d}")
    run = _json_file(d / RUN_INFO) if (d / RUN_INFO).exists() else None
    if (d / RECORDS).exists():
        records, unreadable = read_records(d / RECORDS)
        if problems is not None:
            problems.extend(p.replace("; it will be re-run", "; left out") for p in unreadable)
        ids = (run or {}).get("item_ids")  # the run's own items (a resume with a smaller --limit covers fewer)
        kept = list(records.values()) if ids is None else [records[i] for i in ids if i in records]
        return summarize(kept, run)
    if (d / SUMMARY).exists():
        data = _json_file(d / SUMMARY)
        missing = [k for k in ("n", "panelists", "accuracy", "tests", "usage", "status") if k not in data]
        if missing:
            raise ValueError(f"{d / SUMMARY}: not a summary written by `consensus eval` (no {', '.join(missing)})")
        return data
    raise FileNotFoundError(f"{d} has neither {RECORDS} nor {SUMMARY}")


def _json_file(path: Path) -> dict[str, Any]:
    """A JSON object from a run directory's file, or ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def compare(dirs: Sequence[str | Path], problems: list[str] | None = None) -> Table:
    """Runs side by side, one column per run directory (unreadable record lines go to `problems`)."""
    summaries = [load_summary(d, problems) for d in dirs]
    t = Table(title="Runs compared", title_justify="left")
    t.add_column("")
    for d in dirs:
        t.add_column(escape(str(d)), justify="right")

    def row(label: str, fn: Any) -> None:
        t.add_row(label, *(fn(s) for s in summaries))

    def debated(fn: Any) -> Any:
        """A debate's figure, or "—" for a run of comparison arms alone (no debate ran: nothing to show)."""
        return lambda s: fn(s) if s["n"] else "—"

    row("dataset", lambda s: str((s.get("run") or {}).get("dataset") or "—"))
    row("questions", lambda s: str(s.get("n_questions", s["n"])))
    row("panel", lambda s: ", ".join(s.get("panel") or s["panelists"]) or "—")
    t.add_section()
    for p in _seats_of(summaries):
        row(f"{p} alone", lambda s, p=p: _cell(s["accuracy"]["panelists"].get(p)))
    row(
        "best single",
        lambda s: (
            f"{s['best_panelist']}: {_pct(s['accuracy']['panelists'][s['best_panelist']]['accuracy'])}"
            if s["best_panelist"]
            else "—"
        ),
    )
    for key, label in (("round0_vote", "round-0 vote"), ("final_vote", "final vote"), ("consensus", "consensus")):
        row(label, lambda s, key=key: _cell(s["accuracy"][key]))
        if key == "round0_vote":
            row(
                "round-0 vote ties (tie-break right)",
                debated(
                    lambda s: (
                        f"{s['round0_vote_ties']['ties']} ({s['round0_vote_ties']['tie_break_right']})"
                        if "round0_vote_ties" in s
                        else "—"
                    )
                ),
            )
    for arm in _arms_of(summaries):
        row(f"arm {escape(arm)}", lambda s, arm=arm: _cell((s.get("arms") or {}).get(arm)))
    t.add_section()
    row("vs best: McNemar p", debated(lambda s: f"{s['tests']['consensus_vs_best_panelist']['mcnemar_p']:.3g}"))
    row("vs round-0 vote: McNemar p", debated(lambda s: f"{s['tests']['consensus_vs_round0_vote']['mcnemar_p']:.3g}"))
    t.add_section()
    row("calls / question", debated(lambda s: _num(s["usage"]["llm_calls_per_question"])))
    row("tokens / question", debated(lambda s: _num(s["usage"]["tokens_per_question"], ",.0f")))
    row(
        "cost / question",
        debated(
            lambda s: (
                "unknown"
                if s["usage"]["cost_usd_per_question"] is None
                else f"${s['usage']['cost_usd_per_question']:.5f}"
            )
        ),
    )
    row("latency", _latency)
    row("failed debates", debated(lambda s: str(s["status"].get("failed", 0))))
    row("unreadable consensus", debated(lambda s: str(s["unreadable"]["consensus"]) if "unreadable" in s else "—"))
    row("consensus: the panel is split", debated(lambda s: str(s["split"]["consensus"]) if "split" in s else "—"))
    row(
        "consensus not first writing",
        debated(lambda s: f"{s['guard']['not_first_writing']} of {s['guard']['recorded']}" if "guard" in s else "—"),
    )
    return t


def _seats_of(summaries: Sequence[dict[str, Any]]) -> list[str]:
    seats: list[str] = []
    for s in summaries:
        seats += [p for p in s["panelists"] if p not in seats]
    return seats


def _arms_of(summaries: Sequence[dict[str, Any]]) -> list[str]:
    """The comparison arms of these runs (the debate has its own rows)."""
    arms: list[str] = []
    for s in summaries:
        arms += [a for a in s.get("arms") or {} if a != "consensus" and a not in arms]
    return arms


def _cell(acc: dict[str, Any] | None) -> str:
    """An accuracy and its CI; "—" when nothing was measured (a Wilson interval over 0 questions is 0-100 %)."""
    return "—" if acc is None or not acc["n"] else f"{_pct(acc['accuracy'])} ({_ci(acc)})"
