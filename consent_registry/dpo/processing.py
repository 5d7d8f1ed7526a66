"""The record of processing activities (GDPR art. 30), built from the live configuration.

`record_of_processing` is pure: it reads only the settings mapping and the face-matching switch it
is given, so the record always says what the running system actually does (which channels exist,
whether matching is on and under which DPIA, where files and mails go, how long things are kept).
`processing_markdown` renders the same record as Markdown for a download that prints to PDF.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..consent.texts import BIOMETRIC, TEXT_VERSION, text_for
from ..school import school_names
from ..translate import _

# Defaults of the retention settings (consent_registry/config.py), used when a setting is absent.
RETENTION_DEFAULTS = {
    "RETENTION_MEDIA_DAYS": 365,
    "RETENTION_REQUESTS_DAYS": 730,
    "RETENTION_PROOF_DAYS": 1825,
}
META = "Meta Platforms Ireland Ltd."


class MatchingSetting(Protocol):
    """What the record needs of the face-matching switch (a BiometricSetting)."""

    enabled: bool
    dpia_reference: str | None
    updated_at: datetime | None


def _days(config: Mapping[str, Any], name: str) -> int:
    """A retention period in days from the settings, or its default."""
    value = config.get(name)
    return int(value) if value is not None else RETENTION_DEFAULTS[name]


def _host(url: str | None) -> str | None:
    """The host part of a URL (None when there is none)."""
    if not url:
        return None
    return urlsplit(url).hostname or url


def _purposes(config: Mapping[str, Any], matching_on: bool, language: str) -> list[dict[str, Any]]:
    """Each publication channel, the consent administration itself, and biometric matching."""
    purposes: list[dict[str, Any]] = [{
        "code": "consent_administration",
        "title": _("Consent administration"),
        "description": _(
            "Asking pupils, guardians and staff for consent, recording their decisions and "
            "withdrawals, and proving for every publication that consent was given."),
        "legal_basis": _("Legal obligation to demonstrate consent (GDPR art. 6(1)(c), art. 7(1))"),
        "active": True,
    }]
    for channel in config.get("CHANNELS", ()):
        title, body = text_for(channel, language)
        purposes.append({
            "code": channel, "title": title, "description": body,
            "legal_basis": _("Consent (GDPR art. 6(1)(a))"), "active": True,
        })
    title, body = text_for(BIOMETRIC, language)
    purposes.append({
        "code": BIOMETRIC, "title": title, "description": body,
        "legal_basis": _("Explicit consent (GDPR art. 9(2)(a))"), "active": matching_on,
    })
    return purposes


def _people() -> list[dict[str, str]]:
    """The categories of people whose data the registry holds."""
    return [
        {"code": "pupils", "title": _("Pupils")},
        {"code": "guardians", "title": _("Parents and guardians")},
        {"code": "staff", "title": _("Staff members (in media, and as users of the registry)")},
    ]


def _data(matching_on: bool, voice_on: bool = False) -> list[dict[str, Any]]:
    """The categories of personal data; face or voice encodings only while that matching is on."""
    data: list[dict[str, Any]] = [
        {"code": "names", "title": _("Names"), "special": False},
        {"code": "birth_dates", "title": _("Birth dates"), "special": False},
        {"code": "classes", "title": _("Classes or groups"), "special": False},
        {"code": "email_addresses", "title": _("E-mail addresses (guardians, staff)"),
         "special": False},
        {"code": "consent_records", "title": _(
            "Consent records: decision, decider, method, time, and the text version shown"),
         "special": False},
        {"code": "media", "title": _("Photos, films and sound recordings of school activities"),
         "special": False},
        {"code": "audit_events", "title": _("Audit events: who did what and when (ids only)"),
         "special": False},
    ]
    if matching_on:
        data.append({"code": "face_encodings", "title": _(
            "Face encodings computed from reference photos (biometric data)"), "special": True})
    if voice_on:
        data.append({"code": "voice_encodings", "title": _(
            "Voice encodings computed from reference recordings (biometric data)"), "special": True})
    return data


def _recipients(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Who receives personal data: Facebook, the mail provider, the storage provider."""
    recipients: list[dict[str, Any]] = []
    if "facebook" in config.get("CHANNELS", ()):
        recipients.append({
            "code": "facebook", "name": f"Facebook ({META})",
            "role": _("Publisher of the school's Facebook page (independent controller)"),
            "data": _("Published photos, films and recordings, and their captions"),
            "detail": config.get("FACEBOOK_PAGE_ID") or _("no page configured yet"),
            "third_country": _("Possible transfer to the United States (EU-US Data Privacy "
                               "Framework)"),
        })
    if config.get("MAIL") == "smtp":
        recipients.append({
            "code": "mail", "name": str(config.get("SMTP_HOST")),
            "role": _("Mail provider (processor)"),
            "data": _("Names and e-mail addresses of guardians and staff, mail contents"),
            "detail": f"{config.get('SMTP_HOST')}:{config.get('SMTP_PORT')}",
            "third_country": None,
        })
    if config.get("STORAGE") == "s3":
        endpoint = _host(config.get("S3_ENDPOINT_URL")) or "Amazon S3"
        region = config.get("S3_REGION")
        recipients.append({
            "code": "storage", "name": endpoint,
            "role": _("Storage provider for media files (processor)"),
            "data": _("Photos, films and sound recordings, analysis crops, exports"),
            "detail": f"bucket {config.get('S3_BUCKET')}" + (f", {region}" if region else ""),
            "third_country": None,
        })
    return recipients


