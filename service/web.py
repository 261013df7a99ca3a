"""The web interface: the question page, the permalink, the embeddable widget (no front-end build).

Pages are rendered by Jinja2 with autoescaping; model output reaches the browser only as escaped
text (server side) or through textContent (static/debate.js). No inline script: data for scripts
travels in a JSON <script type="application/json"> block, so the CSP can forbid inline code.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from consensus.claims import label_letter
from consensus.rounds import LABELS
from consensus.types import Analysis, Claim, Consensus, DebateResult, ThreadContext
from service.deps import Services
from service.security import SECRET_PREFIX, hash_key
from service.services import AppServices
from service.store import FINISHED, DebateRow
from service.web_i18n import Translator, language_options, negotiate

log = logging.getLogger("consensus.service")
router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
STATIC = HERE / "static"
SHARE_CHARS = 200  # the consensus in a shared message or a link preview
QUESTION_CHARS = 300
THREAD_QUESTION_CHARS = 100  # each question of a thread in a shared message

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a permalink is a capability: never leak it to other sites
    "X-Frame-Options": "DENY",
}
MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, media type, etag) for every file in static/, read once."""
    files = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in MEDIA_TYPES:
            data = path.read_bytes()
            files[path.name] = (data, MEDIA_TYPES[path.suffix], hashlib.sha256(data).hexdigest()[:16])
    return files


STATIC_FILES = _load_static()
# The widget is one file for host pages: the shared debate UI and the widget boot code in one scope.
WIDGET_JS = (
    b"/* consensus widget: https://HOST/widget.js, see README */\n(function () {\n"
    + STATIC_FILES["debate.js"][0]
    + b"\n"
    + STATIC_FILES["widget.js"][0]
    + b"\n})();\n"
)
WIDGET_ETAG = hashlib.sha256(WIDGET_JS).hexdigest()[:16]

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["static"] = lambda name: f"/static/{name}?v={STATIC_FILES[name][2]}"


def render(template: str, t: Translator, status: int = 200, **context: Any) -> HTMLResponse:
    body = templates.get_template(template).render(_=t, lang=t.code, dir=t.dir, languages=language_options(), **context)
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)


_warned_secret = False


def page_key(svc: AppServices) -> str | None:
    """The publishable key the page may use; a secret key is never put in a page."""
    global _warned_secret
    key: str | None = getattr(svc.settings, "page_key", None)
    if key and key.startswith(SECRET_PREFIX):
        if not _warned_secret:
            log.warning(
                "CONSENSUS_PAGE_KEY is a secret sk_ key: ignored, the web page never gets a secret key; "
                "create a publishable one with `consensus keys create --name page --origin URL`"
            )
            _warned_secret = True
        return None
    return key or None


def site_url(request: Request, svc: AppServices) -> str:
    return (svc.settings.public_url or str(request.base_url)).rstrip("/")


def shorten(text: str, limit: int) -> str:
    """Whitespace collapsed, cut to `limit` characters with an ellipsis (debate.js does the same).

    The cut goes back to the last space when there is one in the second half, and never leaves a
    combining mark (a vowel sign, a virama) hanging.
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if flat[limit - 1] == " " or space >= limit // 2:
        return cut[: space if flat[limit - 1] != " " else None].rstrip() + "…"
    while cut and unicodedata.category(cut[-1]).startswith("M"):  # a hard cut inside a word
        cut = cut[:-1]
    return cut + "…"


def enc(text: str) -> str:
    """Percent-encoding exactly like JavaScript's encodeURIComponent (spaces as %20, never '+')."""
    return quote(text, safe="!~*'()")


def share_links(t: Translator, question: str, consensus: str, url: str, earlier: Sequence[str] = ()) -> dict[str, str]:
    """The shared text (question, shortened consensus, link) as WhatsApp and e-mail links. A follow-up's names its
    thread: "Thread of 3 questions:", each question numbered on its own line (debate.js words it the same way)."""
    asked = shorten(question, QUESTION_CHARS)
    subject = shorten(question, 100)
    if earlier:
        named = t("Thread of {n} questions", n=len(earlier) + 1)
        lines = [f"{i}. {shorten(q, THREAD_QUESTION_CHARS)}" for i, q in enumerate([*earlier, question], start=1)]
        asked = f"{named}:\n" + "\n".join(lines)
        subject = shorten(f"{named}: {question}", 100)
    text = f"{asked}\n\n{t('Consensus')}: {shorten(consensus, SHARE_CHARS)}\n\n{url}"
    return {
        "url": url,
        "text": text,
        "whatsapp": "https://wa.me/?text=" + enc(text),
        "mailto": f"mailto:?subject={enc(subject)}&body={enc(text.replace(chr(10), chr(13) + chr(10)))}",
    }


