"""A parent answers on a phone: real Chromium with a small screen, from the link in the mail."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from flask import Flask

from consent_registry.audit import SYSTEM
from consent_registry.consent.requests import create_request
from consent_registry.consent.sending import send_request_mails
from consent_registry.db import db
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

AXE = Axe()
PHONE = {"width": 390, "height": 844}


def _serious(page: Any) -> list[tuple[str, str]]:
    """Serious or critical accessibility violations axe-core finds on the page."""
    page.wait_for_load_state("load")
    violations = AXE.run(page).response["violations"]
    return [(v["id"], v["help"]) for v in violations if v["impact"] in ("serious", "critical")]


def _mailed_link(app: Flask) -> str:
    """The answer link from the one message in the outbox (the embedded mail default)."""
    outbox = Path(app.instance_path) / "outbox"
    [eml] = list(outbox.glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    return re.search(r"http://127\.0\.0\.1:5000(/c/\S+)", text).group(1)


def test_a_parent_answers_and_withdraws_on_a_phone(browser: Any, live_server: str,
                                                   app: Flask) -> None:
    """Open the mailed link, choose explicitly, confirm, withdraw; every page is accessible."""
    pupil = create_person(PersonCreate.model_validate({
        "external_id": "P9", "given_name": "Sem", "family_name": "de Wit",
        "birth_date": "2013-02-02", "role": "pupil",
        "guardians": [{"name": "Iris de Wit", "email": "iris@ouders.example.nl"}],
    }), actor=SYSTEM)
    request = create_request(people=[pupil], channels=["facebook", "website"],
                             note="Sportdag, juni 2027", actor=SYSTEM, created_by=None)
    db.session.commit()
    send_request_mails(request.id)
    db.session.commit()  # release this test's transaction before the browser's requests come in
    path = _mailed_link(app)

    context = browser.new_context(viewport=PHONE, locale="nl-NL", is_mobile=True, has_touch=True)
    page = context.new_page()
    response = page.goto(live_server + path)
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "Sportdag" in page.content()
    assert page.locator("input[type=radio]:checked").count() == 0  # nothing pre-selected
    assert not _serious(page)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= PHONE["width"]  # no sideways scrolling on a phone

    page.locator("input[name=choice_facebook][value=granted]").check()
    page.locator("input[name=choice_website][value=refused]").check()
    with page.expect_navigation():
        page.locator("button[type=submit]").last.tap()
    page.wait_for_selector("a[href^='/w/']")  # the confirmation page carries the withdraw link
    assert page.locator("a[href^='/m/']").count() == 1
    assert not _serious(page)

    with page.expect_navigation():
        page.locator("a[href^='/w/']").tap()
    assert not _serious(page)
    with page.expect_navigation():
        page.locator("main button[type=submit]").tap()
    page.wait_for_selector(".flash.success")
    assert not _serious(page)
    context.close()
