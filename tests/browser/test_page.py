"""The question page and the permalink in headless Chromium, against the real service and stub models."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest

from tests.browser.conftest import script_debate

pytestmark = pytest.mark.browser
QUESTION = "What is 2+2?"


def ask(page, web, question=QUESTION, lang="en"):
    page.goto(f"{web.url}/ask?q={quote(question)}&lang={lang}")


def wait_finished(page):
    page.locator('[data-role="share"]').wait_for(state="visible")


def test_ask_page_runs_a_debate_three_answers_then_the_consensus(page, web, stub, artifacts):
    script_debate(stub)
    ask(page, web)
    assert page.locator("#cx-question").input_value() == QUESTION
    page.get_by_role("button", name="Submit").click()
    wait_finished(page)

    cols = page.locator(".cx-col")
    assert cols.count() == 3
    for name in ("alice", "bob", "carol"):
        col = cols.filter(has=page.locator(".cx-name", has_text=name))
        assert col.locator(".cx-model").inner_text() == f"openai/{name}"
    carol = cols.filter(has=page.locator(".cx-name", has_text="carol"))
    assert "I first thought 5." in carol.inner_text() and "Checked again: it is 4." in carol.inner_text()
    consensus = page.locator('[data-role="consensus"]')
    assert "The panel agrees that 2 + 2 = 4." in consensus.locator('[data-role="c-text"]').inner_text()
    assert consensus.locator('[data-role="c-majority"]').inner_text() == "4"
    assert consensus.locator('[data-role="c-pct"]').inner_text() == "100%"
    # How each position moved: carol 5 -> 4.
    rows = page.locator('[data-role="positions-table"] tbody tr')
    assert rows.filter(has_text="carol").locator("td").all_inner_texts() == ["5", "4"]
    assert page.locator('[data-role="positions-table"] thead th').all_inner_texts() == [
        "Panelist",
        "Opening answers",
        "Round 1",
    ]
    assert page.locator('[data-role="submit"]').get_attribute("aria-disabled") is None
    page.screenshot(path=str(artifacts / "debate-finished.png"), full_page=True)

    # The live page shares exactly what the server-rendered permalink shares.
    permalink = page.locator('[data-role="permalink"]').get_attribute("href")
    live = {k: page.locator(f'[data-role="{k}"]').get_attribute("href") for k in ("whatsapp", "mailto")}
    page.goto(permalink)
    shared = page.locator("article > .cx-share")  # the permalink's own, not its follow-up box's
    assert shared.locator("a.cx-wa").get_attribute("href") == live["whatsapp"]
    assert shared.locator('a[href^="mailto:"]').get_attribute("href") == live["mailto"]


def test_permalink_renders_without_javascript_with_share_links(browser, web, stub, artifacts):
    script_debate(stub)
    with web.client() as c:
        d = c.post("/v1/debates?wait=true", json={"question": QUESTION, "language": "en"}).json()
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        pg.goto(f"{web.url}/d/{d['id']}")
        url = f"{web.url}/d/{d['id']}"
        assert pg.locator("h1").inner_text() == QUESTION
        assert "The panel agrees that 2 + 2 = 4." in pg.locator(".cx-consensus").inner_text()
        assert pg.locator(".cx-positions tbody tr").count() == 3
        assert pg.locator('meta[property="og:title"]').get_attribute("content") == QUESTION
        assert pg.locator('meta[property="og:url"]').get_attribute("content") == url
        wa = unquote(pg.locator("a.cx-wa").get_attribute("href").removeprefix("https://wa.me/?text="))
        assert wa.startswith(QUESTION) and "Consensus: The panel agrees that 2 + 2 = 4." in wa and wa.endswith(url)
        mail = pg.locator('a[href^="mailto:"]').get_attribute("href")
        subject, body = mail.removeprefix("mailto:?subject=").split("&body=")
        assert unquote(subject) == QUESTION and unquote(body).endswith(url) and "\r\n" in unquote(body)
        assert pg.locator("button[data-copy]").is_hidden()  # copying needs JavaScript
        pg.screenshot(path=str(artifacts / "permalink-no-js.png"), full_page=True)
    finally:
        context.close()


def test_copy_link_button_copies_the_permalink(browser, web, stub):
    script_debate(stub, carol_changes_mind=False)
    with web.client() as c:
        d = c.post("/v1/debates?wait=true", json={"question": QUESTION}).json()
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    try:
        pg = context.new_page()
        pg.goto(f"{web.url}/d/{d['id']}")
        pg.get_by_role("button", name="Copy link").click()
        pg.get_by_text("Link copied").wait_for()
        assert pg.evaluate("navigator.clipboard.readText()") == f"{web.url}/d/{d['id']}"
    finally:
        context.close()


def test_model_answer_with_script_tags_is_shown_as_text(page, web, stub):
    evil = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> 4'
    script_debate(stub, carol_changes_mind=False, answer_text=evil)
    ask(page, web, question="<b>bold?</b> 2+2")
    page.get_by_role("button", name="Submit").click()
    wait_finished(page)
    assert page.locator(".cx-col .cx-text").first.inner_text() == evil
    assert page.locator(".cx-col img, .cx-col script, .cx-col b").count() == 0
    assert page.evaluate("window.__pwned") is None
    # The server-rendered permalink escapes it too.
    page.goto(page.locator('[data-role="permalink"]').get_attribute("href"))
    assert page.locator(".cx-col .cx-text").first.inner_text() == evil
    assert page.locator("h1").inner_text() == "<b>bold?</b> 2+2"
    assert page.locator("main img, main b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_failed_panelist_is_shown_with_the_reason_in_plain_words(page, web, stub, artifacts):
    script_debate(stub, carol_changes_mind=False)
    stub.script("carol", [{"fault": "401"}])
    ask(page, web)
    page.get_by_role("button", name="Submit").click()
    wait_finished(page)
    carol = page.locator(".cx-col").filter(has=page.locator(".cx-name", has_text="carol"))
    assert carol.locator(".cx-badge").inner_text() == "Failed"
    assert "carol was refused by its provider (API key)." in carol.inner_text()
    notes = page.locator('[data-role="notes"]').inner_text()
    assert "Some panelists failed; the result is based on the others." in notes
    assert page.locator('[data-role="positions-table"] td.cx-failed').inner_text() == "Failed"
    page.screenshot(path=str(artifacts / "debate-degraded.png"), full_page=True)


def test_a_cancelled_debate_is_shown_as_stopped_not_failed(page, web, stub):
    """The page said "The debate failed." where the permalink says it was stopped before it finished."""
    for name in ("alice", "bob", "carol"):
        stub.script(name, [{"text": '{"answer": "4", "final_answer": "4", "confidence": 0.9}', "delay_s": 5}])
    ask(page, web)
    page.get_by_role("button", name="Submit").click()
    page.locator(".cx-col").first.wait_for(state="visible")  # started: its id is known to the page
    with web.client() as c:
        [running] = c.get("/v1/debates?limit=1").json()["data"]
        assert c.post(f"/v1/debates/{running['id']}/cancel").status_code == 200
    error = page.locator('[data-role="error"]')
    error.wait_for(state="visible")
    assert "The debate was stopped before it finished." in error.inner_text()
    assert "The debate failed." not in error.inner_text()


def test_hindi_page_sends_hindi_as_the_debate_language_and_enter_submits(page, web, stub, artifacts):
    script_debate(stub)
    ask(page, web, question="दो और दो कितने होते हैं?", lang="hi")
    assert page.locator("html").get_attribute("lang") == "hi"
    assert page.locator("html").get_attribute("dir") == "ltr"
    assert page.locator('[data-role="submit"]').inner_text() == "भेजें"
    page.locator("#cx-question").focus()
    page.keyboard.press("End")
    page.keyboard.press("Enter")  # Enter asks (Shift+Enter would be a new line)
    wait_finished(page)
    assert page.locator('[data-role="positions-table"] thead th').all_inner_texts() == ["पैनलिस्ट", "शुरुआती जवाब", "दौर 1"]
    system = stub.requests("bob")[0]["messages"][0]["content"]
    assert "Hindi" in system
    page.screenshot(path=str(artifacts / "debate-hindi.png"), full_page=True)


def test_urdu_page_lays_out_right_to_left(page, web, stub, artifacts):
    script_debate(stub, carol_changes_mind=False)
    ask(page, web, question="دو جمع دو کتنے ہوتے ہیں؟", lang="ur")
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
    page.get_by_role("button", name="بھیجیں").click()
    wait_finished(page)
    # Right to left: the heading hugs the right edge, the first panelist's column is the rightmost.
    h1 = page.locator("h1").bounding_box()
    main = page.locator("main").bounding_box()
    assert h1["x"] + h1["width"] > main["x"] + main["width"] - 40
    xs = [b["x"] for b in (c.bounding_box() for c in page.locator(".cx-col").all())]
    assert xs == sorted(xs, reverse=True)
    page.screenshot(path=str(artifacts / "debate-urdu.png"), full_page=True)


def test_phone_width_stacks_the_columns_without_sideways_scrolling(browser, web, stub, artifacts):
    script_debate(stub, carol_changes_mind=False)
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        pg = context.new_page()
        pg.goto(f"{web.url}/ask?q={quote(QUESTION)}")
        pg.get_by_role("button", name="Submit").tap()
        wait_finished(pg)
        boxes = [c.bounding_box() for c in pg.locator(".cx-col").all()]
        assert len({round(b["x"]) for b in boxes}) == 1 and boxes[0]["y"] < boxes[1]["y"] < boxes[2]["y"]
        assert pg.evaluate("document.documentElement.scrollWidth") <= 375
        pg.screenshot(path=str(artifacts / "debate-phone.png"), full_page=True)
    finally:
        context.close()


def test_unknown_permalink_is_a_404_page(page, web):
    r = page.goto(f"{web.url}/d/does-not-exist")
    assert r.status == 404
    assert page.locator("h1").inner_text() == "Debate not found"


def test_the_page_and_the_server_shorten_and_share_identically(page, web):
    from service.web import share_links, shorten
    from service.web_i18n import Translator

    samples = [
        "What is 2+2?",
        "word " * 80,
        "दुनिया" * 60,
        "नमस्ते दुनिया " * 30,
        "اردو زبان  \n میں " * 25,
        "emoji 😀 " * 50,
        "tab\tand\nnew  lines " * 20,
        "ᱥᱟᱱᱛᱟᱲᱤ " * 40,
    ]
    page.goto(f"{web.url}/?lang=hi")
    got = page.evaluate(
        """([samples, messages]) => samples.map(s => {
             const t = (m, v) => Object.keys(v || {}).reduce((x, k) => x.split("{" + k + "}").join(v[k]), messages[m] || m);
             return [ConsensusCore.shorten(s, 200), ConsensusCore.shorten(s, 7),
               ConsensusCore.shareLinks(t, s, s, "http://x/d/1"),
               ConsensusCore.shareLinks(t, s, s, "http://x/d/3", [s + " first", "दूसरा सवाल"])];
           })""",
        [samples, Translator("hi").client_strings()["messages"]],
    )
    t = Translator("hi")
    for s, (long, short, links, thread) in zip(samples, got, strict=True):
        assert long == shorten(s, 200) and short == shorten(s, 7), s
        assert links == share_links(t, s, s, "http://x/d/1"), s
        # A follow-up's share text names its thread, in the page's language, the same on both sides.
        assert thread == share_links(t, s, s, "http://x/d/3", [s + " first", "दूसरा सवाल"]), s
        assert thread["text"].startswith("3 सवालों की कड़ी:\n1. "), s


def test_a_streaming_json_answer_shows_only_its_text_even_after_leading_blank_lines(page, web):
    """A reply starting with a newline before its JSON streamed into the column as raw JSON."""
    page.goto(f"{web.url}/ask")
    shown = page.evaluate("""() => [
        '\\n{"answer": "Yes, 91 = 7 x 13.", "final',
        '  \\n```json\\n{"answer": "fenced',
        '{"answer": "plain',
        'free text, not JSON',
    ].map(ConsensusCore.partialAnswer)""")
    assert shown == ["Yes, 91 = 7 x 13.", "fenced", "plain", "free text, not JSON"]


def test_a_question_of_only_spaces_is_refused_with_a_message_in_the_page_language(page, web):
    """It passed `required`, and Submit then did nothing with no word of why."""
    page.goto(f"{web.url}/ask?lang=hi")
    box = page.locator("#cx-question")
    box.fill("     ")
    page.locator('[data-role="submit"]').click()
    placeholder = box.get_attribute("placeholder")
    assert placeholder and box.evaluate("e => e.validationMessage") == placeholder  # the Hindi "type your question"
    assert page.locator(".cx-col").count() == 0
    box.fill("What is 2+2?")
    assert box.evaluate("e => e.validationMessage") == ""
