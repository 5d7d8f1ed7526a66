"""The record of processing (GDPR art. 30): built from the live configuration, shown and downloaded."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.biometrics.service import face_matching, set_face_matching
from consent_registry.db import db
from consent_registry.dpo.processing import processing_markdown, record_of_processing

DPIA = "DPIA-2026-07 face matching"


# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def events(action: str) -> list[AuditEvent]:
    """Audit events with this action, oldest first."""
    return list(db.session.execute(
        sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)).scalars())


def codes(items: list[dict[str, Any]]) -> list[str]:
    """The codes of a record's list entries."""
    return [item["code"] for item in items]


def switch_matching_on() -> None:
    """Face matching on, with a DPIA reference, committed."""
    set_face_matching(enabled=True, dpia_reference=DPIA, actor=SYSTEM)
    db.session.commit()


def test_matching_off_holds_no_biometric_data(app: Flask) -> None:
    """Off: the biometric purpose is not in use, no encodings, no DPIA reference."""
    record = record_of_processing(app.config, face_matching())
    assert record["biometric_matching"] == {
        "enabled": False, "dpia_reference": None, "changed_at": None,
        "voice": {"enabled": False, "dpia_reference": None, "changed_at": None}}
    biometric = next(p for p in record["purposes"] if p["code"] == "biometric")
    assert biometric["active"] is False and "9(2)(a)" in biometric["legal_basis"]
    assert "face_encodings" not in codes(record["categories_of_data"])
    assert codes(record["categories_of_people"]) == ["pupils", "guardians", "staff"]
    assert {"names", "birth_dates", "classes", "email_addresses", "consent_records",
            "media"} <= set(codes(record["categories_of_data"]))


def test_matching_on_names_its_dpia_and_the_encodings(app: Flask) -> None:
    """On: the purpose is in use, face encodings are a special category, the DPIA is named."""
    switch_matching_on()
    record = record_of_processing(app.config, face_matching())
    assert record["biometric_matching"]["enabled"] is True
    assert record["biometric_matching"]["dpia_reference"] == DPIA
    assert record["biometric_matching"]["changed_at"] is not None
    assert next(p for p in record["purposes"] if p["code"] == "biometric")["active"] is True
    encodings = next(d for d in record["categories_of_data"] if d["code"] == "face_encodings")
    assert encodings["special"] is True


def test_channels_become_purposes_and_facebook_a_recipient(app: Flask) -> None:
    """Every configured channel is a purpose with its title; Facebook only with its channel."""
    record = record_of_processing(app.config, face_matching())
    assert codes(record["purposes"]) == ["consent_administration", "facebook", "website",
                                         "newsletter", "schoolguide", "biometric"]
    titles = {p["code"]: p["title"] for p in record["purposes"]}
    assert titles["facebook"] == "The school's Facebook page"
    facebook = next(r for r in record["recipients"] if r["code"] == "facebook")
    assert "Meta Platforms Ireland" in facebook["name"]

    config = {**app.config, "CHANNELS": ("website", "yearbook"), "FACEBOOK_PAGE_ID": "12345"}
    record = record_of_processing(config, face_matching())
    assert codes(record["purposes"]) == ["consent_administration", "website", "yearbook",
                                         "biometric"]
    assert next(p for p in record["purposes"] if p["code"] == "yearbook")["title"] == (
        "Publication: yearbook")
    assert "facebook" not in codes(record["recipients"])


def test_storage_and_mail_providers_are_recipients(app: Flask) -> None:
    """Local storage and the outbox send nothing out; S3 and SMTP name their hosts."""
    record = record_of_processing(app.config, face_matching())
    assert record["storage"] == "local"
    assert "storage" not in codes(record["recipients"]) and "mail" not in codes(record["recipients"])
    assert not any("S3" in m for m in record["security_measures"])

    config = {**app.config, "STORAGE": "s3", "S3_BUCKET": "school-media",
              "S3_ENDPOINT_URL": "https://s3.eu-central.example.net:9000", "S3_REGION": "eu-central-1",
              "MAIL": "smtp", "SMTP_HOST": "smtp.mailprovider.example", "SMTP_PORT": 587}
    record = record_of_processing(config, face_matching())
    assert record["storage"] == "s3"
    storage = next(r for r in record["recipients"] if r["code"] == "storage")
    assert storage["name"] == "s3.eu-central.example.net"
    assert "school-media" in storage["detail"] and "eu-central-1" in storage["detail"]
    mail = next(r for r in record["recipients"] if r["code"] == "mail")
    assert mail["name"] == "smtp.mailprovider.example" and "587" in mail["detail"]
    assert any("server-side encryption" in m for m in record["security_measures"])

    aws = record_of_processing({**config, "S3_ENDPOINT_URL": None}, face_matching())
    assert next(r for r in aws["recipients"] if r["code"] == "storage")["name"] == "Amazon S3"


