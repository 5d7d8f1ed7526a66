"""A mentor prints the forms of everyone in a request that e-mail cannot reach: real Chromium."""

from __future__ import annotations

import re
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from test_browser_tagging import _log_in
from test_consent_pages import add_person

from consent_registry.audit import SYSTEM
from consent_registry.consent.requests import create_request
from consent_registry.db import db

AXE = Axe()
MM = 96 / 25.4  # CSS pixels per millimetre


def test_a_mentor_prints_one_document_with_a_form_per_page(
    browser: Any, live_server: str, app: Flask, users: Any,
) -> None:
    """One click, a new tab with one A4 page per form, the toolbar gone on paper, the QR code big
    enough to scan (at least 25 mm) and the page accessible."""
    people = [add_person(f"5{n}", age=17, group="5V") for n in range(3)]
    request_id = create_request(people=people, channels=["facebook"], note="Gala 2027",
                                actor=SYSTEM, created_by=None).id
    db.session.commit()  # release this test's transaction (SQLite's write lock) for the browser
    context = browser.new_context(locale="nl-NL")
    page = context.new_page()
    _log_in(page, live_server, users["staff"].email)
    page.goto(f"{live_server}/consent-requests/{request_id}")
    with context.expect_page() as opened:
        page.get_by_role("button", name="Alle 3 formulieren afdrukken in één document").click()
    printed = opened.value
    printed.wait_for_load_state("load")
    assert printed.locator("article.consent-form").count() == 3
    violations = AXE.run(printed).response["violations"]
    assert [v["id"] for v in violations if v["impact"] in ("serious", "critical")] == []

    printed.emulate_media(media="print")
    assert not printed.locator(".toolbar").is_visible()
    box = printed.locator("article.consent-form .qr svg").first.bounding_box()
    assert box is not None and box["width"] >= 25 * MM
    pdf = printed.pdf(format="A4")
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 3
    context.close()
