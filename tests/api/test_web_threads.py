"""Threads on the web pages over plain HTTP (no browser, no JavaScript): the permalink shows the thread up to its
debate, escaped; the share text names the thread; the follow-up box is offered only to whoever may continue."""

from __future__ import annotations

import html
import json
import re
from urllib.parse import unquote

import pytest
from markupsafe import escape

from service.settings import Settings
from tests.api.conftest import ServiceServer, ans, stub_panel
from tests.api.test_access import make_key
from tests.api.test_web import CLAIM_MAP, ESSAYS, without_config

EVIL = '<img src=x onerror="window.__pwned = true">'  # no digit: the guard reads a stated number
QUESTIONS = [f"What is 2 + 2? {EVIL}", "And why is that so? <b>bold</b> & more", "What about 3 + 3?"]


@pytest.fixture(scope="module")
def web(tmp_path_factory, stub_server):
    srv = ServiceServer(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('threads')}/svc.db"),
        stub_panel(stub_server),
    ).start()
    yield srv
    srv.stop()


def script_turn(stub, turn: int, carol_down: bool = False) -> None:
    """Every seat answers `turn`; alice (the synthesizer) writes a consensus that carries HTML."""
    stub.reset()
    stub.script("alice", [{"text": ans(str(turn))}, {"text": f"Consensus of turn {turn}: the panel agrees. {EVIL}"}])
    stub.script("bob", [{"text": ans(str(turn))}])
    stub.script("carol", [{"fault": "401"}] if carol_down else [{"text": ans(str(turn))}])