async def box_context(request: Request, svc: AppServices, t: Translator, question: str) -> dict[str, Any]:
    await svc.keys.refresh()
    key = page_key(svc)
    open_service = svc.settings.loopback and not svc.keys.any_keys
    return {
        "question": question[: svc.panel.debate.max_question_chars],
        "max_chars": svc.panel.debate.max_question_chars,
        "not_set_up": not open_service and key is None,
        "config": {"lang": t.code, "key": None if open_service else key, **t.client_strings()},
    }


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, svc: Services, lang: str | None = None) -> HTMLResponse:
    """The question box."""
    t = Translator(negotiate(lang, accept_language=request.headers.get("accept-language")))
    return render("index.html", t, **await box_context(request, svc, t, ""), autofocus=False)


@router.get("/ask", response_class=HTMLResponse)
async def ask(request: Request, svc: Services, q: str = "", lang: str | None = None) -> HTMLResponse:
    """The question box with `q` filled in: one press on Submit runs it (never by itself)."""
    t = Translator(negotiate(lang, accept_language=request.headers.get("accept-language")))
    return render("index.html", t, **await box_context(request, svc, t, q), autofocus=bool(q.strip()))


@router.get("/d/{debate_id}", response_class=HTMLResponse)
async def permalink(debate_id: str, request: Request, svc: Services, lang: str | None = None) -> HTMLResponse:
    """A debate and the thread up to it, readable without JavaScript, with Open Graph tags for link previews."""
    row = await svc.store.get(debate_id)
    accept = request.headers.get("accept-language")
    if row is None:
        return render("not_found.html", Translator(negotiate(lang, accept_language=accept)), status=404)
    result = DebateResult.model_validate(row.result)
    t = Translator(negotiate(lang, result.language, accept_language=accept))
    site = site_url(request, svc)
    earlier = await earlier_turns(svc, row, t, site)
    d = debate_view(result, t, f"{site}/d/{result.id}", earlier)
    box = await box_context(request, svc, t, "")
    follow = await follow_up_config(svc, row, result, earlier)
    config = {**box["config"], "follow_up": follow}
    return render("debate.html", t, d=d, config=config, max_chars=box["max_chars"], question="", autofocus=False)


async def earlier_turns(svc: AppServices, row: DebateRow, t: Translator, site: str) -> list[dict[str, Any]]:
    """The thread before this debate, oldest first, as the panel was given it: a follow-up's finished debates up to
    the one it follows (each with its own permalink), or the turns a caller gave whole (the OpenAI endpoint)."""
    request = row.request or {}
    parent_id = request.get("follow_up_of")
    if parent_id and row.thread_id:
        rows = await svc.store.thread(row.thread_id)
        parent = next((r for r in rows if r.id == parent_id), None)
        upto = (parent.thread_index or 0) if parent is not None else -1
        turns = []
        for r in rows:
            if r.id != row.id and (r.thread_index or 0) <= upto and r.status in FINISHED:
                earlier = DebateResult.model_validate(r.result)
                c = earlier.consensus
                turns.append(
                    {
                        "question": earlier.question,
                        "consensus": c.answer if c else "",
                        "agreement": agreement_text(t, c) if c else None,
                        "url": f"{site}/d/{r.id}",
                    }
                )
        return turns
    given = request.get("thread_context")
    if not given:
        return []
    context = ThreadContext.model_validate(given)
    return [{"question": x.question, "consensus": x.consensus, "agreement": None, "url": None} for x in context.turns]