def test_retention_periods_come_from_the_settings(app: Flask) -> None:
    """Defaults 365/730/1825 days; the configured values when set."""
    config = {k: v for k, v in app.config.items() if not k.startswith("RETENTION_")}
    days = {r["code"]: r["days"] for r in record_of_processing(config, face_matching())["retention"]}
    assert (days["media"], days["requests"], days["proof"]) == (365, 730, 1825)
    config.update(RETENTION_MEDIA_DAYS=30, RETENTION_REQUESTS_DAYS=60, RETENTION_PROOF_DAYS=90)
    days = {r["code"]: r["days"] for r in record_of_processing(config, face_matching())["retention"]}
    assert (days["media"], days["requests"], days["proof"]) == (30, 60, 90)


def test_security_measures_are_listed(app: Flask) -> None:
    """Passwords, CSRF, roles, the audit chain, signed links and rate limits."""
    text = " ".join(record_of_processing(app.config, face_matching())["security_measures"])
    for words in ("Argon2id", "CSRF", "Role-based", "hash-chained", "Signed links", "Rate limits"):
        assert words in text


def test_the_page_shows_the_live_configuration(app: Flask, logged_in) -> None:
    """The printable page follows the switch, the storage setting and the channels."""
    client = logged_in("dpo")
    page = client.get("/dpo/processing").get_data(as_text=True)
    assert "Record of processing activities" in page and '<style media="print">' in page
    assert "The school&#39;s Facebook page" in page and "Meta Platforms Ireland" in page
    assert 'id="data-face_encodings"' not in page and DPIA not in page
    assert 'id="recipient-storage"' not in page

    switch_matching_on()
    app.config.update(STORAGE="s3", S3_BUCKET="school-media", S3_ENDPOINT_URL=None,
                      CHANNELS=("website",))
    page = client.get("/dpo/processing").get_data(as_text=True)
    assert 'id="data-face_encodings"' in page and DPIA in page
    assert 'id="recipient-storage"' in page and "Amazon S3" in page
    assert "Meta Platforms Ireland" not in page and 'id="purpose-facebook"' not in page


def test_the_markdown_download_is_audited(app: Flask, logged_in, users) -> None:
    """A Markdown file with every section; each download is an audit event of the reader."""
    switch_matching_on()
    response = logged_in("admin").get("/dpo/processing.md")
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    for heading in ("# Record of processing activities", "## Purposes", "## Categories of people",
                    "## Categories of personal data", "## Recipients", "## Retention periods",
                    "## Biometric matching", "## Security measures"):
        assert f"\n{heading}\n" in f"\n{text}"
    assert DPIA in text and "| 365 days |" in text and "Meta Platforms Ireland" in text
    [event] = events("processing:exported")
    assert (event.actor_type, event.actor_id) == ("user", users["admin"].id)


def test_markdown_escapes_table_cells(app: Flask) -> None:
    """A pipe in a configured value cannot break the tables."""
    text = processing_markdown(record_of_processing(
        {**app.config, "CHANNELS": ("a|b",)}, face_matching()))
    assert "Publication: a\\|b" in text


@pytest.mark.parametrize("path", ["/dpo/", "/dpo/processing", "/dpo/processing.md"])
def test_only_the_dpo_and_admins_get_in(app: Flask, logged_in, client, path: str) -> None:
    """dpo and admin read; communications and staff get 403; nobody else is audited."""
    for role in ("dpo", "admin"):
        assert logged_in(role).get(path).status_code == 200
    exported = len(events("processing:exported"))
    for role in ("communications", "staff"):
        assert logged_in(role).get(path).status_code == 403
    response = client.get(path)
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert len(events("processing:exported")) == exported


def test_the_index_links_every_dpo_page(app: Flask, logged_in) -> None:
    """The index links the record of processing, face matching, and every other DPO page."""
    page = logged_in("dpo").get("/dpo/").get_data(as_text=True)
    assert 'href="/dpo/processing"' in page and 'href="/settings/face-matching"' in page
    for name in ("dpo.audit", "dpo.audit_verify"):
        if name in app.view_functions:
            with app.test_request_context():
                from flask import url_for

                assert f'href="{url_for(name)}"' in page
