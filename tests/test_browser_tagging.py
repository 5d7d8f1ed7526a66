"""Tagging in a real browser (Debian's Chromium via Playwright): search and tag, draw a missed face."""

from __future__ import annotations

from typing import Any

from axe_playwright_python.sync_playwright import Axe
from flask import Flask
from test_tagging import face, make_photo, pupil

from consent_registry.db import db
from consent_registry.media.models import Appearance

from conftest import PASSWORD, StaffUser

AXE = Axe()


def _log_in(page: Any, base: str, email: str) -> None:
    """Log in through the form."""
    page.goto(f"{base}/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}/people/")


def _serious(page: Any) -> list[Any]:
    """Serious or critical accessibility violations axe-core finds on the page."""
    violations = AXE.run(page).response["violations"]
    return [(v["id"], v["help"], [n["target"] for n in v["nodes"]])
            for v in violations if v["impact"] in ("serious", "critical")]


def test_tag_a_face_and_draw_a_missed_one(page: Any, live_server: str, app: Flask,
                                          users: dict[str, StaffUser]) -> None:
    """Search a pupil for box 1 and tag her; drag a box over a missed face and add it."""
    photo = make_photo(app, size=(400, 300))
    detected = face(photo, (40, 40, 60, 60))
    ada = pupil("1", "Ada")
    photo_id, detected_id, ada_id = photo.id, detected.id, ada.id
    db.session.commit()  # release this test's transaction before the browser's requests come in

    _log_in(page, live_server, users["communications"].email)
    page.goto(f"{live_server}/media/{photo_id}")
    page.get_by_role("button", name="English").click()
    assert page.locator("#tagging-photo rect.box").count() == 1
    assert not _serious(page)

    panel = page.locator(f"#appearance-{detected_id}")
    panel.get_by_label("Tag a person: name or class").fill("ada")
    panel.get_by_role("button", name="Search").click()
    page.locator(f"#appearance-{detected_id}").get_by_role(
        "button", name="This is Ada Jansen").click()
    assert page.get_by_role("status").filter(has_text="Tagged as Ada Jansen.").count() == 1
    assert page.locator("#tagging-photo rect.box.state-identified").count() == 1

    page.locator("#tagging-photo").scroll_into_view_if_needed()
    svg = page.locator("#tagging-photo").bounding_box()
    scale = svg["width"] / 400
    start = (svg["x"] + 200 * scale, svg["y"] + 100 * scale)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 30 * scale, start[1] + 40 * scale, steps=4)
    page.mouse.move(start[0] + 60 * scale, start[1] + 80 * scale, steps=4)
    page.mouse.up()
    assert page.locator("#drawn-box").count() == 1
    values = [int(page.locator(f"#box-{n}").input_value()) for n in "xywh"]
    assert all(abs(got - want) <= 2 for got, want in zip(values, (200, 100, 60, 80), strict=True)), values
    page.get_by_role("button", name="Add face").click()
    assert page.get_by_role("status").filter(has_text="The face has been added.").count() == 1
    assert page.locator("#tagging-photo rect.box").count() == 2
    assert not _serious(page)

    db.session.expire_all()
    tagged = db.session.get(Appearance, detected_id)
    assert (tagged.person_id, tagged.resolution) == (ada_id, "identified")
    added = db.session.query(Appearance).filter(Appearance.source == "manual").one()
    assert abs(added.box_x - 200) <= 2 and abs(added.box_w - 60) <= 2 and added.crop_key
    db.session.commit()

    page.goto(f"{live_server}/people/{ada_id}")
    assert page.locator("table.person-media tbody tr").count() == 1
    assert not _serious(page)
