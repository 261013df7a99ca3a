"""The embeddable widget on another loopback origin: publishable keys, CORS, shadow DOM, refusals."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from tests.api.test_web import script_claim_map
from tests.browser.conftest import make_key, script_debate
from tests.browser.test_claim_map import claim_map_shown

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def keys(keyed_web, host_site):
    """One key for the host site (http://localhost:PORT), one for a site elsewhere."""
    return {
        "host": make_key(keyed_web, "news-site", [host_site.origin("localhost")]),
        "elsewhere": make_key(keyed_web, "other-site", ["https://elsewhere.example"]),
    }


def open_host(page, host_site, keyed_web, host="localhost", **attrs):
    page.goto(f"{host_site.origin(host)}/host?" + urlencode({"api": keyed_web.url, **attrs}))
    box = page.locator("consensus-debate [data-consensus-box]")  # Playwright's CSS pierces open shadow roots
    box.wait_for()
    return box


def test_widget_with_the_sites_key_runs_a_debate_in_its_shadow_root(page, host_site, keyed_web, keys, stub, artifacts):
    script_debate(stub)
    box = open_host(page, host_site, keyed_web, key=keys["host"], question="What is 2+2?", lang="hi")
    assert box.get_attribute("lang") == "hi"
    assert box.locator('[data-role="question"]').input_value() == "What is 2+2?"
    # The host page hides every textarea and button and paints all text red: none of it reaches in.
    assert box.locator('[data-role="question"]').is_visible()
    assert box.locator('[data-role="submit"]').evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"
    assert box.locator("h2").first.evaluate("e => getComputedStyle(e).fontSize") == "20px"  # not the host's 9px
    box.locator('[data-role="submit"]').click()
    box.locator('[data-role="share"]').wait_for(state="visible")
    assert box.locator(".cx-col").count() == 3
    assert "The panel agrees that 2 + 2 = 4." in box.locator('[data-role="c-text"]').inner_text()
    assert box.locator('[data-role="permalink"]').get_attribute("href").startswith(f"{keyed_web.url}/d/")
    assert "Hindi" in stub.requests("alice")[0]["messages"][0]["content"]
    # ... and our CSS does not leak out to the host page.
    assert page.locator("#after").evaluate("e => getComputedStyle(e).color") == "rgb(255, 0, 0)"
    page.screenshot(path=str(artifacts / "widget-on-host-page.png"), full_page=True)


def test_widget_shows_the_claim_map_and_the_check_mark(page, host_site, keyed_web, keys, stub):
    script_claim_map(stub)
    box = open_host(page, host_site, keyed_web, key=keys["host"], question="Which skills matter?", lang="en")
    box.locator('[data-role="submit"]').click()
    box.locator('[data-role="share"]').wait_for(state="visible")
    claim_map_shown(box, page)
    assert box.locator('[data-role="c-check"]').inner_text().endswith("Checked against the panel's answers.")


def test_a_pre_loaded_question_over_the_limit_is_cut_as_the_ask_page_cuts_it(page, host_site, keyed_web, keys):
    """Set by script, the textarea held all 10,000 characters past its maxlength; Submit then failed vaguely."""
    limit = keyed_web.services.panel.debate.max_question_chars
    box = open_host(page, host_site, keyed_web, key=keys["host"], question="x" * (limit + 2000), lang="en")
    assert box.locator('[data-role="question"]').input_value() == "x" * limit


def test_widget_with_a_key_for_another_origin_is_refused_with_a_message(page, host_site, keyed_web, keys, stub):
    script_debate(stub)
    box = open_host(page, host_site, keyed_web, key=keys["elsewhere"], question="What is 2+2?")
    box.locator('[data-role="submit"]').click()
    error = box.locator('[data-role="error"]')
    error.wait_for(state="visible")
    assert error.inner_text() == "This site is not allowed to use this key."
    assert stub.hits() == {}  # the server refused before any model was asked


def test_widget_on_an_origin_no_key_allows_is_refused_by_cors(page, host_site, keyed_web, keys, stub):
    # http://127.0.0.1:PORT is another origin than http://localhost:PORT: no key lists it, no CORS.
    box = open_host(page, host_site, keyed_web, host="127.0.0.1", key=keys["host"], question="What is 2+2?")
    box.locator('[data-role="submit"]').click()
    error = box.locator('[data-role="error"]')
    error.wait_for(state="visible")
    assert error.inner_text() == "This site is not allowed to use this key."
    assert stub.hits() == {}


def test_widget_language_switch_keeps_the_question(page, host_site, keyed_web, keys):
    box = open_host(page, host_site, keyed_web, key=keys["host"], question="What is 2+2?", lang="en")
    box.locator("select").select_option("ur")
    box.locator('[data-role="switch"]').click()
    page.locator('consensus-debate [data-consensus-box][lang="ur"]').wait_for()
    box = page.locator("consensus-debate [data-consensus-box]")
    assert box.get_attribute("dir") == "rtl"
    assert box.locator('[data-role="question"]').input_value() == "What is 2+2?"
    assert page.url.startswith(host_site.origin("localhost"))  # the host page did not navigate


def test_keyed_service_page_uses_its_publishable_page_key(page, keyed_web, stub):
    script_debate(stub, carol_changes_mind=False)
    page_key = make_key(keyed_web, "own-page", [keyed_web.url])
    keyed_web.services.settings.page_key = page_key
    try:
        page.goto(f"{keyed_web.url}/ask?q=2%2B2%3F")
        assert page.locator(".cx-notice").count() == 0
        page.get_by_role("button", name="Submit").click()
        page.locator('[data-role="share"]').wait_for(state="visible")
    finally:
        keyed_web.services.settings.page_key = None
    page.goto(f"{keyed_web.url}/ask?q=2%2B2%3F")
    assert page.locator(".cx-notice").inner_text() == "This page is not set up to ask questions yet."


def test_widget_says_which_seat_is_missing_never_a_bare_100_percent(page, host_site, keyed_web, keys, stub):
    script_debate(stub, carol_changes_mind=False)
    stub.script("carol", [{"fault": "401"}])
    box = open_host(page, host_site, keyed_web, key=keys["host"], question="What is 2+2?", lang="en")
    box.locator('[data-role="submit"]').click()
    box.locator('[data-role="share"]').wait_for(state="visible")
    wording = "100% of 2 of 3 answers (carol missing)"
    assert box.locator('[data-role="c-pct"]').inner_text() == wording
    assert box.locator('[data-role="pct"]').inner_text() == wording  # the round's meter too
    assert "carol was refused by its provider (API key)." in box.locator('[data-role="notes"]').inner_text()