def ask(client, question, follow_up_of=None, headers=None):
    body = {"question": question, "language": "en", **({"follow_up_of": follow_up_of} if follow_up_of else {})}
    r = client.post("/v1/debates?wait=true", json=body, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def three_turns(web, stub) -> list[dict]:
    """A thread of three debates; carol is down in the first (a degraded turn)."""
    done: list[dict] = []
    with web.client() as c:
        for turn, q in enumerate(QUESTIONS, 1):
            script_turn(stub, turn, carol_down=turn == 1)
            done.append(ask(c, q, done[-1]["id"] if done else None))
    assert [d["status"] for d in done] == ["degraded", "completed", "completed"]
    return done


def thread_section(page: str) -> str:
    start = page.index('<section class="cx-thread"')
    return page[start : page.index("</section>", start)]


def test_the_permalink_shows_the_whole_thread_up_to_its_debate_escaped_without_javascript(web, stub):
    d1, d2, d3 = three_turns(web, stub)
    assert EVIL in d1["consensus"]["answer"]  # the model's HTML reached the record: the page must escape it
    with web.client() as c:
        r = c.get(f"/d/{d3['id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    page = r.text
    thread = thread_section(page)
    assert '<h2 id="cx-thread-h">Thread of 3 questions</h2>' in thread
    # Every earlier question and its consensus, in order, escaped, each linked to its own permalink.
    at = [thread.index(str(escape(QUESTIONS[0]))), thread.index(str(escape(QUESTIONS[1])))]
    assert at == sorted(at)
    for d in (d1, d2):
        assert f'<a href="{web.url}/d/{d["id"]}">{escape(d["question"])}</a>' in thread
        assert f'<div class="cx-text" dir="auto">{escape(d["consensus"]["answer"])}</div>' in thread
    # The current question closes the list; the question itself heads the page as before.
    assert (
        f'<li class="cx-turn-current" aria-current="page"><p class="cx-thread-q" dir="auto">{escape(QUESTIONS[2])}'
        in (thread)
    )
    assert f'<h1 class="cx-question" dir="auto">{escape(QUESTIONS[2])}</h1>' in page
    # Degraded honesty in the thread too: the first turn's agreement names the missing seat, never a bare 100%.
    assert "Agreement: 100% of 2 of 3 answers (carol missing)" in thread
    # Nothing a model or a user wrote became markup.
    visible = without_config(page)
    assert "<img" not in visible and "<b>bold</b>" not in visible and "window.__pwned" in visible


def test_a_permalink_shows_no_later_follow_up_and_the_first_no_thread(web, stub):
    d1, d2, _d3 = three_turns(web, stub)
    with web.client() as c:
        first = c.get(f"/d/{d1['id']}").text
        second = c.get(f"/d/{d2['id']}").text
    assert 'id="cx-thread-h"' not in first  # a question that starts a thread is shown alone
    assert str(escape(QUESTIONS[1])) not in without_config(first)  # the link shared earlier reveals no later turn
    thread = thread_section(second)
    assert "Thread of 2 questions" in thread and str(escape(QUESTIONS[2])) not in second


def test_the_share_text_names_the_thread_with_every_question_and_the_permalink(web, stub):
    _d1, _d2, d3 = three_turns(web, stub)
    url = f"{web.url}/d/{d3['id']}"
    with web.client() as c:
        page = c.get(f"/d/{d3['id']}").text
    wa = html.unescape(re.search(r'href="(https://wa\.me/\?text=[^"]+)"', page).group(1))
    text = unquote(wa.removeprefix("https://wa.me/?text="))
    consensus = d3["consensus"]["answer"]
    expected = (
        "Thread of 3 questions:\n"
        f"1. {QUESTIONS[0]}\n2. {QUESTIONS[1]}\n3. {QUESTIONS[2]}\n\n"
        f"Consensus: {consensus}\n\n{url}"
    )
    assert text == expected
    mailto = html.unescape(re.search(r'href="(mailto:[^"]+)"', page).group(1))
    subject, body = mailto.removeprefix("mailto:?subject=").split("&body=")
    assert unquote(subject) == f"Thread of 3 questions: {QUESTIONS[2]}"
    assert unquote(body) == expected.replace("\n", "\r\n")
    with web.client() as c:  # in another language, the thread's name follows the page
        hindi = c.get(f"/d/{d3['id']}?lang=hi").text
    assert "3 सवालों की कड़ी" in unquote(html.unescape(re.search(r'href="(https://wa\.me/[^"]+)"', hindi).group(1)))


def config(page: str) -> dict | None:
    m = re.search(r'<script type="application/json" id="cx-config">(.*?)</script>', page, flags=re.S)
    return json.loads(m.group(1)) if m else None


def test_the_follow_up_box_is_in_the_permalink_for_the_script_to_reveal(web, stub):
    _d1, d2, d3 = three_turns(web, stub)
    with web.client() as c:
        page = c.get(f"/d/{d3['id']}").text
    follow = config(page)["follow_up"]
    assert follow == {
        "of": d3["id"],
        "thread": _d1["id"],
        "questions": QUESTIONS,
        "token": False,  # an open loopback service: no key, no token
    }
    box = page[page.index('<template data-role="follow-up-box">') : page.index("</template>")]
    assert '<div class="cx-follow-up-box">' in box  # inert until the script puts it in the page: it needs JavaScript
    assert '<label class="cx-label" for="cx-f-follow">Ask a follow-up</label>' in box
    assert 'data-role="form" method="get" action="/ask" hidden>' in box  # no new question in a permalink's box
    ids = re.findall(r' id="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # the box's ids do not clash with the page's
    with web.client() as c:  # a running or failed debate offers none
        stub.reset()
        stub.script("alice", [{"fault": "401"}])
        stub.script("bob", [{"fault": "401"}])
        stub.script("carol", [{"fault": "401"}])
        failed = c.post("/v1/debates?wait=true", json={"question": "all down?"}).json()
        assert failed["status"] == "failed"
        page = c.get(f"/d/{failed['id']}").text
    assert config(page) is None and "cx-follow-up-box" not in page


def test_a_publishable_page_key_needs_the_threads_token_and_another_keys_thread_gets_no_box(tmp_path, stub):
    srv = ServiceServer(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/k.db"), stub_panel(stub)).start()
    try:
        page_key = make_key(srv, "page", [srv.url])
        backend = make_key(srv, "backend")
        srv.services.settings.page_key = page_key
        with srv.client() as c:
            script_turn(stub, 1)
            mine = c.post(
                "/v1/debates?wait=true",
                json={"question": "What is 1?"},
                headers={"Authorization": f"Bearer {page_key}", "Origin": srv.url},
            )
            token = mine.headers["x-cancel-token"]
            script_turn(stub, 2)
            theirs = ask(c, "What is 2?", headers={"Authorization": f"Bearer {backend}"})
            own_page = c.get(f"/d/{mine.json()['id']}").text
            other_page = c.get(f"/d/{theirs['id']}").text
        follow = config(own_page)["follow_up"]
        assert follow["token"] is True and follow["of"] == mine.json()["id"]
        assert token not in own_page  # the token lives in the starter's browser only, never in a shared page
        assert config(other_page) is None and "cx-follow-up-box" not in other_page
    finally:
        srv.services.settings.page_key = None
        srv.stop()


def script_invented_quote(stub) -> str:
    """The claim map's panel, with an analyst that invents a quote (with HTML in it) for bob, twice: as
    "Panelist B" and as "B". Returns the invented quote."""
    invented = f"Evaluation is useless {EVIL}"
    claims = json.loads(CLAIM_MAP)
    claims["claims"][0]["asserts"].append({"panelist": "Panelist B", "quote": invented})
    claims["claims"][1]["asserts"][1] = {"panelist": "B", "quote": invented}
    analysis = {"text": json.dumps(claims)}
    essays = {n: {"text": ans(text, text, 0.8)} for n, text in ESSAYS.items()}
    stub.reset()
    stub.script("alice", [essays["alice"], analysis, essays["alice"], analysis, {"text": "The panel agrees."}])
    for n in ("bob", "carol"):
        stub.script(n, [essays[n], essays[n]])
    return invented


def test_dropped_attributions_are_listed_beside_the_claim_map_escaped(web, stub):
    """An analyst that invents a quote for bob: the attribution is dropped, and the page says so."""
    invented = script_invented_quote(stub)
    with web.client() as c:
        d = c.post("/v1/debates?wait=true", json={"question": "Which skills matter?", "language": "en"}).json()
        page = c.get(f"/d/{d['id']}").text
    dropped = d["rounds"][-1]["analysis"]["dropped"]
    assert dropped and any(x["quote"] == invented for x in dropped)
    start = page.index('<details class="cx-dropped">')
    section = page[start : page.index("</details>", start)]
    assert f"<summary>Dropped attributions: {len(dropped)}</summary>" in section
    assert "Our code could not verify these attributions, so they were left out of the claim map." in section
    assert '<strong dir="auto">bob</strong>: ' in section  # the label "Panelist B" shown as the panelist's name
    assert f'<q dir="auto">{escape(invented)}</q>' in section
    assert "quote not found in the answer of Panelist B" in section
    assert "<img" not in without_config(page)


def test_the_widget_box_carries_the_follow_up_box_right_to_left(web):
    for code in ("ar", "ur", "sd", "ks"):
        with web.client() as c:
            body = c.get(f"/widget/box?lang={code}").json()
        assert body["dir"] == "rtl" and f'lang="{code}" dir="rtl"' in body["html"]
        follow = body["config"]["messages"]["Ask a follow-up"]
        assert follow != "Ask a follow-up" and f'for="cx-follow">{follow}</label>' in body["html"]
        assert 'data-role="follow-form" hidden' in body["html"]
