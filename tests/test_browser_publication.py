"""The publication story in a real browser (Debian's Chromium via Playwright), as the communications
officer: log in, upload a group photo, see the numbered boxes, tag face 1 and blur face 2, see the
gate block on Facebook, ask for consent with the gate's button, answer as a guardian from the
e-mail, see the gate allow, attest and publish, and find the post on the fake Graph server.

Both browsers ask for English (Accept-Language); elements are found by id, name and value rather
than by their words wherever the page allows, so new translations do not break the test. A
screenshot of every step is saved under test-artifacts/screenshots/ in the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from consent_registry.audit import SYSTEM
from consent_registry.db import db
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.publishing.models import Publication

from conftest import PASSWORD, SHARED_DATA, StaffUser

PHOTO = SHARED_DATA / "groups" / "g01.jpg"  # two counted faces (manifest.json)
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
ANNA, BERT = "anna@ouders.example.nl", "bert@ouders.example.nl"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/c/[A-Za-z0-9_.\-]+)")
ENGLISH = {"locale": "en-GB", "extra_http_headers": {"Accept-Language": "en-GB,en;q=0.9"}}


@pytest.fixture
def site(app: Flask, graph: Any, smtp: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """The live server, started only once the fake Graph API and real SMTP are in the app's config."""
    yield request.getfixturevalue("live_server")


