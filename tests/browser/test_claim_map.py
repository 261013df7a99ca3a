"""The claim map under a finished consensus in Chromium: agreed, contested and unique claims, who holds each, the
quotes on demand, the check mark, and model text that tries to inject HTML shown as text."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.api.test_web import EVIL_CLAIM, EVIL_QUOTE, script_claim_map

pytestmark = pytest.mark.browser
QUESTION = "Which three production-ready skills should an AI engineer prioritize?"


def claim_map_shown(root, page):
    """The claim map in `root` (the page, or the widget's box): kinds, holders, quotes on demand, HTML as text."""
    claims = root.locator(".cx-claims")
    claims.wait_for(state="visible")
    groups = claims.locator(".cx-claim-group")
    assert groups.locator("h4").all_inner_texts() == ["Agreed", "Contested", "Unique insights"]
    agreed = claims.locator('.cx-claim[data-kind="agreed"]')
    assert agreed.locator(".cx-claim-text").inner_text() == "Deploying models to production"
    assert agreed.locator(".cx-for").inner_text() == "alice, bob, carol"
    contested = claims.locator('.cx-claim[data-kind="contested"]')
    assert contested.locator(".cx-for").inner_text() == "alice, bob"
    assert contested.locator(".cx-against").inner_text() == "Against: carol"
    unique = claims.locator('.cx-claim[data-kind="unique"]')
    assert unique.locator(".cx-claim-text").inner_text() == EVIL_CLAIM  # the <script> is text
    assert unique.locator(".cx-for").inner_text() == "carol"
    # Quotes on demand: hidden until the reader opens them.
    carol_quote = contested.locator(".cx-quotes li", has_text="carol").locator("q")
    assert not carol_quote.is_visible()
    contested.locator(".cx-quotes summary").click()
    assert carol_quote.is_visible() and carol_quote.inner_text() == EVIL_QUOTE  # the <img onerror> is text
    assert contested.locator(".cx-quotes li").all_inner_texts()[0].startswith("alice")
    # Nothing a model wrote became an element, and no injected handler ran.
    assert root.locator(".cx-claims script, .cx-claims img, .cx-col img").count() == 0
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_the_page_shows_the_claim_map_the_check_mark_and_model_html_as_text(page, web, stub, artifacts):
    script_claim_map(stub)
    page.goto(f"{web.url}/ask?q={quote(QUESTION)}&lang=en")
    page.get_by_role("button", name="Submit").click()
    page.locator('[data-role="share"]').wait_for(state="visible")
    claim_map_shown(page, page)
    mark = page.locator('[data-role="c-check"]')
    assert mark.is_visible() and "cx-check-ok" in mark.get_attribute("class")
    assert mark.inner_text().endswith("Checked against the panel's answers.")
    # Every seat answered: the agreement is a plain percentage, with no missing-seat wording.
    assert page.locator('[data-role="c-pct"]').inner_text() == "67%"
    page.screenshot(path=str(artifacts / "claim-map.png"), full_page=True)
    # The permalink, rendered by the server, shows the same map with the same behaviour.
    page.goto(page.locator('[data-role="permalink"]').get_attribute("href"))
    claim_map_shown(page.locator("article > .cx-consensus"), page)  # not the follow-up box's empty one
    assert page.locator(".cx-check-ok").inner_text().endswith("Checked against the panel's answers.")


def test_the_live_page_says_which_seat_is_missing(page, web, stub):
    from tests.browser.conftest import script_debate

    script_debate(stub, carol_changes_mind=False)
    stub.script("carol", [{"fault": "401"}])
    page.goto(f"{web.url}/ask?q=2%2B2%3F&lang=en")
    page.get_by_role("button", name="Submit").click()
    page.locator('[data-role="share"]').wait_for(state="visible")
    wording = "100% of 2 of 3 answers (carol missing)"
    assert page.locator('[data-role="c-pct"]').inner_text() == wording
    assert page.locator('[data-role="pct"]').inner_text() == wording  # the round's meter too
    assert page.locator('[data-role="c-check"]').inner_text().endswith("Checked against the panel's answers.")
    assert page.locator('[data-role="c-claims"]').is_hidden()  # closed-form answers: no claim map
