"""The web interface: the question page, the permalink, the embeddable widget (no front-end build).

Pages are rendered by Jinja2 with autoescaping; model output reaches the browser only as escaped
text (server side) or through textContent (static/debate.js). No inline script: data for scripts
travels in a JSON <script type="application/json"> block, so the CSP can forbid inline code.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from consensus.types import Claim, Consensus, DebateResult
from service.deps import Services
from service.security import SECRET_PREFIX
from service.services import AppServices
from service.web_i18n import Translator, language_options, negotiate

log = logging.getLogger("consensus.service")
router = APIRouter(include_in_schema=False)

HERE = Path(__file__).parent
STATIC = HERE / "static"
SHARE_CHARS = 200  # the consensus in a shared message or a link preview
QUESTION_CHARS = 300

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


def share_links(t: Translator, question: str, consensus: str, url: str) -> dict[str, str]:
    """The shared text (question, shortened consensus, link) as WhatsApp and e-mail links."""
    text = f"{shorten(question, QUESTION_CHARS)}\n\n{t('Consensus')}: {shorten(consensus, SHARE_CHARS)}\n\n{url}"
    return {
        "url": url,
        "text": text,
        "whatsapp": "https://wa.me/?text=" + enc(text),
        "mailto": f"mailto:?subject={enc(shorten(question, 100))}&body={enc(text.replace(chr(10), chr(13) + chr(10)))}",
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
    """A debate, readable without JavaScript, with Open Graph tags for link previews."""
    row = await svc.store.get(debate_id)
    accept = request.headers.get("accept-language")
    if row is None:
        return render("not_found.html", Translator(negotiate(lang, accept_language=accept)), status=404)
    result = DebateResult.model_validate(row.result)
    t = Translator(negotiate(lang, result.language, accept_language=accept))
    url = f"{site_url(request, svc)}/d/{result.id}"
    return render("debate.html", t, d=debate_view(result, t, url))


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


def debate_view(r: DebateResult, t: Translator, url: str) -> dict[str, Any]:
    """What debate.html shows: columns per panelist, positions over rounds, consensus, failures, share."""
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
        "share": share_links(t, r.question, c.answer, url) if c else None,
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
    decides the same way); None for a record with no checks that is no fallback (written before the guard)."""
    failed = ", ".join(k.name for k in c.checks if not k.passed)
    # fallback with source "synthesis": a record from before sources, when every fallback was the majority answer
    majority = c.source == "majority_answer" or (c.fallback and c.source == "synthesis")
    if c.checks and not failed and not majority:
        mark = t("Checked against the panel's answers.")
        if not c.fallback:
            return {"ok": True, "mark": mark, "note": None, "failed": "", "reason": None}
        # a retry, or another seat, wrote it
        note = t("The moderator's first text was not used; this one passed the checks.")
        return {"ok": True, "mark": mark, "note": note, "failed": "", "reason": c.fallback_reason}
    if not majority and not failed:
        return None
    mark_text = t("The moderator model failed; the majority answer is shown instead.") if majority else None
    return {"ok": False, "mark": mark_text, "note": None, "failed": failed, "reason": c.fallback_reason}


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
