"""The web pages over real HTTP (no browser): permalink HTML, share links, headers, languages, keys."""

from __future__ import annotations

import html
import json
import logging
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from babel.messages.pofile import read_po
from markupsafe import escape

from consensus.language import UI_LANGUAGES, is_rtl
from service.settings import Settings
from service.web import shorten
from service.web_i18n import REASONS, UNKNOWN_REASON, Translator, from_accept_language, negotiate
from tests.api.conftest import ServiceServer, ans, stub_panel, wait_status
from tests.api.test_access import make_key

SERVICE = Path(__file__).resolve().parents[2] / "service"
QUESTION = 'Is 2+2 "4" & <b>bold</b>?'


@pytest.fixture(scope="module")
def web(tmp_path_factory, stub_server):
    srv = ServiceServer(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('web')}/svc.db"), stub_panel(stub_server)
    ).start()
    yield srv
    srv.stop()


# The synthesis must pass the faithfulness guard: "Long reasoning. " * 30 was read as Tagalog (language check).
REASONED = "The panel agrees: 4. " + "The reasoning is that two and two make four. " * 12


def agree(stub, final="4", synthesis=REASONED):
    stub.script("alice", [{"text": ans(final)}, {"text": synthesis}])
    for n in ("bob", "carol"):
        stub.script(n, [{"text": ans(final)}])


def finished(web, question=QUESTION, language="en"):
    with web.client() as c:
        return c.post("/v1/debates?wait=true", json={"question": question, "language": language}).json()


def without_config(page: str) -> str:
    """The page without its JSON config block (the interface strings the script needs): what a reader sees."""
    return re.sub(r'<script type="application/json" id="cx-config">.*?</script>', "", page, flags=re.S)


def meta(page: str, prop: str) -> str:
    m = re.search(rf'<meta (?:property|name)="{re.escape(prop)}" content="([^"]*)">', page)
    assert m, prop
    return html.unescape(m.group(1))