def _retention(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """How long each kind of data is kept."""
    return [
        {"code": "media", "days": _days(config, "RETENTION_MEDIA_DAYS"), "title": _(
            "Original media and their analysis crops, after upload (unless published)")},
        {"code": "requests", "days": _days(config, "RETENTION_REQUESTS_DAYS"), "title": _(
            "Consent requests and their recipients")},
        {"code": "proof", "days": _days(config, "RETENTION_PROOF_DAYS"), "title": _(
            "Consent records kept as proof for past publications")},
        {"code": "face_encodings", "days": None, "title": _(
            "Face encodings: only while the person's biometric consent is valid and matching is "
            "on; reference photos are dropped once analysed")},
        {"code": "audit_events", "days": None, "title": _(
            "Audit events: kept, never changed; they hold ids, not personal values")},
    ]


def _security(config: Mapping[str, Any]) -> list[str]:
    """The technical and organisational security measures in force."""
    measures = [
        _("Passwords hashed with Argon2id; an account is locked after %(n)d failed logins.",
          n=int(config.get("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5))),
        _("CSRF tokens on every form."),
        _("Role-based access: every page and API route declares the roles that may use it; the "
          "data protection officer reads but changes nothing."),
        _("Audit trail: append-only, hash-chained events of every change, verified regularly."),
        _("Consent records are append-only (refused by the application and the database)."),
        _("Signed links for guardians, valid %(a)d days (answer) and %(m)d days (manage).",
          a=int(config.get("CONSENT_LINK_DAYS", 14)), m=int(config.get("MANAGE_LINK_DAYS", 365))),
        _("Rate limits on public pages (%(limit)s per address) and on logins.",
          limit=str(config.get("PUBLIC_RATE_LIMIT", ""))),
    ]
    if config.get("STORAGE") == "s3":
        measures.append(_("Media stored with S3 server-side encryption (AES-256)."))
    else:
        measures.append(_("Media stored on the school's server, under generated names only."))
    if config.get("SESSION_COOKIE_SECURE"):
        measures.append(_("Session cookies sent over HTTPS only."))
    return measures


def record_of_processing(config: Mapping[str, Any], face_matching: MatchingSetting, *,
                         language: str = "en", voice_matching: MatchingSetting | None = None
                         ) -> dict[str, Any]:
    """The art. 30 record as JSON-ready data, from the settings and the matching switches."""
    matching_on = bool(face_matching.enabled)
    voice_on = bool(voice_matching is not None and voice_matching.enabled)
    updated = face_matching.updated_at
    voice_updated = voice_matching.updated_at if voice_matching is not None else None
    return {
        "controller": school_names().school_name,
        "consent_text_version": TEXT_VERSION,
        "purposes": _purposes(config, matching_on or voice_on, language),
        "categories_of_people": _people(),
        "categories_of_data": _data(matching_on, voice_on),
        "recipients": _recipients(config),
        "retention": _retention(config),
        "biometric_matching": {
            "enabled": matching_on,
            "dpia_reference": face_matching.dpia_reference,
            "changed_at": updated.isoformat() if updated else None,
            "voice": {
                "enabled": voice_on,
                "dpia_reference": voice_matching.dpia_reference if voice_matching else None,
                "changed_at": voice_updated.isoformat() if voice_updated else None,
            },
        },
        "storage": "s3" if config.get("STORAGE") == "s3" else "local",
        "security_measures": _security(config),
    }


def _days_text(days: int | None) -> str:
    """A retention period in words."""
    return _("%(n)d days", n=days) if days is not None else _("see description")


def _cell(value: object) -> str:
    """A value fit for a Markdown table cell."""
    return str(value if value is not None else "-").replace("|", "\\|").replace("\n", " ")


def processing_markdown(record: Mapping[str, Any]) -> str:
    """The record as a Markdown document (prints well, converts to PDF)."""
    lines = [f"# {_('Record of processing activities')}", ""]
    lines += [f"{_('Controller')}: {_cell(record['controller'])}", ""]
    lines += [f"## {_('Purposes')}", "",
              f"| {_('Purpose')} | {_('Legal basis')} | {_('In use')} | {_('Description')} |",
              "|---|---|---|---|"]
    for p in record["purposes"]:
        in_use = _("yes") if p["active"] else _("no")
        lines.append(f"| {_cell(p['title'])} | {_cell(p['legal_basis'])} | {in_use} "
                     f"| {_cell(p['description'])} |")
    lines += ["", f"## {_('Categories of people')}", ""]
    lines += [f"- {p['title']}" for p in record["categories_of_people"]]
    lines += ["", f"## {_('Categories of personal data')}", ""]
    lines += [f"- {d['title']}" + (f" ({_('special category')})" if d["special"] else "")
              for d in record["categories_of_data"]]
    lines += ["", f"## {_('Recipients')}", ""]
    if not record["recipients"]:
        lines.append(_("None outside the school."))
    for r in record["recipients"]:
        lines.append(f"- **{r['name']}**: {r['role']}. {r['data']} ({_cell(r['detail'])})"
                     + (f". {r['third_country']}" if r["third_country"] else ""))
    lines += ["", f"## {_('Retention periods')}", "",
              f"| {_('Data')} | {_('Kept for')} |", "|---|---|"]
    lines += [f"| {_cell(r['title'])} | {_days_text(r['days'])} |" for r in record["retention"]]
    matching = record["biometric_matching"]
    lines += ["", f"## {_('Biometric matching')}", ""]
    lines.append(f"- {_('Status')}: {_('on') if matching['enabled'] else _('off')}")
    lines.append(f"- {_('DPIA reference')}: {_cell(matching['dpia_reference'])}")
    voice = matching.get("voice") or {}
    lines.append(f"- {_('Voice matching')}: {_('on') if voice.get('enabled') else _('off')}")
    lines.append(f"- {_('DPIA reference')} ({_('Voice matching')}): "
                 f"{_cell(voice.get('dpia_reference'))}")
    lines += ["", f"## {_('Security measures')}", ""]
    lines += [f"- {m}" for m in record["security_measures"]]
    return "\n".join(lines) + "\n"
