"""Publishing twice from the browser creates nothing new (issue 12.2), in Debian's Chromium.

The communications officer double-clicks publish, goes back with the browser's back button and
presses publish again without confirming "again": the fake Graph server holds exactly one post,
and the page says where the item is live and asks separately before publishing it again.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from playwright.sync_api import Error as PlaywrightError
from test_browser_publication import ENGLISH, site  # noqa: F401  (the live server fixture)
from test_publishing import tagged_photo

from consent_registry.db import db
from consent_registry.publishing.models import Publication

from conftest import PASSWORD, StaffUser, wait_for


def _land_on(page: Any, pattern: re.Pattern[str]) -> None:
    """Wait until the page shows `pattern`; the double click's second send aborts the first's load."""
    for _ in range(3):
        try:
            page.wait_for_url(pattern)
            return
        except PlaywrightError as error:  # Chromium drops the first navigation for the second
            if "ERR_ABORTED" not in str(error):
                raise
    page.wait_for_url(pattern)


def test_double_click_and_back_then_publish_again_make_one_post(
        browser: Any, site: str, app: Flask, fake_graph: Any,  # noqa: F811
        users: dict[str, StaffUser]) -> None:
    """Double-click publish, go back, publish again: one post; the page asks before `again`."""
    media, _person = tagged_photo(app)
    media_id = media.id
    db.session.commit()  # release this test's transaction before the browser's requests come in

    context = browser.new_context(**ENGLISH)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{site}/login")
    page.locator("#email").fill(users["communications"].email)
    page.locator("#password").fill(PASSWORD)
    with page.expect_navigation():
        page.locator("#password").press("Enter")

    page.goto(f"{site}/media/{media_id}?channel=facebook")
    assert page.locator("#live").count() == 0  # not published anywhere yet
    page.locator("#publish-channel").select_option("facebook")
    page.locator("#publish-caption").fill("Sports day")
    page.locator("#publish-attest").check()
    # The post's answer comes late, so the second click of the double click sends the form again
    # while the first is still being answered (as an impatient user's does).
    fake_graph.delay_next(r"/photos$", 3, before=True)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    button = page.locator("#publish form button[type=submit]")
    button.scroll_into_view_if_needed()
    box = button.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    with page.expect_request(lambda r: r.method == "POST" and "/publications/media/" in r.url):
        page.mouse.click(x, y)
    page.mouse.click(x, y)  # the second click of the double click, the first still unanswered
    _land_on(page, re.compile(r".*/publications/\d+$"))
    page.wait_for_load_state("load")
    first = page.url
    assert len([url for url in sent if "/publications/media/" in url]) == 2  # both reached us
    wait_for(lambda: fake_graph.live_posts(), timeout=30)

    # Back to the media page; whatever the browser kept, publishing again creates nothing.
    page.go_back()
    page.wait_for_url(re.compile(rf".*/media/{media_id}(\?.*)?$"))
    page.wait_for_load_state("load")
    page.locator("#publish-channel").select_option("facebook")
    page.locator("#publish-attest").check()
    with page.expect_navigation():
        page.locator("#publish form button[type=submit]").click()
    if page.url == first:  # the restored page's form carried its key: the same publication
        assert page.locator("#publication-state").count() == 1
    else:  # a reloaded form: refused, naming the live post, with a separate confirmation
        assert page.locator("#live-posts li.state-live").count() == 1
        assert page.locator("#live-posts a[href^='https://www.facebook.com/']").count() == 1
        assert page.locator("#publish-again input[name=again][value=yes]").count() == 1
        assert page.locator("#publish-again button.danger").count() == 1

    # The media page now says where the item is live, before the publish form.
    page.goto(f"{site}/media/{media_id}")
    assert page.locator("#live li.state-live").count() == 1
    assert page.evaluate("() => document.querySelector('#live').compareDocumentPosition("
                         "document.querySelector('#publish')) & Node.DOCUMENT_POSITION_FOLLOWING")
    context.close()

    assert len(fake_graph.live_posts()) == 1
    db.session.expire_all()
    assert db.session.query(Publication).filter(Publication.media_id == media_id).count() == 1
