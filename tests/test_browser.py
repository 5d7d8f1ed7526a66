"""A real browser (Debian's Chromium via Playwright) uses the pages as staff would, by keyboard too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe

from consent_registry.audit import SYSTEM
from consent_registry.db import db
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from conftest import PASSWORD, StaffUser

AXE = Axe()


def _log_in(page: Any, base: str, email: str) -> None:
    """Log in with the keyboard only: the e-mail field has focus, Tab to the password, Enter."""
    page.goto(f"{base}/login")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'email'")
    page.keyboard.type(email)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/people/")


def _no_serious_accessibility_problems(page: Any) -> None:
    """axe-core finds no serious or critical accessibility violations on the page."""
    results = AXE.run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in serious]


@pytest.fixture
def register(app: Any) -> None:
    """Two pupils in different classes."""
    for number, name, group in (("100", "Ada", "1A"), ("200", "Bram", "2B")):
        create_person(PersonCreate.model_validate({
            "external_id": number, "given_name": name, "family_name": "Jansen",
            "birth_date": "2012-03-04", "role": "pupil", "group": group,
            "guardians": [{"name": f"Ouder van {name}", "email": f"ouder.{name.lower()}@example.nl"}],
        }), actor=SYSTEM)
    db.session.commit()


def test_keyboard_login_search_and_language(page: Any, live_server: str,
                                            users: dict[str, StaffUser], register: None) -> None:
    """Log in by keyboard, filter by class, open a person, switch to English."""
    _log_in(page, live_server, users["staff"].email)
    assert page.locator("h1").inner_text() == "Personen"
    page.get_by_label("Klas").select_option("2B")
    page.get_by_role("button", name="Zoeken").click()
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "Bram" in rows.first.inner_text()
    page.get_by_role("link", name="Jansen, Bram").click()
    assert "Ouder van Bram" in page.content()
    assert "een ouder/verzorger (jonger dan 16)" in page.content()
    page.get_by_role("button", name="English").click()
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Guardians" in page.content()


def test_add_a_pupil_through_the_form(page: Any, live_server: str, users: dict[str, StaffUser]) -> None:
    """Fill the form with labels a screen reader announces; a mistake is shown beside its field."""
    _log_in(page, live_server, users["staff"].email)
    page.get_by_role("link", name="Persoon toevoegen").click()
    page.get_by_label("Nummer (leerlingadministratie)").fill("300")
    page.get_by_label("Roepnaam").fill("Chris")
    page.get_by_label("Achternaam").fill("de Boer")
    page.get_by_label("Geboortedatum").fill("2011-09-01")
    page.locator("#f-guardian1_name").fill("Dana de Boer")
    # The browser accepts this address; the server wants a domain with a dot.
    page.locator("#f-guardian1_email").fill("dana@example")
    page.get_by_role("button", name="Opslaan").click()
    error = page.locator("#e-guardian1_email")
    assert error.is_visible() and page.locator("#f-guardian1_email").get_attribute("aria-invalid")
    page.locator("#f-guardian1_email").fill("dana@example.nl")
    page.get_by_role("button", name="Opslaan").click()
    assert page.locator("h1").inner_text() == "Chris de Boer"
    assert "dana@example.nl" in page.content()


def test_import_with_preview(page: Any, live_server: str, users: dict[str, StaffUser],
                             tmp_path: Path) -> None:
    """An admin uploads an export, sees the preview, imports, and finds the pupils."""
    export = tmp_path / "magister.csv"
    export.write_bytes(
        "Leerlingnummer;Roepnaam;Tussenvoegsel;Achternaam;Geboortedatum;Klas;"
        "E-mail ouder/verzorger 1;Naam ouder/verzorger 1\n"
        "501;Zoë;van;Dijk;01-02-2012;1C;ouder.dijk@example.nl;Eva van Dijk\n"
        "502;Lars;;Bakker;03-04-2009;4A;;\n".encode("cp1252"))
    _log_in(page, live_server, users["admin"].email)
    page.get_by_role("link", name="Importeren").click()
    page.get_by_label("CSV-bestand").set_input_files(str(export))
    page.get_by_role("button", name="Voorbeeld tonen").click()
    summary = page.locator("table.summary")
    new_row = summary.get_by_role("row", name="Nieuwe leerlingen")
    assert new_row.get_by_role("cell").inner_text() == "2", summary.inner_text()
    page.get_by_role("button", name="Nu importeren").click()
    assert page.locator("main li").first.inner_text().endswith(": 2")
    page.goto(f"{live_server}/people/?q=Zoë")
    assert "van Dijk, Zoë" in page.locator("tbody").inner_text()


def test_pages_have_no_serious_accessibility_problems(
    page: Any, live_server: str, users: dict[str, StaffUser], register: None
) -> None:
    """axe-core on every kind of page: login, list, person, form, users, import, account."""
    page.goto(f"{live_server}/login")
    _no_serious_accessibility_problems(page)
    _log_in(page, live_server, users["admin"].email)
    for path in ("/people/", "/people/1", "/people/new", "/people/1/edit", "/users/",
                 "/people/import/", "/account", "/account/password"):
        page.goto(f"{live_server}{path}")
        _no_serious_accessibility_problems(page)
