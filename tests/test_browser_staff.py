"""Staff pages in a real Chromium: usable on a 390-pixel phone; media status followed live."""

from __future__ import annotations

import io
import os
from typing import Any

import sqlalchemy as sa
from flask import Flask
from test_dpo_files import story

from consent_registry.audit import SYSTEM
from consent_registry.db import db
from consent_registry.media.ingest import Limits, ingest_stream
from consent_registry.media.models import Media
from consent_registry.storage import get_storage

from conftest import PASSWORD, SHARED_DATA, StaffUser

G01 = SHARED_DATA / "groups" / "g01.jpg"
PHONE = {"width": 390, "height": 844}
# What sticks out: the outermost elements whose right edge lies beyond the screen.
WIDEST = """Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > innerWidth + 0.5
               && !(e.parentElement && e.parentElement.getBoundingClientRect().right > innerWidth + 0.5))
  .slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
SCREENSHOTS = os.environ.get("NARROW_SCREENSHOTS")  # a folder to look at the pages in


def _log_in(page: Any, base: str, email: str) -> None:
    """Log in through the form."""
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_url(f"{base}/people/")


def test_the_main_staff_pages_fit_a_390_pixel_screen(
        browser: Any, live_server: str, app: Flask, tokens: dict[str, str], graph: Any,
        users: dict[str, StaffUser]) -> None:
    """People, a person, consent, media, a media page, publications, a proof, DPO pages, users."""
    ids = story(app, tokens)
    wide = ingest_stream(io.BytesIO(G01.read_bytes()), limits=Limits.from_config(app.config),
                         storage=get_storage(), actor=SYSTEM, uploaded_by=None,
                         title="A group photo 1,600 pixels wide").media
    wide.status = "ready"
    db.session.commit()
    wide_id = wide.id
    db.session.remove()  # SQLite: the test's own transaction would hold the write lock
    context = browser.new_context(viewport=PHONE, locale="nl-NL")
    page = context.new_page()
    page.set_default_timeout(10_000)
    _log_in(page, live_server, users["admin"].email)
    paths = ["/people/", f"/people/{ids['ada']}", "/consents", "/consent-requests",
             "/consent-requests/new", "/media/", f"/media/{ids['media']}", f"/media/{wide_id}",
             "/media/upload",
             "/publications/", f"/publications/{ids['publication']}", "/dpo/",
             f"/dpo/people/{ids['ada']}", f"/dpo/publications/{ids['publication']}/proof",
             "/dpo/audit", "/users/", "/account"]
    too_wide = {}
    try:
        for path in paths:
            response = page.goto(f"{live_server}{path}")
            assert response is not None and response.status == 200, path
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                too_wide[path] = (width, page.evaluate(WIDEST))
            if SCREENSHOTS:
                name = path.strip("/").replace("/", "_") or "root"
                page.screenshot(path=f"{SCREENSHOTS}/{name}.png", full_page=True)
    finally:
        context.close()
    assert not too_wide, f"wider than {PHONE['width']} px: {too_wide}"


def test_the_media_page_follows_analysis_live_and_shows_the_result_when_done(
        page: Any, live_server: str, app: Flask, users: dict[str, StaffUser]) -> None:
    """The script updates the progress as the worker writes it and reloads the page when ready."""
    from playwright.sync_api import expect
    from test_media_status import _item

    item = _item("analysing", 5)
    item_id = item.id
    db.session.remove()
    _log_in(page, live_server, users["staff"].email)
    page.goto(f"{live_server}/media/")
    status = page.locator(f'[data-media-status="{item_id}"]')
    assert "(5%)" in status.inner_text()
    db.session.execute(sa.update(Media).where(Media.id == item_id).values(progress=64))
    db.session.commit()
    expect(status).to_contain_text("(64%)", timeout=15_000)  # the CSP forbids evaluated strings
    page.goto(f"{live_server}/media/{item_id}")
    db.session.execute(sa.update(Media).where(Media.id == item_id).values(status="ready", progress=100))
    db.session.commit()
    expect(page.locator('script[src$="media_status.js"]')).to_have_count(0, timeout=15_000)  # reloaded
    expect(page.locator("[data-media-status]")).to_have_count(0)  # nothing left to follow
