"""Follow-up questions in Chromium: the box under a finished consensus on the page, the permalink and the widget,
right to left in Arabic, the thread's token for a publishable key, and model text shown as text."""

from __future__ import annotations

import json
from urllib.parse import quote, unquote, urlencode

import pytest

from tests.api.test_web_threads import EVIL, script_turn
from tests.browser.conftest import make_key

pytestmark = pytest.mark.browser


def posts(page) -> list[dict]:
    """Every POST /v1/debates the page makes: its body and headers."""
    seen: list[dict] = []

    def record(request) -> None:
        if request.method == "POST" and request.url.endswith("/v1/debates"):
            seen.append({"body": json.loads(request.post_data or "{}"), "headers": request.headers})

    page.on("request", record)
    return seen


def finished(root, n: int) -> None:
    """Wait until the box's n-th debate of its thread ended: the share section and the follow-up box show, and the
    thread above lists its n questions (none for the first: a question alone is no thread)."""
    root.locator('[data-role="follow-form"]').wait_for(state="visible")
    root.locator('[data-role="share"]').wait_for(state="visible")
    thread = root.locator('[data-role="thread"]')
    if n == 1:
        assert thread.is_hidden()
    else:
        assert thread.locator('[data-role="thread-list"] > li').count() == n


def ask_follow_up(root, question: str) -> None:
    field = root.locator('[data-role="follow-question"]')
    field.fill(question)
    root.locator('[data-role="follow-submit"]').click()
    root.locator('[data-role="follow-form"]').wait_for(state="hidden")


def test_the_page_asks_a_follow_up_under_the_consensus_and_shares_the_thread(page, web, stub, artifacts):
    sent = posts(page)
    script_turn(stub, 1)
    page.goto(f"{web.url}/ask?q={quote('What is 1 + 0?')}&lang=en")
    page.get_by_role("button", name="Submit").click()
    finished(page, 1)
    box = page.locator('[data-role="follow-form"]')
    # The box sits under the finished consensus.
    assert box.locator("label").inner_text() == "Ask a follow-up"
    assert box.bounding_box()["y"] > page.locator('[data-role="consensus"]').bounding_box()["y"]
    first_id = page.locator('[data-role="permalink"]').get_attribute("href").rsplit("/", 1)[1]

    script_turn(stub, 2)
    second = f"And why? {EVIL}"
    ask_follow_up(page, second)
    finished(page, 2)
    assert sent[1]["body"] == {"question": second, "follow_up_of": first_id}  # the thread keeps its language
    assert "What is 1 + 0?" in json.dumps(stub.requests("bob")[0]["messages"])  # the panel was given the thread
    # The thread above the live view: the first question and its consensus (model HTML as text), then this one.
    thread = page.locator('[data-role="thread"]')
    assert thread.locator("h2").inner_text() == "Thread of 2 questions"
    earlier = thread.locator(".cx-turn-earlier")
    assert earlier.locator("a").inner_text() == "What is 1 + 0?"
    assert earlier.locator("a").get_attribute("href") == f"{web.url}/d/{first_id}"
    assert earlier.locator(".cx-text").inner_text() == f"Consensus of turn 1: the panel agrees. {EVIL}"
    assert thread.locator(".cx-turn-current").inner_text() == second
    assert page.locator("main img").count() == 0 and page.evaluate("window.__pwned") is None
    page.screenshot(path=str(artifacts / "follow-up.png"), full_page=True)

    # The share text names the thread, and the server-rendered permalink shares exactly the same.
    wa = page.locator('[data-role="whatsapp"]').get_attribute("href")
    text = unquote(wa.removeprefix("https://wa.me/?text="))
    assert text.startswith(f"Thread of 2 questions:\n1. What is 1 + 0?\n2. {second}\n\nConsensus: ")
    permalink = page.locator('[data-role="permalink"]').get_attribute("href")
    page.goto(permalink)
    assert page.locator("article > .cx-share a.cx-wa").get_attribute("href") == wa
    assert page.locator("article > .cx-thread h2").inner_text() == "Thread of 2 questions"