class Shots:
    """Numbered full-page screenshots of one run, named after the backend."""

    def __init__(self, prefix: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.prefix, self.count = prefix, 0

    def take(self, page: Any, name: str) -> None:
        """Save the page as <prefix>-NN-<name>.png."""
        self.count += 1
        page.screenshot(path=str(SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{name}.png"),
                        full_page=True)


def test_the_communications_officer_publishes_with_consent(
        browser: Any, site: str, app: Flask, smtp: Any, fake_graph: Any, backend: str,
        users: dict[str, StaffUser]) -> None:
    """Upload, boxes, tag, blocked, ask, a guardian answers from the mail, allowed, published."""
    today = date.today()
    pupil = create_person(PersonCreate.model_validate({
        "external_id": "S12", "given_name": "Noor", "family_name": "Visser",
        "birth_date": date(today.year - 12, 3, 1).isoformat(), "role": "pupil", "group": "8B",
        "guardians": [{"name": "Anna Visser", "email": ANNA}, {"name": "Bert Visser", "email": BERT}],
    }), actor=SYSTEM)
    pupil_id = pupil.id
    db.session.commit()  # release this test's transaction before the browser's requests come in
    shots = Shots(f"publication-{backend}")

    context = browser.new_context(**ENGLISH)
    page = context.new_page()
    page.set_default_timeout(15_000)

    # Log in.
    page.goto(f"{site}/login")
    page.locator("#email").fill(users["communications"].email)
    page.locator("#password").fill(PASSWORD)
    shots.take(page, "login")
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{site}/people/")
    assert page.locator("html").get_attribute("lang") == "en"

    # Upload the group photo on the upload page; the analysis runs before the answer comes.
    page.goto(f"{site}/media/upload")
    page.locator("#f-files").set_input_files(str(PHOTO))
    page.locator("#upload-form button[type=submit]").click()
    opened = page.locator("#upload-results a[href^='/media/']")
    opened.wait_for(timeout=60_000)
    shots.take(page, "uploaded")
    media_path = opened.get_attribute("href")
    media_id = int(media_path.rsplit("/", 1)[1])
    with page.expect_navigation():
        opened.click()

    # The numbered boxes: one SVG rectangle per face found.
    boxes = page.locator("#tagging-photo rect.box")
    assert boxes.count() == 2
    assert page.locator("#tagging-photo text.box-number").all_text_contents() == ["1", "2"]
    panels = page.locator("section.appearance")
    assert panels.count() == 2
    face1, face2 = (panels.nth(0).get_attribute("id"), panels.nth(1).get_attribute("id"))
    shots.take(page, "boxes")

    # Tag face 1 through the person search.
    panel = page.locator(f"#{face1}")
    panel.locator("form.search input[name=q]").fill("noor")
    with page.expect_navigation():
        panel.locator("form.search button[type=submit]").click()
    shots.take(page, "search")
    this_is = page.locator(f"#{face1} ul.search-results form:has(input[name=person_id][value='{pupil_id}'])"
                           " button[type=submit]")
    with page.expect_navigation():
        this_is.click()
    assert page.locator(f"#{face1}.state-identified").count() == 1
    assert page.locator("#tagging-photo rect.box.state-identified").count() == 1

    # Mark face 2 to be blurred.
    with page.expect_navigation():
        page.locator(f"#{face2} form:has(input[name=resolution][value=blur]) button[type=submit]").click()
    assert page.locator(f"#{face2}.state-blur").count() == 1
    assert page.locator("#tagging-photo rect.box.state-blur").count() == 1
    shots.take(page, "tagged")

    # Choose Facebook: the gate blocks, because the pupil has no consent.
    page.locator("#gate-channel").select_option("facebook")
    with page.expect_navigation():
        page.locator("form.gate-channel button[type=submit]").click()
    assert page.locator("#gate .gate-verdict.blocked").count() == 1
    assert page.locator(f"#gate-person-{pupil_id}.blocks").count() == 1
    assert page.locator("#gate .gate-blockers li.reason-no_consent").count() == 1
    page.locator("#gate").scroll_into_view_if_needed()
    shots.take(page, "gate-blocked")

    # The gate's button asks the pupil's guardians by e-mail.
    page.locator("#gate-note").fill("School trip, May 2027")
    with page.expect_navigation():
        page.locator("form.gate-request button[type=submit]").click()
    assert page.locator(".flash.success").count() == 1
    shots.take(page, "consent-asked")
    messages = smtp.wait_for_messages(2)
    assert sorted(m["To"] for m in messages) == [ANNA, BERT]
    [anna_mail] = [m for m in messages if m["To"] == ANNA]
    text = anna_mail.get_body(preferencelist=("plain",)).get_content()
    answer_path = LINK.search(text).group(1)

    # Guardian A answers from the e-mail in a browser of her own: yes for Facebook.
    guardian_context = browser.new_context(**ENGLISH)
    guardian = guardian_context.new_page()
    guardian.set_default_timeout(15_000)
    response = guardian.goto(site + answer_path)
    assert response.status == 200 and response.headers["referrer-policy"] == "no-referrer"
    preview = guardian.locator(".answer-preview img")
    preview.wait_for()
    guardian.wait_for_load_state("load")
    assert guardian.evaluate("img => img.complete && img.naturalWidth > 0", preview.element_handle())
    assert guardian.locator("input[type=radio]:checked").count() == 0  # nothing pre-selected
    guardian.locator("input[name=choice_facebook][value=granted]").check()
    shots.take(guardian, "guardian-answer")
    with guardian.expect_navigation():
        guardian.locator(f"form[action='{answer_path}'] button[type=submit]").click()
    guardian.locator("a[href^='/w/']").wait_for()  # the confirmation carries the withdraw link
    shots.take(guardian, "guardian-confirmed")
    guardian_context.close()

    # Back on the media page the gate allows Facebook.
    back = page.goto(f"{site}{media_path}?channel=facebook")  # no fragment: a real reload
    assert back is not None and back.status == 200
    assert page.locator("#gate .gate-verdict.allowed").count() == 1
    assert page.locator(f"#gate-person-{pupil_id}.clears").count() == 1
    assert page.locator("form.gate-request").count() == 0
    page.locator("#gate").scroll_into_view_if_needed()
    shots.take(page, "gate-allowed")

    # Attest and publish on Facebook; the publication page shows the live post.
    assert page.locator("#publish-channel").input_value() == "facebook"
    page.locator("#publish-caption").fill("School trip, group 8")
    attest = page.locator("#publish-attest")
    assert not attest.is_checked()  # never pre-ticked
    attest.check()
    page.locator("#publish").scroll_into_view_if_needed()
    shots.take(page, "publish")
    with page.expect_navigation():
        page.locator("#publish form button[type=submit]").click()
    assert re.search(r"/publications/\d+$", page.url), page.url
    state = page.locator("#publication-state")
    assert "state-live" in (state.get_attribute("class") or "")
    post_id = page.locator("#publication-post").text_content().strip()
    shots.take(page, "published")
    context.close()

    # The fake Graph server holds the post, with the photo.
    live = fake_graph.live_posts()
    assert list(live) == [post_id]
    assert live[post_id]["message"] == "School trip, group 8"
    [photo_id] = live[post_id]["photo_ids"]
    assert fake_graph.photos[photo_id]["bytes"].startswith(b"\xff\xd8\xff")
    db.session.expire_all()
    [publication] = db.session.query(Publication).filter(Publication.media_id == media_id).all()
    assert (publication.state, publication.post_id, publication.attested) == ("live", post_id, True)
    assert sorted(SCREENSHOTS.glob(f"{shots.prefix}-*.png"))