def test_permalink_is_escaped_html_with_open_graph_and_share_links(web, stub):
    agree(stub)
    d = finished(web)
    url = f"{web.url}/d/{d['id']}"
    with web.client() as c:
        r = c.get(f"/d/{d['id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    assert '<meta charset="utf-8">' in page
    assert f'<h1 class="cx-question" dir="auto">{escape(QUESTION)}</h1>' in page and QUESTION not in page
    assert "<b>bold</b>" not in page
    assert meta(page, "og:title") == QUESTION
    assert meta(page, "og:url") == url and meta(page, "og:type") == "article"
    description = meta(page, "og:description")
    assert description.startswith("The panel agrees: 4.") and description.endswith("…") and len(description) <= 200

    wa = html.unescape(re.search(r'href="(https://wa\.me/\?text=[^"]+)"', page).group(1))
    text = unquote(wa.removeprefix("https://wa.me/?text="))
    assert text == f"{QUESTION}\n\nConsensus: {description}\n\n{url}"
    assert " " not in wa and "\n" not in wa and "%0A" in wa  # fully percent-encoded
    mailto = html.unescape(re.search(r'href="(mailto:[^"]+)"', page).group(1))
    subject, body = mailto.removeprefix("mailto:?subject=").split("&body=")
    assert unquote(subject) == QUESTION
    assert unquote(body) == text.replace("\n", "\r\n")
    assert "+" not in body  # spaces are %20 in mailto, never '+'


def test_pages_carry_a_strict_content_security_policy(web, stub):
    agree(stub)
    d = finished(web)
    with web.client() as c:
        for path in ("/", "/ask?q=hi", f"/d/{d['id']}", "/d/unknown-id"):
            r = c.get(path)
            csp = r.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp, path
            assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp, path
            assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
            assert "<script>" not in r.text  # no inline script: CSP would block it anyway
        assert c.get("/d/unknown-id").status_code == 404


def test_permalink_shows_failed_panelists_in_plain_words(web, stub):
    agree(stub)
    stub.script("carol", [{"fault": "401"}])
    d = finished(web)
    assert d["status"] == "degraded"
    with web.client() as c:
        page = c.get(f"/d/{d['id']}").text
    assert "carol was refused by its provider (API key)." in page
    assert "Some panelists failed; the result is based on the others." in page
    assert 'class="cx-badge">Failed<' in page


def test_permalink_of_a_running_debate_refreshes_itself(web, stub):
    for n in ("alice", "bob", "carol"):
        stub.script(n, [{"text": ans("4"), "delay_s": 1.5}])
    with web.client() as c:
        debate_id = c.post("/v1/debates", json={"question": "slow?"}).json()["id"]
        page = c.get(f"/d/{debate_id}").text
        wait_status(c, debate_id)  # it must not spill into the next test's stub
        assert '<meta http-equiv="refresh"' not in c.get(f"/d/{debate_id}").text
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "This debate is still running; this page refreshes by itself." in page


def test_language_comes_from_the_query_then_the_browser_then_english(web):
    with web.client() as c:
        ur = c.get("/ask", params={"q": "سوال", "lang": "ur"}).text
        assert '<html lang="ur" dir="rtl">' in ur and "بھیجیں" in ur
        ta = c.get("/", headers={"Accept-Language": "de-DE,ta-IN;q=0.9,en;q=0.5"}).text
        assert '<html lang="ta" dir="ltr">' in ta
        assert '<html lang="fr"' in c.get("/?lang=fr", headers={"Accept-Language": "ta"}).text
        assert '<html lang="en" dir="ltr">' in c.get("/?lang=zz", headers={"Accept-Language": "de"}).text
        config = c.get("/ask?lang=sat").text
        assert '<option value="sat" lang="sat" selected>' in config


def test_permalink_defaults_to_the_debates_language(web, stub):
    agree(stub)
    d = finished(web, question="दो और दो?", language="hi")
    with web.client() as c:
        page = c.get(f"/d/{d['id']}", headers={"Accept-Language": "en"}).text
        assert '<html lang="hi" dir="ltr">' in page and "आम सहमति" in page
        assert '<html lang="ar" dir="rtl">' in c.get(f"/d/{d['id']}?lang=ar").text


def test_ask_fills_the_question_but_never_runs_it(web):
    with web.client() as c:
        before = c.get("/v1/debates", params={"limit": 200}).json()["data"]
        page = c.get("/ask", params={"q": "What is <2+2>?"}).text
        assert ">What is &lt;2+2&gt;?</textarea>" in page
        assert " autofocus>" in page  # Submit has the focus: Enter or one click runs it
        assert c.get("/v1/debates", params={"limit": 200}).json()["data"] == before


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_page_gets_a_publishable_key_never_a_secret_one(tmp_path, stub, monkeypatch):
    monkeypatch.setattr("service.web._warned_secret", False)
    records = Records()
    logging.getLogger("consensus.service").addHandler(records)
    srv = ServiceServer(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/k.db"), stub_panel(stub)).start()
    try:
        with srv.client() as c:
            assert '"key": null' in c.get("/").text  # open loopback service: no key needed
            secret = make_key(srv, "backend")
            public = make_key(srv, "page", [srv.url])
            assert (
                '<p class="cx-notice" role="note">This page is not set up to ask questions yet.</p>' in c.get("/").text
            )
            srv.services.settings.page_key = secret
            page = c.get("/").text
            assert secret not in page and '"key": null' in page
            assert any("is a secret sk_ key: ignored" in m for m in records.messages)
            srv.services.settings.page_key = public
            page = c.get("/").text
            assert f'"key": "{public}"' in page and "cx-notice" not in page
            for path in ("/widget.js", "/widget/box?lang=hi", "/static/debate.js"):
                assert secret not in c.get(path).text
    finally:
        logging.getLogger("consensus.service").removeHandler(records)
        srv.stop()


def test_widget_script_and_box(web):
    with web.client() as c:
        js = c.get("/widget.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        assert "attachShadow" in js.text and "document.currentScript" in js.text
        assert c.get("/widget.js", headers={"If-None-Match": js.headers["etag"]}).status_code == 304
        box = c.get("/widget/box?lang=ur", headers={"Origin": "https://any.example"})
        assert box.headers["access-control-allow-origin"] == "*"
        body = box.json()
        assert body["dir"] == "rtl" and 'lang="ur" dir="rtl"' in body["html"] and "<script" not in body["html"]
        assert body["config"]["messages"]["Submit"] == "بھیجیں"
        assert c.get("/static/nope.js").status_code == 404


# -- the checked consensus: claim map, check mark, missing seats -------------------------------------------------
ESSAYS = {
    "alice": "MLOps and model deployment, LLM evaluation, cost-aware inference",
    "bob": "Model deployment and monitoring (MLOps), evaluation frameworks, latency and cost optimization",
    "carol": "Production deployment with observability, RAG and vector databases, cost-efficient inference. "
    'Evaluation is overrated <img src=x onerror="window.__pwned = 2">',
}
EVIL_CLAIM = "<script>window.__pwned = 1</script> RAG and vector databases"
EVIL_QUOTE = 'Evaluation is overrated <img src=x onerror="window.__pwned = 2">'
SYNTHESIS = (
    "Deploy models to production with MLOps, evaluate them, and keep inference cost low. "
    "Panelist C also stresses RAG and vector databases."
)


def claim(text, asserts=(), contradicts=()):
    """One claim of an analyst's claim map (consensus.claims.CLAIM_MAP_SCHEMA), panelists by label."""
    return {
        "text": text,
        "asserts": [{"panelist": p, "quote": q} for p, q in asserts],
        "contradicts": [{"panelist": p, "quote": q} for p, q in contradicts],
    }


DEPLOYMENT = [("A", "model deployment"), ("B", "Model deployment"), ("C", "Production deployment")]
EVALUATION = [("A", "LLM evaluation"), ("B", "evaluation frameworks")]
CLAIMS = [
    claim("Deploying models to production", DEPLOYMENT),
    claim("Evaluation frameworks matter", EVALUATION, [("C", EVIL_QUOTE)]),
    claim(EVIL_CLAIM, [("C", "RAG and vector databases")]),
]
CLAIM_MAP = json.dumps({"claims": CLAIMS, "positions": [["A", "B"], ["C"]]})


def script_claim_map(stub):
    """Open answers and a verified claim map with agreed, contested and unique claims, whose model text carries HTML
    (a <script> in a claim, an <img onerror> in a quote): round 0 agrees 2 of 3, so the one debate round runs, the
    analyst (alice, the synthesizer) maps it again, then alice writes the consensus."""
    essays = {n: {"text": ans(text, text, 0.8)} for n, text in ESSAYS.items()}
    analysis = {"text": CLAIM_MAP}
    stub.script("alice", [essays["alice"], analysis, essays["alice"], analysis, {"text": SYNTHESIS}])
    for n in ("bob", "carol"):
        stub.script(n, [essays[n], essays[n]])


def test_permalink_without_javascript_shows_the_claim_map_escaped(web, stub):
    script_claim_map(stub)
    d = finished(web, question="Which three production-ready skills should an AI engineer prioritize?")
    c = d["consensus"]
    assert c["source"] == "synthesis" and all(k["passed"] for k in c["checks"]), c["checks"]
    assert {k["kind"] for k in c["claims"]} == {"agreed", "contested", "unique"}
    with web.client() as client:
        page = client.get(f"/d/{d['id']}").text
    start = page.index('<section class="cx-claims"')
    claims = page[start : page.index("</section>", start)]
    assert "<h3" in claims and ">Claim map</h3>" in claims
    for kind, title in (("agreed", "Agreed"), ("contested", "Contested"), ("unique", "Unique insights")):
        assert f'<div class="cx-claim-group" data-kind="{kind}">\n      <h4>{title}</h4>' in claims
    assert '<strong class="cx-for">alice, bob, carol</strong>' in claims  # who holds the agreed claim
    contested = claims[claims.index('data-kind="contested"') : claims.index('data-kind="unique"')]
    assert '<strong class="cx-for">alice, bob</strong>' in contested
    assert "Against: <strong>carol</strong>" in contested
    # The quotes are there on demand, in a closed <details>.
    assert claims.count('<details class="cx-quotes">') == 3 and "<details open" not in claims
    assert "<summary>Quotes</summary>" in claims
    assert '<li><strong>bob</strong>: <q dir="auto">evaluation frameworks</q></li>' in claims
    # Model text is escaped: the claim's <script> and the quote's <img onerror> are text, never markup.
    assert f'<p class="cx-claim-text" dir="auto">{escape(EVIL_CLAIM)}</p>' in claims
    assert f'<q dir="auto">{escape(EVIL_QUOTE)}</q>' in claims
    assert "<script>window" not in page and "<img" not in page and "__pwned" in page
    # The mark: checked against the panel's answers.
    assert '<div class="cx-check cx-check-ok">' in page and "Checked against the panel&#39;s answers." in page


def test_permalink_says_which_seat_is_missing_never_a_bare_100_percent(web, stub):
    agree(stub)
    stub.script("carol", [{"fault": "401"}])
    d = finished(web)
    c = d["consensus"]
    assert c["agreement"] == 1.0 and c["missing"] == ["carol"] and (c["answered"], c["seats"]) == (2, 3)
    with web.client() as client:
        page = client.get(f"/d/{d['id']}").text
    assert '<span class="cx-c-pct">100% of 2 of 3 answers (carol missing)</span>' in page
    assert ">100%<" not in page
    assert "Checked against the panel&#39;s answers." in page
    with web.client() as client:  # the wording follows the page's language
        hindi = client.get(f"/d/{d['id']}?lang=hi").text
    assert '<span class="cx-c-pct">100%, 2/3 जवाबों पर (carol का जवाब नहीं)</span>' in hindi


def test_permalink_marks_the_majority_fallback_and_says_why(web, stub):
    echo = "<<<DATA-0123456789ab QUESTION\nWhat is 2+2?\nDATA-0123456789ab>>>"
    stub.script("alice", [{"text": ans("4")}, {"text": echo}, {"text": echo}])
    stub.script("bob", [{"text": ans("4")}, {"text": echo}])
    stub.script("carol", [{"text": ans("4")}])
    d = finished(web, question="What is 2+2?")
    c = d["consensus"]
    assert c["source"] == "majority_answer" and c["fallback"] and "no_scaffolding" in c["fallback_reason"]
    with web.client() as client:
        page = client.get(f"/d/{d['id']}").text
    start = page.index('<div class="cx-check')
    mark = page[start : page.index("</div>", start)]
    assert 'class="cx-check cx-check-fallback"' in mark
    # The guard rejected what the moderator wrote: no model failed, and the page says so (it said "failed").
    assert "The moderator&#39;s text did not pass the checks: this is the panel&#39;s verified majority answer." in mark
    assert "failed" not in mark.split('<p class="cx-why"')[0].lower()
    assert [html.unescape(x) for x in re.findall(r"<li>([^<]*): <code", mark)] == [
        f"Rejected text by {w['synthesizer']}" for w in c["rejected"]
    ]
    assert "no_scaffolding" in re.search(r"<li>Rejected text by alice: <code dir=\"ltr\">([^<]*)</code>", mark).group(1)
    assert "Checked against" not in without_config(page)
    why = re.search(r'<p class="cx-why" dir="ltr">([^<]*)</p>', mark).group(1)
    assert html.unescape(why) == c["fallback_reason"] and "no_scaffolding" in why
    assert "<<<DATA" not in page  # the echoed fence, in the reason, is escaped


def test_the_check_mark_decides_each_source_and_old_records():
    """check_mark: checked (synthesis, synthesis_retry, fallback_seat, every check passed) or the fallback it is."""
    from consensus.types import Check, Consensus, RejectedWriting
    from service.web import check_mark

    t = Translator("en")
    passed = [Check(name="not_empty", passed=True), Check(name="language", passed=True)]
    base = {"answer": "x", "agreement": 1.0, "majority": "4", "synthesizer": "alice", "checks": passed}
    ok = check_mark(t, Consensus(**base))
    assert ok["ok"] and ok["mark"] == "Checked against the panel's answers." and ok["note"] is None
    retry = check_mark(t, Consensus(**base, source="synthesis_retry", fallback=True, fallback_reason="why"))
    assert retry["ok"] and retry["note"].startswith("The moderator's first text was not used")
    assert retry["reason"] == "why"
    failed = [*passed, Check(name="majority_answer", passed=False, detail="states '5'")]
    majority = {**base, "checks": failed, "source": "majority_answer", "fallback": True, "synthesizer": None}
    # The moderator's calls failed (it was asked: attempts) and nothing was rejected: a real failure.
    broken = check_mark(t, Consensus(**majority, attempts=2))
    assert not broken["ok"] and broken["failed"] == "majority_answer" and broken["rejected"] == []
    assert broken["mark"] == "The moderator model failed; the majority answer is shown instead."
    # The guard rejected the moderator's writings: not a failure of the model.
    writing = RejectedWriting(synthesizer="alice", failed=[Check(name="no_scaffolding", passed=False)])
    guarded = check_mark(t, Consensus(**majority, attempts=2, rejected=[writing, writing]))
    assert guarded["mark"] == (
        "The moderator's text did not pass the checks: this is the panel's verified majority answer."
    )
    assert guarded["rejected"] == [{"who": "Rejected text by alice", "checks": "no_scaffolding"}] * 2
    assert "failed" not in guarded["mark"]
    # The time ran out before the synthesis: the moderator was never asked.
    late = check_mark(t, Consensus(**majority, fallback_reason="deadline before synthesis"))
    assert late["mark"] == "The moderator was not asked: this is the panel's verified majority answer."
    assert late["reason"] == "deadline before synthesis"
    assert check_mark(Translator("ur"), Consensus(**majority, rejected=[writing]))["mark"].startswith("ناظم کا متن")
    old = {k: v for k, v in base.items() if k != "checks"}
    assert check_mark(t, Consensus(**old)) is None  # written before the guard: no claim either way
    assert not check_mark(t, Consensus(**old, fallback=True))["ok"]  # an old fallback was the majority answer


# -- the message catalogues -----------------------------------------------------------------------------
def catalogue(code):
    with (SERVICE / "locales" / f"{code}.po").open("rb") as f:
        return read_po(f)


def test_every_language_has_a_complete_catalogue():
    english = {m.id: m.string for m in catalogue("en") if m.id}
    assert 25 <= len(english) <= 80  # every string is translated by hand into 25 languages: keep the list short
    assert sorted(p.stem for p in (SERVICE / "locales").glob("*.po")) == sorted(UI_LANGUAGES)
    for code in UI_LANGUAGES:
        cat = catalogue(code)
        messages = {m.id: m.string for m in cat if m.id}
        assert set(messages) == set(english), code
        for msgid, text in messages.items():
            assert text.strip(), (code, msgid)
            assert re.findall(r"\{\w+\}", text) == re.findall(r"\{\w+\}", msgid), (code, msgid)
        if code != "en":
            same = [m for m in messages if messages[m] == m]
            assert len(same) <= 3, (code, same)  # a few words are the same ("Question" in French)
            assert "native speaker" in (cat.header_comment or ""), code


def test_every_string_the_interface_uses_is_in_the_catalogue():
    msgids = {m.id for m in catalogue("en") if m.id}
    used = set()
    for tpl in (SERVICE / "templates").glob("*.html"):
        used |= set(re.findall(r"""_\(\s*["']([^"']+)["']""", tpl.read_text(encoding="utf-8")))
    js = (SERVICE / "static" / "debate.js").read_text(encoding="utf-8")
    used |= {s.encode().decode("unicode_escape") for s in re.findall(r'\bt\("([^"]+)"', js)}
    web_py = (SERVICE / "web.py").read_text(encoding="utf-8")
    used |= set(re.findall(r'\bt\("([^"]+)"', web_py)) | set(re.findall(r"\bt\('([^']+)'", web_py))
    used |= set(REASONS.values()) | {UNKNOWN_REASON}
    assert len(used) > 40
    assert used <= msgids, used - msgids
    assert msgids <= used, msgids - used  # no dead entries


def test_rtl_languages_render_right_to_left():
    for code in UI_LANGUAGES:
        assert Translator(code).dir == ("rtl" if is_rtl(code) else "ltr")
    assert {c for c in UI_LANGUAGES if is_rtl(c)} == {"ar", "ur", "sd", "ks"}


def test_negotiation_and_reasons():
    assert from_accept_language("en;q=0.1, hi-IN;q=0.8, *;q=0.5") == "hi"
    assert from_accept_language("mni-Beng-IN, en") == "mni"
    assert from_accept_language("de, zh;q=0.9") is None and from_accept_language("") is None
    assert from_accept_language("hi;q=0, bn;q=0.2") == "bn"
    assert negotiate(None, "garbage", "kok", accept_language="hi") == "kok"
    assert negotiate(None, accept_language=None) == "en"
    t = Translator("hi")
    assert t.reason("timeout", "alice") == "alice ने समय पर जवाब नहीं दिया।"
    assert t.reason("something new", "bob") == "bob किसी अज्ञात कारण से विफल रहा।"
    assert t("Round {n}", n=3) == "दौर 3"


def test_shorten_counts_characters_and_marks_the_cut():
    assert shorten("a  b\n\nc", 10) == "a b c"
    assert shorten("नमस्ते दुनिया " * 20, 12) == "नमस्ते…"  # back to the word's end
    assert shorten("दुनिया" * 10, 5) == "दुन…"  # no word to end at: no dangling vowel sign either
    assert len(shorten("x" * 500, 200)) == 200 and shorten("x" * 500, 200).endswith("x…")