def test_a_follow_up_from_the_permalink_continues_the_thread(page, web, stub):
    script_turn(stub, 1)
    with web.client() as c:
        first = c.post("/v1/debates?wait=true", json={"question": "What is 1 + 0?", "language": "en"}).json()
    sent = posts(page)
    page.goto(f"{web.url}/d/{first['id']}")
    box = page.locator(".cx-follow-up-box [data-consensus-box]")  # put in the page by its script
    assert box.locator('[data-role="form"]').is_hidden()  # only the follow-up: this page's question is asked
    script_turn(stub, 2)
    ask_follow_up(box, "And what is 2 + 0?")
    box.locator('[data-role="share"]').wait_for(state="visible")
    assert sent[0]["body"] == {"question": "And what is 2 + 0?", "follow_up_of": first["id"]}
    # The page above shows the first question; the box numbers its own from 2.
    assert box.locator('[data-role="thread-list"]').get_attribute("start") == "2"
    assert box.locator('[data-role="thread"] h2').inner_text() == "Thread of 2 questions"
    assert "Consensus of turn 2" in box.locator('[data-role="c-text"]').inner_text()
    second = box.locator('[data-role="permalink"]').get_attribute("href").rsplit("/", 1)[1]
    with web.client() as c:
        thread = c.get(f"/v1/threads/{second}").json()
    assert [d["id"] for d in thread["data"]] == [first["id"], second]


def test_the_follow_up_box_in_arabic_lays_out_right_to_left(page, web, stub, artifacts):
    script_turn(stub, 1)
    page.goto(f"{web.url}/ask?q={quote('كم يساوي واحد زائد صفر؟')}&lang=ar")
    assert page.locator("html").get_attribute("dir") == "rtl"
    page.locator('[data-role="submit"]').click()
    finished(page, 1)
    form = page.locator('[data-role="follow-form"]')
    label = form.locator("label")
    assert label.inner_text() == "اطرح سؤال متابعة"
    assert form.evaluate("e => getComputedStyle(e).direction") == "rtl"
    # Right to left: the label's text hugs the form's right edge.
    left, right = label.evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e); const b = r.getBoundingClientRect();"
        " return [b.left, b.right]; }"
    )
    fb = form.bounding_box()
    assert right > fb["x"] + fb["width"] - 40 and left > fb["x"] + fb["width"] / 2
    script_turn(stub, 2)
    ask_follow_up(page, "ولماذا؟")
    finished(page, 2)
    thread = page.locator('[data-role="thread"]')
    assert thread.locator("h2").inner_text() == "سلسلة من 2 أسئلة"
    assert thread.evaluate("e => getComputedStyle(e).direction") == "rtl"
    wa = unquote(page.locator('[data-role="whatsapp"]').get_attribute("href"))
    assert "سلسلة من 2 أسئلة:\n1. كم يساوي واحد زائد صفر؟\n2. ولماذا؟" in wa
    page.screenshot(path=str(artifacts / "follow-up-arabic.png"), full_page=True)


def test_a_publishable_page_key_continues_only_in_the_browser_that_holds_the_token(browser, keyed_web, stub):
    page_key = make_key(keyed_web, "thread-page", [keyed_web.url])
    keyed_web.services.settings.page_key = page_key
    try:
        context = browser.new_context()
        pg = context.new_page()
        sent = posts(pg)
        tokens: list[str] = []
        pg.on("response", lambda r: tokens.append(r.headers["x-cancel-token"]) if "x-cancel-token" in r.headers else 0)
        script_turn(stub, 1)
        pg.goto(f"{keyed_web.url}/ask?q={quote('What is 1 + 0?')}")
        pg.get_by_role("button", name="Submit").click()
        finished(pg, 1)
        script_turn(stub, 2)
        ask_follow_up(pg, "And why?")
        finished(pg, 2)
        assert len(tokens) == 1 and sent[1]["headers"]["x-cancel-token"] == tokens[0]  # the thread's token
        assert "x-cancel-token" not in sent[0]["headers"]
        # The starter's browser kept it: its permalink offers the follow-up box.
        permalink = pg.locator('[data-role="permalink"]').get_attribute("href")
        pg.goto(permalink)
        pg.locator(".cx-follow-up-box [data-role='follow-form']").wait_for(state="visible")
        context.close()
        # Anyone else given the link reads the whole thread, and is offered no follow-up.
        other = browser.new_context()
        try:
            po = other.new_page()
            po.goto(permalink)
            assert po.locator("article > .cx-thread h2").inner_text() == "Thread of 2 questions"
            assert po.locator(".cx-follow-up-box").count() == 0 and po.locator("template").count() == 1
        finally:
            other.close()
    finally:
        keyed_web.services.settings.page_key = None