async def follow_up_config(
    svc: AppServices, row: DebateRow, result: DebateResult, earlier: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """What the permalink's script needs to offer a follow-up, or None when this page's key cannot continue the
    thread (another key started it, or the debate has no consensus). A publishable key's thread also needs its
    cancel token, which only the starter's browser holds (debate.js keeps it): `token` says so."""
    if row.status not in FINISHED or result.consensus is None:
        return None
    key = page_key(svc)
    if key is None and not (svc.settings.loopback and not svc.keys.any_keys):
        return None
    if key is not None:
        own = svc.keys.by_hash.get(hash_key(key))
        if own is None or (row.key_id is not None and row.key_id != own.id):
            return None
    elif row.key_id is not None:
        return None
    return {
        "of": row.id,
        "thread": row.thread_id or row.id,
        "questions": [x["question"] for x in earlier] + [result.question],
        "token": bool((row.request or {}).get("cancel_token_hash")),
    }


@router.get("/widget.js")
async def widget_js(request: Request) -> Response:
    """The embeddable widget: `<script src=".../widget.js" data-key="pk_..." data-question="..." data-lang="hi">`."""
    headers = {
        "ETag": f'"{WIDGET_ETAG}"',
        "Cache-Control": "public, max-age=300",
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(WIDGET_JS, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get("/widget/box")
async def widget_box(request: Request, svc: Services, lang: str | None = None) -> JSONResponse:
    """The widget's box in one language: our own template, CSS and strings (no model data)."""
    t = Translator(negotiate(lang, accept_language=request.headers.get("accept-language")))
    html = templates.get_template("_box.html").render(
        _=t,
        lang=t.code,
        dir=t.dir,
        languages=language_options(),
        question="",
        autofocus=False,
        show_title=True,
        max_chars=svc.panel.debate.max_question_chars,
    )
    body = {
        "lang": t.code,
        "dir": t.dir,
        "html": html,
        "css": STATIC_FILES["consensus.css"][0].decode(),
        "config": {"lang": t.code, **t.client_strings()},
    }
    return JSONResponse(
        body,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Cache-Control": "public, max-age=300",
            "Vary": "Accept-Language",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/static/{name}")
async def static(name: str, request: Request) -> Response:
    found = STATIC_FILES.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    data, media_type, etag = found
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def round_label(t: Translator, index: int) -> str:
    return t("Opening answers") if index == 0 else t("Round {n}", n=index)


def debate_view(r: DebateResult, t: Translator, url: str, earlier: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """What debate.html shows: the thread before it, columns per panelist, positions over rounds, consensus,
    failures, share (naming the thread)."""
    columns = []
    for p in r.panel:
        turns = []
        for rnd in r.rounds:
            a = next((a for a in rnd.answers if a.panelist == p.name), None)
            if a is not None:
                turns.append(
                    {
                        "label": round_label(t, rnd.index),
                        "answer": a.answer,
                        "final": a.final_answer,
                        "error": t.reason(a.error.kind, p.name) if a.error else None,
                    }
                )
        failed = bool(turns) and all(x["error"] for x in turns)
        columns.append({"name": p.name, "model": p.model, "turns": turns, "failed": failed})
    positions = [{"name": p.name, "cells": [_position(t, rnd.answers, p.name) for rnd in r.rounds]} for p in r.panel]
    failures = list(
        dict.fromkeys(t.reason(a.error.kind, a.panelist) for rnd in r.rounds for a in rnd.answers if a.error)
    )
    notes = []
    if r.status.value == "degraded" and failures:
        notes.append(t("Some panelists failed; the result is based on the others."))
    if r.status.value == "failed":
        notes.append(t("The debate failed."))
    elif r.status.value in ("cancelled", "interrupted"):
        notes.append(t("The debate was stopped before it finished."))
    c = r.consensus
    consensus = None
    if c is not None:
        consensus = {
            "text": c.answer,
            "score": c.agreement,
            "majority": c.majority,
            "agreement": agreement_text(t, c),
            "dissent": [
                {"who": ", ".join(d.panelists), "final": d.final_answer, "excerpt": d.excerpt} for d in c.dissent
            ],
            "check": check_mark(t, c),
            "claims": claim_groups(t, c.claims),
            "dropped": dropped_attributions(r),
        }
    running = r.status.value == "running"
    if running:
        description = t("This debate is still running; this page refreshes by itself.")
    else:
        description = shorten(c.answer, SHARE_CHARS) if c else (notes[-1] if notes else "")
    return {
        "id": r.id,
        "question": r.question,
        "status": r.status.value,
        "running": running,
        "url": url,
        "rounds": [round_label(t, rnd.index) for rnd in r.rounds],
        "columns": columns,
        "positions": positions,
        "failures": failures,
        "notes": notes,
        "consensus": consensus,
        "og": {"title": shorten(r.question, QUESTION_CHARS), "description": description},
        "share": share_links(t, r.question, c.answer, url, [x["question"] for x in earlier]) if c else None,
        "thread": list(earlier),
        "thread_title": t("Thread of {n} questions", n=len(earlier) + 1) if earlier else None,
    }


def agreement_text(t: Translator, c: Consensus) -> str:
    """The agreement as every surface words it (Consensus.agreement_label, translated): "100%", or "100% of 2 of 3
    answers (carol missing)" when a seat failed. debate.js words it the same way."""
    pct = f"{round(c.agreement * 100)}%"
    if not c.missing or c.answered is None or c.seats is None:
        return pct
    wording = "{pct} of {answered} of {seats} answers ({missing} missing)"
    return t(wording, pct=pct, answered=c.answered, seats=c.seats, missing=", ".join(c.missing))


def check_mark(t: Translator, c: Consensus) -> dict[str, Any] | None:
    """Whether the consensus shown passed the faithfulness checks, or which fallback it is and why (debate.js
    decides the same way); None for a record with no checks that is no fallback (written before the guard).

    The majority answer has three causes, worded apart from the structured fields: the guard rejected what the
    moderator wrote (`rejected`), the moderator was never asked (no attempt: the time ran out first), or the
    moderator's calls failed. Only the last is a failure of the model."""
    failed = ", ".join(k.name for k in c.checks if not k.passed)
    rejected = [
        {"who": t("Rejected text by {name}", name=w.synthesizer), "checks": _names(w.failed)} for w in c.rejected
    ]
    because = c.majority_because
    majority = because is not None
    view = {"failed": failed, "rejected": rejected, "reason": c.fallback_reason if c.fallback else None}
    if c.checks and not failed and not majority:
        mark = t("Checked against the panel's answers.")
        # a retry, or another seat, wrote it
        note = t("The moderator's first text was not used; this one passed the checks.") if c.fallback else None
        return {"ok": True, "mark": mark, "note": note, **view}
    if not majority and not failed:
        return None
    mark_text = None
    if because == "rejected":
        mark_text = t("The moderator's text did not pass the checks: this is the panel's verified majority answer.")
    elif because == "not_asked":
        mark_text = t("The moderator was not asked: this is the panel's verified majority answer.")
    elif because == "failed":
        mark_text = t("The moderator model failed; the majority answer is shown instead.")
    return {"ok": False, "mark": mark_text, "note": None, **view, "reason": c.fallback_reason}


def _names(checks: Sequence[Any]) -> str:
    return ", ".join(k.name for k in checks)


def dropped_attributions(r: DebateResult) -> list[dict[str, str]]:
    """The attributions the claim map's verification dropped (Analysis.dropped) in the last round that was
    analysed, each with the panelist's name where its label names one, the claim, the quote and our code's
    reason: shown beside the claim map so that what the analyst said and could not back is never hidden."""
    analysis: Analysis | None = next((x.analysis for x in reversed(r.rounds) if x.analysis is not None), None)
    if analysis is None:
        return []
    names = dict(zip(LABELS, (p.name for p in r.panel), strict=False))  # a label's letter is its seat's index
    out = []
    for x in analysis.dropped:
        letter = label_letter(x.panelist)
        out.append(
            {
                "who": names.get(letter, x.panelist) if letter else x.panelist,
                "claim": x.claim,
                "quote": x.quote,
                "reason": x.reason,
            }
        )
    return out


def claim_groups(t: Translator, claims: list[Claim]) -> list[dict[str, Any]]:
    """The claim map by kind (agreed, contested, unique), each claim with who holds it and its quotes on demand."""
    titles = {"agreed": t("Agreed"), "contested": t("Contested"), "unique": t("Unique insights")}
    groups = []
    for kind, title in titles.items():
        items = [_claim(k) for k in claims if k.kind == kind]
        if items:
            groups.append({"kind": kind, "title": title, "claims": items})
    return groups


def _claim(k: Claim) -> dict[str, Any]:
    quotes = [(name, k.quotes[name]) for name in [*k.supporters, *k.opponents] if k.quotes.get(name)]
    return {"text": k.text, "for": ", ".join(k.supporters), "against": ", ".join(k.opponents), "quotes": quotes}


def _position(t: Translator, answers: list[Any], name: str) -> dict[str, Any]:
    a = next((a for a in answers if a.panelist == name), None)
    if a is None:
        return {"text": "—", "failed": False}
    if a.error:
        return {"text": t("Failed"), "failed": True}
    return {"text": a.final_answer or shorten(a.answer, 60), "failed": False}
