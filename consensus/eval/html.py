"""A self-contained HTML report of an eval run: inline CSS and SVG, no scripts, nothing fetched.

Every text that comes from a dataset or a model goes through html.escape.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from consensus.eval import scoring
from consensus.eval.scoring import EvalRecord

__all__ = ["render_html", "write_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#1a7f37}.bad{color:#c62828}
pre{white-space:pre-wrap;background:#f6f8fa;padding:.8em;font-size:12px}small{color:#666}
svg text{font:12px system-ui,sans-serif}details{margin:.5em 0}
"""
_GREEN, _RED, _BLUE, _GREY = "#2e7d32", "#c62828", "#1565c0", "#90a4ae"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _bars(rows: Sequence[tuple[str, float | None, Sequence[float], str, str]], width: int = 760) -> str:
    """Horizontal bars of proportions (label, value, (ci low, ci high), note, colour) with CI whiskers."""
    left, right, row_h = 250, 150, 26
    plot = width - left - right
    height = row_h * len(rows) + 34
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for tick in range(0, 101, 25):
        x = left + plot * tick / 100
        out.append(
            f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 26}" stroke="#e0e0e0"/>'
            f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{tick}%</text>'
        )
    for i, (label, value, ci, note, colour) in enumerate(rows):
        y = 6 + i * row_h
        mid = y + (row_h - 8) / 2
        out.append(f'<text x="{left - 8}" y="{mid + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        if value is not None:
            out.append(
                f'<rect x="{left}" y="{y}" width="{plot * value:.1f}" height="{row_h - 8}" fill="{colour}" opacity=".8"/>'
            )
            lo, hi = left + plot * ci[0], left + plot * ci[1]
            out.append(
                f'<path d="M{lo:.1f} {mid:.1f}H{hi:.1f}M{lo:.1f} {mid - 5:.1f}V{mid + 5:.1f}M{hi:.1f} {mid - 5:.1f}V{mid + 5:.1f}" '
                'stroke="#111" stroke-width="1.5" fill="none"/>'
            )
        out.append(f'<text x="{left + plot + 8}" y="{mid + 4:.1f}">{escape(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def _flip_bars(rows: Sequence[tuple[str, int, int]], width: int = 760) -> str:
    """Paired bars per transition: wrong→right (green) and right→wrong (red)."""
    left, row_h = 250, 40
    plot = width - left - 60
    top = max([1, *(max(a, b) for _, a, b in rows)])
    height = row_h * len(rows) + 30
    out = [
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
        f'<rect x="{left}" y="{height - 18}" width="10" height="10" fill="{_GREEN}"/><text x="{left + 14}" y="{height - 9}">wrong→right</text>'
        f'<rect x="{left + 110}" y="{height - 18}" width="10" height="10" fill="{_RED}"/><text x="{left + 124}" y="{height - 9}">right→wrong</text>',
    ]
    for i, (label, w2r, r2w) in enumerate(rows):
        y = 4 + i * row_h
        out.append(f'<text x="{left - 8}" y="{y + 19}" text-anchor="end">{escape(label)}</text>')
        for j, (count, colour) in enumerate(((w2r, _GREEN), (r2w, _RED))):
            yy = y + j * 16
            out.append(
                f'<rect x="{left}" y="{yy}" width="{plot * count / top:.1f}" height="14" fill="{colour}"/>'
                f'<text x="{left + plot * count / top + 5:.1f}" y="{yy + 11}">{count}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _mark(ok: bool) -> str:
    return '<span class="ok">✓</span>' if ok else '<span class="bad">✗</span>'


def _short(text: str | None, limit: int = 160) -> str:
    t = " ".join((text or "").split())
    return escape(t if len(t) <= limit else t[: limit - 1] + "…")


def _test_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in (
        ("consensus_vs_best_panelist", "consensus vs best single"),
        ("consensus_vs_round0_vote", "consensus vs round-0 vote"),
    ):
        t = summary["tests"][key]
        boot = t["bootstrap"] or {}
        ci = f"[{100 * boot['ci_low']:+.1f}, {100 * boot['ci_high']:+.1f}]" if boot else "—"
        name = f"{label} ({t['against']})" if key == "consensus_vs_best_panelist" else label
        rows.append(
            [
                escape(name),
                str(t["b"]),
                str(t["c"]),
                f"{t['mcnemar_p']:.4g}",
                f"{100 * boot['mean_difference']:+.1f} pts" if boot else "—",
                ci,
                f"{boot['p_value']:.4g}" if boot and boot["p_value"] is not None else "—",
            ]
        )
    return rows


def _flip_table(rounds: Sequence[dict[str, Any]], seats: Sequence[str]) -> list[list[str]]:
    return [
        [
            f"round {f['from']}→{f['to']}",
            *(f"+{f['by_panelist'][p]['wrong_to_right']} / −{f['by_panelist'][p]['right_to_wrong']}" for p in seats),
        ]
        for f in rounds
    ]


def _question_rows(records: Sequence[EvalRecord], seats: Sequence[str]) -> list[list[str]]:
    rows = []
    for r in sorted(records, key=lambda x: x.id):
        r0 = {a.panelist: a for a in r.rounds[0].answers} if r.rounds else {}
        cells = [escape(r.id), _short(r.question), escape(r.gold)]
        for p in seats:
            a = r0.get(p)
            cells.append(
                "—"
                if a is None
                else escape(a.error or "")
                if a.error
                else f"{_short(a.extracted, 30)} {_mark(a.correct)}"
            )
        for s in (r.round0_vote, r.final_vote):
            cells.append(f"{_short(s.extracted, 30)} {_mark(s.correct)}")
        cells.append(
            f"{_short(r.consensus.extracted, 30)} {_mark(r.consensus.correct)}{_provenance(r)}"
            f"<details><summary>text</summary>{_short(r.consensus.answer, 2000)}</details>"
        )
        cells += [
            f"{r.final_agreement:.2f}",
            escape(r.status) + (f"<br><small>{_short(r.reason, 200)}</small>" if r.reason else ""),
        ]
        rows.append(cells)
    return rows


def _provenance(r: EvalRecord) -> str:
    """Where the consensus came from and what the guard rejected before it, as a small note."""
    if r.consensus_source is None:
        return ""
    rejected = "; ".join(f"{w.seat}: {', '.join(w.failed) or '?'}" for w in r.rejected)
    note = r.consensus_source + (" · the panel is split" if r.consensus_split else "")
    return f"<br><small>{escape(note)}{escape(' · rejected ' + rejected) if rejected else ''}</small>"


def _method_rows(summary: dict[str, Any]) -> list[list[str]]:
    return [
        [
            escape(method),
            escape(b["label"]),
            f"{b['correct']}/{b['n']}",
            _pct(b["accuracy"]),
            f"{100 * b['ci95'][0]:.1f}–{100 * b['ci95'][1]:.1f}%",
        ]
        for method, buckets in summary.get("agreement_vs_accuracy_by_method", {}).items()
        for b in buckets
    ]


def _guard_parts(summary: dict[str, Any]) -> list[str]:
    guard = summary.get("guard")
    if not guard:
        return []
    split = summary.get("split") or {"consensus": 0}
    sources = [
        [escape(src), str(a["n"]), f"{a['correct']}/{a['n']}", _pct(a["accuracy"])]
        for src, a in guard["source"].items()
    ]
    checks = [[escape(c), str(n), str(guard["shown_failing"].get(c, 0))] for c, n in guard["rejected_by_check"].items()]
    note = (
        f"{guard['not_first_writing']} of {guard['recorded']} consensus were not the synthesizer's first writing; "
        f"the guard rejected {guard['rejected_writings']} writings in {guard['rejected_debates']} debates"
        + (f"; {guard['unrecorded']} records were written before the guard" if guard["unrecorded"] else "")
        + (
            f"; {split['consensus']} consensus said the panel is split (the guard's list of tied positions, read on "
            f"its tie-break line by seat order: right on {split.get('tie_break_right', 0)}; the round-0 vote's "
            f"tie-break was right on {split['round0_vote_right']})"
            if split["consensus"]
            else ""
        )
        + "."
    )
    return [
        "<h2>The faithfulness guard</h2>",
        f"<p>{escape(note)}</p>",
        _table(["source", "consensus", "correct", "accuracy"], sources),
        _table(["check", "debates with a rejected writing failing it", "shown consensus failing it"], checks),
    ]


def _arm_parts(summary: dict[str, Any]) -> list[str]:
    """The comparison arms (`--arm`): accuracy bars and calls, tokens, ties and failures per arm."""
    arms = summary.get("arms") or {}
    if not arms or list(arms) == ["consensus"]:
        return []
    bars = [
        (arm, a["accuracy"], a["ci95"], f"{_pct(a['accuracy'])} ({a['correct']}/{a['n']})", _GREEN)
        for arm, a in arms.items()
    ]
    rows = [
        [
            escape(arm),
            f"{a['correct']}/{a['n']}",
            _num(a["llm_calls_per_question"]),
            _num(a["tokens_per_question"]),
            str(a["ties"]),
            str(a["failed"]),
        ]
        for arm, a in arms.items()
    ]
    return [
        "<h2>Comparison arms</h2>",
        _bars(bars),
        _table(["arm", "correct", "calls / question", "tokens / question", "ties", "failed"], rows),
    ]


def render_html(summary: dict[str, Any], records: Sequence[EvalRecord]) -> str:
    """The report as one HTML string."""
    run = summary.get("run") or {}
    acc, best = summary["accuracy"], summary["best_panelist"]
    bars: list[tuple[str, float | None, Sequence[float], str, str]] = [
        (
            f"{p} alone{' (best)' if p == best else ''}",
            a["accuracy"],
            a["ci95"],
            f"{_pct(a['accuracy'])} ({a['correct']}/{a['n']})",
            _GREY,
        )
        for p, a in acc["panelists"].items()
    ]
    for key, label, colour in (
        ("round0_vote", "round-0 vote", _BLUE),
        ("final_vote", "final vote", _BLUE),
        ("consensus", "consensus", _GREEN),
    ):
        a = acc[key]
        bars.append((label, a["accuracy"], a["ci95"], f"{_pct(a['accuracy'])} ({a['correct']}/{a['n']})", colour))
    flips = summary["flips"]
    flip_rows = [
        (f"panelists, round {f['from']}→{f['to']}", f["wrong_to_right"], f["right_to_wrong"]) for f in flips["rounds"]
    ]
    for key, label in (
        ("round0_vote_to_final_vote", "round-0 vote → final vote"),
        ("final_vote_to_consensus", "final vote → consensus"),
    ):
        flip_rows.append((label, flips[key]["wrong_to_right"], flips[key]["right_to_wrong"]))
    agree = [
        (f"agreement {b['label']}", b["accuracy"], b["ci95"], f"{_pct(b['accuracy'])} (n={b['n']})", _GREEN)
        for b in summary["agreement_vs_accuracy"]
    ]
    u, lat = summary["usage"], summary["latency_ms"]
    cost = (
        "unknown"
        if u["cost_usd_per_question"] is None
        else f"${u['cost_usd_per_question']:.6f} (total ${u['cost_usd_total']:.4f})"
    )
    usage_rows = [
        ["LLM calls / question", _num(u["llm_calls_per_question"])],
        ["tokens / question", _num(u["tokens_per_question"])],
        ["cost / question", escape(cost)],
        ["latency p50 / p95", f"{_num(lat['p50'], 1000)} s / {_num(lat['p95'], 1000)} s"],
    ]
    errors = [
        [escape(p), escape(", ".join(f"{k} {v}" for k, v in c.items()) or "none")]
        for p, c in summary["panelist_errors"].items()
    ]
    info = ", ".join(
        f"{k} = {v}"
        for k, v in run.items()
        if k in ("dataset", "seed", "limit", "language", "rounds", "started_at", "panel_source")
    )
    seats = summary["panelists"]
    head = [
        "id",
        "question",
        "gold",
        *(f"{p} r0" for p in seats),
        "vote r0",
        "final vote",
        "consensus",
        "agreement",
        "status",
    ]
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(str(run.get('dataset') or 'eval'))} — consensus eval</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(str(run.get('dataset') or 'eval'))}: {summary.get('n_questions', summary['n'])} questions</h1>"
        f"<p><small>{escape(info)}</small></p>",
        *_arm_parts(summary),
        "<h2>Accuracy with 95 % Wilson intervals</h2>",
        _bars(bars),
        "<h2>Paired tests</h2><p><small>b = consensus right and the other wrong; c = the reverse.</small></p>",
        _table(
            ["comparison", "b", "c", "McNemar exact p", "bootstrap Δ", "95 % CI", "bootstrap p"], _test_rows(summary)
        ),
        "<h2>Answer flips</h2>",
        _flip_bars(flip_rows),
        _table(["transition", *seats], _flip_table(flips["rounds"], seats)),
        "<h2>Agreement vs accuracy of the consensus</h2>",
        _bars(agree),
        "<h2>… by the final round's agreement method</h2>",
        _table(["method", "agreement", "correct", "accuracy", "95 % CI"], _method_rows(summary)),
        *_guard_parts(summary),
        "<h2>Cost and latency</h2>",
        _table(["", "value"], usage_rows),
        "<h2>Debates</h2>",
        _table(["status", "count"], [[escape(k), str(v)] for k, v in summary["status"].items()]),
        _table(["panelist", "failed calls"], errors),
        "<h2>Questions</h2>",
        _table(head, _question_rows(records, seats)),
        f"<h2>How answers are scored</h2><pre>{escape(scoring.__doc__ or '')}</pre>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _num(x: float | None, scale: float = 1.0) -> str:
    return "—" if x is None else f"{x / scale:,.1f}"


def write_html(summary: dict[str, Any], records: Sequence[EvalRecord], path: str | Path) -> Path:
    """Write the self-contained report to `path` and return it."""
    p = Path(path)
    p.write_text(render_html(summary, records), encoding="utf-8")
    return p