def test_the_widget_asks_a_follow_up_with_the_threads_token(page, host_site, keyed_web, stub):
    key = make_key(keyed_web, "thread-widget", [host_site.origin("localhost")])
    sent = posts(page)
    script_turn(stub, 1)
    page.goto(
        f"{host_site.origin()}/host?" + urlencode({"api": keyed_web.url, "key": key, "question": "What is 1 + 0?"})
    )
    box = page.locator("consensus-debate [data-consensus-box]")
    box.locator('[data-role="submit"]').click()
    finished(box, 1)
    script_turn(stub, 2)
    ask_follow_up(box, "And why?")
    finished(box, 2)
    assert sent[1]["body"]["follow_up_of"] and sent[1]["headers"]["x-cancel-token"]  # read across origins (CORS)
    assert box.locator('[data-role="thread"] .cx-turn-earlier a').inner_text() == "What is 1 + 0?"
    assert "Consensus of turn 2" in box.locator('[data-role="c-text"]').inner_text()
    assert page.evaluate("Object.keys(localStorage)") == []  # the host site's storage is not ours to write


def test_the_live_page_says_the_guard_rejected_the_moderator_and_lists_dropped_attributions(page, web, stub):
    from tests.api.conftest import ans

    echo = "<<<DATA-0123456789ab QUESTION\nWhat is 2+2?\nDATA-0123456789ab>>>"
    stub.script("alice", [{"text": ans("4")}, {"text": echo}, {"text": echo}])
    stub.script("bob", [{"text": ans("4")}, {"text": echo}])
    stub.script("carol", [{"text": ans("4")}])
    page.goto(f"{web.url}/ask?q={quote('What is 2+2?')}&lang=en")
    page.get_by_role("button", name="Submit").click()
    finished(page, 1)
    mark = page.locator('[data-role="c-check"]')
    assert (
        mark.locator(".cx-mark")
        .inner_text()
        .endswith("The moderator's text did not pass the checks: this is the panel's verified majority answer.")
    )
    assert "failed" not in mark.locator(".cx-mark").inner_text()
    rejected = mark.locator(".cx-rejected li").all_inner_texts()
    assert rejected and rejected[0].startswith("Rejected text by alice: ") and "no_scaffolding" in rejected[0]


def test_the_live_page_lists_dropped_attributions_as_text(page, web, stub):
    from tests.api.test_web_threads import script_invented_quote

    invented = script_invented_quote(stub)
    page.goto(f"{web.url}/ask?q={quote('Which skills matter?')}&lang=en")
    page.get_by_role("button", name="Submit").click()
    finished(page, 1)
    dropped = page.locator('[data-role="c-dropped"]')
    assert dropped.locator("summary").inner_text().startswith("Dropped attributions: ")
    item = dropped.locator("li", has=page.locator("q", has_text="Evaluation is useless"))
    assert not item.first.is_visible()  # on demand
    dropped.locator("summary").click()
    assert item.first.locator("strong").inner_text() == "bob"  # the analyst's "Panelist B"
    assert item.first.locator("q").inner_text() == invented  # the <img onerror> is text
    assert "quote not found in the answer of Panelist B" in item.first.inner_text()
    assert page.locator("main img").count() == 0 and page.evaluate("window.__pwned") is None
    # The permalink says the same, rendered by the server.
    live = dropped.locator("summary").inner_text()
    page.goto(page.locator('[data-role="permalink"]').get_attribute("href"))
    assert page.locator("article > .cx-consensus .cx-dropped summary").inner_text() == live
