"""What people read instead of stored codes: translated labels, names for ids, local times.

Every page and mail shows codes (decisions, states, kinds, channels, audit actions) and actors
through these functions, so no template needs its own table and nothing raw reaches a reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_date, format_datetime
from flask import current_app, g, has_app_context
from flask_babel import get_locale, gettext, lazy_gettext

# The locale whose date and time formats a language is shown in: English as written in Europe
# (6 Dec 2026, 24-hour clock), not the US (12/6/26).
FORMAT_LOCALES = {"en": "en_GB", "nl": "nl_NL"}

LABELS: dict[str, dict[str, Any]] = {
    "role": {
        "admin": lazy_gettext("Administrator"),
        "communications": lazy_gettext("Communications"),
        "staff": lazy_gettext("Staff"),
        "dpo": lazy_gettext("Data protection officer"),
    },
    "person_role": {"pupil": lazy_gettext("Pupil"), "staff": lazy_gettext("Staff member")},
    "status": {"active": lazy_gettext("Active"), "left": lazy_gettext("Left school")},
    "method": {
        "email-link": lazy_gettext("e-mail link"), "paper": lazy_gettext("paper form"),
        "import": lazy_gettext("import"), "in-person": lazy_gettext("in person"),
    },
    "recipient_state": {
        "pending": lazy_gettext("waiting"), "sending": lazy_gettext("sending"),
        "sent": lazy_gettext("sent"), "failed": lazy_gettext("failed"),
        "skipped": lazy_gettext("no e-mail address"), "opened": lazy_gettext("opened"),
        "answered": lazy_gettext("answered"), "expired": lazy_gettext("link expired"),
    },
    "decision": {
        "granted": lazy_gettext("yes, consent given"), "refused": lazy_gettext("no consent"),
        "withdrawn": lazy_gettext("withdrawn"), "expired": lazy_gettext("expired"),
        "none": lazy_gettext("no answer yet"),
    },
    "decider": {
        "guardian": lazy_gettext("guardian"), "pupil": lazy_gettext("the pupil"),
        "self": lazy_gettext("the staff member themselves"),
    },
    "publication_state": {
        "queued": lazy_gettext("queued"), "publishing": lazy_gettext("publishing"),
        "live": lazy_gettext("live"), "failed": lazy_gettext("failed"),
        "takedown_pending": lazy_gettext("takedown pending"), "taken_down": lazy_gettext("taken down"),
    },
    "reason": {
        "withdrawn": lazy_gettext("consent withdrawn"), "refused": lazy_gettext("consent refused"),
        "expired": lazy_gettext("consent expired"), "no_consent": lazy_gettext("no consent"),
        "person_left": lazy_gettext("person left the school"),
        "by_staff": lazy_gettext("on request of staff"),
        "erased": lazy_gettext("the person's data was erased"),
        "not_analysed": lazy_gettext("not analysed yet"),
        "analysis_failed": lazy_gettext("analysis failed"),
        "unresolved": lazy_gettext("a face or voice nobody has decided about"),
        "suggestion_unconfirmed": lazy_gettext("a suggestion not confirmed"),
        "not_attested": lazy_gettext("you did not confirm that every recognisable person is tagged"),
        # Why the API tokens of a user were revoked (auth/service.py).
        "password_reset": lazy_gettext("the password was reset"),
        "deactivated": lazy_gettext("the account was deactivated"),
    },
    "connector": {"facebook": lazy_gettext("posted by the service"),
                  "export": lazy_gettext("export, placed by hand")},
    # The same words as media/views.py's tables (kept there too, where the media pages use them).
    "media_kind": {"photo": lazy_gettext("Photo"), "video": lazy_gettext("Video"),
                   "audio": lazy_gettext("Sound recording")},
    "media_status": {"queued": lazy_gettext("waiting for analysis"),
                     "analysing": lazy_gettext("being analysed"), "ready": lazy_gettext("ready"),
                     "failed": lazy_gettext("analysis failed")},
    "appearance_kind": {"face": lazy_gettext("Face"), "voice": lazy_gettext("Voice")},
    "resolution": {"unresolved": lazy_gettext("not yet tagged"),
                   "identified": lazy_gettext("tagged"),
                   "not_recognisable": lazy_gettext("not recognisable"),
                   "blur": lazy_gettext("blurred when published")},
    "export_status": {"queued": lazy_gettext("queued"), "building": lazy_gettext("being built"),
                      "ready": lazy_gettext("ready to download"),
                      "downloaded": lazy_gettext("downloaded"), "failed": lazy_gettext("failed")},
    "actor_type": {"user": lazy_gettext("user"), "guardian": lazy_gettext("guardian"),
                   "person": lazy_gettext("person"), "system": lazy_gettext("the system")},
    "subject_type": {"person": lazy_gettext("person"), "media": lazy_gettext("media item"),
                     "publication": lazy_gettext("publication"),
                     "consent_request": lazy_gettext("consent request"),
                     "appearance": lazy_gettext("appearance"), "user": lazy_gettext("user"),
                     "guardian": lazy_gettext("guardian"), "setting": lazy_gettext("setting"),
                     "import": lazy_gettext("import"), "export": lazy_gettext("export"),
                     "token": lazy_gettext("API token")},
}

NOTHING = "\u2013"  # an en dash where there is no value

# Every action the audit log records, in the order the filter lists them (grouped by subject).
AUDIT_ACTIONS: dict[str, Any] = {
    "appearance:added": lazy_gettext("face or voice added by hand"),
    "appearance:auto_accepted": lazy_gettext("suggestion accepted automatically"),
    "appearance:resolution": lazy_gettext("face or voice marked"),
    "appearance:suggestion_accepted": lazy_gettext("suggestion confirmed"),
    "appearance:suggestion_rejected": lazy_gettext("suggestion rejected"),
    "appearance:tagged": lazy_gettext("person tagged"),
    "appearance:unlinked": lazy_gettext("person untagged at erasure"),
    "audit:alert_mailed": lazy_gettext("broken audit chain reported"),
    "audit:export": lazy_gettext("audit log exported"),
    "audit:head_mailed": lazy_gettext("audit chain head mailed"),
    "audit:rekeyed": lazy_gettext("audit chain key changed"),
    "audit:verified": lazy_gettext("audit chain verified"),
    "auth:login": lazy_gettext("logged in"),
    "auth:login_failed": lazy_gettext("login failed"),
    "auth:login_throttled": lazy_gettext("login blocked after failures"),
    "auth:logout": lazy_gettext("logged out"),
    "biometric:reference_added": lazy_gettext("reference added"),
    "biometric:reference_deleted": lazy_gettext("reference deleted"),
    "biometric:suggestions_cleared": lazy_gettext("suggestions cleared"),
    "consent:grant": lazy_gettext("consent given"),
    "consent:refuse": lazy_gettext("consent refused"),
    "consent:scan_view": lazy_gettext("paper form scan viewed"),
    "consent:withdraw": lazy_gettext("consent withdrawn"),
    "consent_form:print": lazy_gettext("consent form printed"),
    "consent_link:open": lazy_gettext("consent link opened"),
    "consent_mail:confirmation": lazy_gettext("confirmation mailed"),
    "consent_mail:deferred": lazy_gettext("consent mail deferred"),
    "consent_mail:failed": lazy_gettext("consent mail failed"),
    "consent_mail:interrupted": lazy_gettext("consent mail interrupted"),
    "consent_mail:manage_link": lazy_gettext("manage link mailed"),
    "consent_mail:reminder": lazy_gettext("reminder mailed"),
    "consent_mail:sent": lazy_gettext("consent request mailed"),
    "consent_request:create": lazy_gettext("consent requested"),
    "gate:blocked": lazy_gettext("publication blocked by the gate"),
    "guardian:create": lazy_gettext("guardian added"),
    "guardian:link": lazy_gettext("guardian linked"),
    "guardian:none": lazy_gettext("no guardian"),
    "guardian:unlink": lazy_gettext("guardian unlinked"),
    "guardian:update": lazy_gettext("guardian changed"),
    "import:discard": lazy_gettext("import discarded"),
    "import:upload": lazy_gettext("import file uploaded"),
    "media:analysed": lazy_gettext("media analysed"),
    "media:analysis_failed": lazy_gettext("media analysis failed"),
    "media:analysis_restarted": lazy_gettext("media analysis restarted"),
    "media:delete": lazy_gettext("media deleted"),
    "media:original_view": lazy_gettext("original viewed"),
    "media:upload": lazy_gettext("media uploaded"),
    "media:voices_analysed": lazy_gettext("voices analysed"),
    "notice:turned16": lazy_gettext("turned-16 notice mailed"),
    "notice:turned16_no_address": lazy_gettext("turned 16 without an e-mail address"),
    "people:import": lazy_gettext("people imported"),
    "person:create": lazy_gettext("person added"),
    "person:erased": lazy_gettext("person's data erased"),
    "person:export_built": lazy_gettext("subject-access export built"),
    "person:export_downloaded": lazy_gettext("subject-access export downloaded"),
    "person:export_failed": lazy_gettext("subject-access export failed"),
    "person:export_requested": lazy_gettext("subject-access export requested"),
    "person:export_restarted": lazy_gettext("subject-access export restarted"),
    "person:file_viewed": lazy_gettext("person's file viewed"),
    "person:leave": lazy_gettext("person left the school"),
    "person:return": lazy_gettext("person returned"),
    "person:update": lazy_gettext("person changed"),
    "processing:exported": lazy_gettext("record of processing exported"),
    "publication:blocked_at_publish": lazy_gettext("publication blocked when posting"),
    "publication:create": lazy_gettext("publication requested"),
    "publication:download": lazy_gettext("publication downloaded"),
    "publication:failed": lazy_gettext("publication failed"),
    "publication:live": lazy_gettext("publication live"),
    "publication:proof_viewed": lazy_gettext("proof viewed"),
    "publication:publishing": lazy_gettext("publication being posted"),
    "publication:restarted": lazy_gettext("publication restarted"),
    "publication:retry": lazy_gettext("publication retried"),
    "publication:takedown_requested": lazy_gettext("takedown requested"),
    "publication:takedown_retry": lazy_gettext("takedown retried"),
    "publication:taken_down": lazy_gettext("publication taken down"),
    "retention:applied": lazy_gettext("retention applied"),
    "settings:face_matching": lazy_gettext("face matching switched"),
    "settings:school": lazy_gettext("school name or sender changed"),
    "settings:voice_matching": lazy_gettext("voice matching switched"),
    "token:create": lazy_gettext("API token created"),
    "token:revoke": lazy_gettext("API token revoked"),
    "user:activate": lazy_gettext("user reactivated"),
    "user:create": lazy_gettext("user created"),
    "user:deactivate": lazy_gettext("user deactivated"),
    "user:password_change": lazy_gettext("password changed"),
    "user:password_reset": lazy_gettext("password reset"),
    "user:role_change": lazy_gettext("role changed"),
}

AUDIT_GROUPS: dict[str, Any] = {
    "appearance": lazy_gettext("Tagging"), "audit": lazy_gettext("Audit log"),
    "auth": lazy_gettext("Logging in"), "biometric": lazy_gettext("Face and voice matching"),
    "consent": lazy_gettext("Consent"), "consent_form": lazy_gettext("Paper consent forms"),
    "consent_link": lazy_gettext("Consent links"),
    "consent_mail": lazy_gettext("Consent mail"), "consent_request": lazy_gettext("Consent requests"),
    "gate": lazy_gettext("Publication gate"), "guardian": lazy_gettext("Guardians"),
    "import": lazy_gettext("Import"), "media": lazy_gettext("Media"),
    "notice": lazy_gettext("Notices"), "people": lazy_gettext("People"),
    "person": lazy_gettext("People"), "processing": lazy_gettext("Record of processing"),
    "publication": lazy_gettext("Publications"), "retention": lazy_gettext("Retention"),
    "settings": lazy_gettext("Settings"), "token": lazy_gettext("API tokens"),
    "user": lazy_gettext("Users"),
}


def label(kind: str, code: Any) -> str:
    """A stored code of some kind as its label in the reader's language (a dash for nothing)."""
    if code is None or code == "":
        return NOTHING
    if kind == "channel":
        return channel_label(str(code))
    if kind == "action":
        return action_label(str(code))
    found = LABELS[kind].get(code)
    return str(found) if found is not None else str(code)


def action_label(action: str) -> str:
    """An audit action in words; an unknown one (older versions) as its group and code."""
    found = AUDIT_ACTIONS.get(action)
    if found is not None:
        return str(found)
    group = AUDIT_GROUPS.get(action.partition(":")[0])
    return f"{group}: {action}" if group is not None else action


def audit_action_known(code: str) -> bool:
    """Whether the filter's select offers this action or group (older codes are kept as typed)."""
    return code in AUDIT_ACTIONS or code in AUDIT_GROUPS


def audit_action_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """The audit filter's options: per group, "every event" (the group) then each action."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for action in AUDIT_ACTIONS:
        prefix = action.partition(":")[0]
        groups.setdefault(prefix, [(prefix, gettext("all of them"))])
        groups[prefix].append((action, str(AUDIT_ACTIONS[action])))
    return [(str(AUDIT_GROUPS.get(prefix, prefix)), options) for prefix, options in groups.items()]


def _language() -> str:
    """The reader's language code (nl or en)."""
    locale = get_locale() if has_app_context() else None
    return locale.language if locale is not None else "nl"


def channel_label(code: str) -> str:
    """A channel's title in the reader's language (the purpose titles consent is asked with)."""
    from .consent.texts import text_for

    return text_for(code, _language())[0] if code else NOTHING


# Names for ids -----------------------------------------------------------------------------


def _cached(kind: str, key: int, load: Callable[[int], str | None]) -> str | None:
    """A name looked up once per request (an audit page names the same actors many times)."""
    cache: dict[tuple[str, int], str | None] = g.setdefault("_label_names", {})
    if (kind, key) not in cache:
        cache[(kind, key)] = load(key)
    return cache[(kind, key)]


def _user_name(user_id: int) -> str | None:
    """A user's name, else e-mail address."""
    from .auth.models import User
    from .db import db

    user = db.session.get(User, user_id)
    return None if user is None else (user.name or user.email)


def _guardian_name(guardian_id: int) -> str | None:
    """A guardian's name."""
    from .db import db
    from .people.models import Guardian

    guardian = db.session.get(Guardian, guardian_id)
    return None if guardian is None else (guardian.name or guardian.email)


def _person_name(person_id: int) -> str | None:
    """A person's name, or that their data was erased."""
    from .db import db
    from .people.models import Person

    person = db.session.get(Person, person_id)
    if person is None:
        return None
    if person.erased_at is not None:
        return gettext("erased person no. %(id)s", id=person.id)
    return person.full_name


NAMERS: dict[str, Callable[[int], str | None]] = {
    "user": _user_name, "guardian": _guardian_name, "person": _person_name,
}


def name_of(kind: str, ident: Any) -> str:
    """The name of a user, guardian or person by id; one that no longer exists says so."""
    if ident is None or ident == "":
        return NOTHING
    key = int(ident) if str(ident).isdigit() else None
    namer = NAMERS.get(kind)
    if key is None or namer is None:
        return f"{label('subject_type', kind)} {ident}"
    found = _cached(kind, key, namer)
    if found is None:
        return gettext("%(kind)s no. %(id)s (removed)", kind=label("actor_type", kind), id=key)
    return found


def actor_label(actor_type: str | None, actor_id: Any) -> str:
    """Who did something: the system, or a user, guardian or person by name."""
    if actor_type in (None, "", "system"):
        return label("actor_type", "system")
    if actor_id is None:
        return label("actor_type", actor_type)
    return name_of(actor_type, actor_id)


def subject_label(subject_type: str | None, subject_id: Any) -> str:
    """What an event is about: a person or user by name, anything else by its kind and number."""
    if not subject_type:
        return NOTHING
    if subject_type in NAMERS:
        return name_of(subject_type, subject_id)
    return f"{label('subject_type', subject_type)} {subject_id or ''}".strip()


# Times -------------------------------------------------------------------------------------


def school_zone() -> ZoneInfo:
    """The school's time zone (SCHOOL_TIMEZONE)."""
    return ZoneInfo(current_app.config["SCHOOL_TIMEZONE"])


def check_timezone(name: str) -> str:
    """The zone's name if the system knows it; a clear error at start-up otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuntimeError(f"SCHOOL_TIMEZONE {name!r} is not a known time zone "
                           "(e.g. Europe/Amsterdam)") from None
    return name


def format_locale(language: str | None = None) -> Locale:
    """The locale dates are formatted in for a language (English as in Britain)."""
    code = language or _language()
    return Locale.parse(FORMAT_LOCALES.get(code, code))


def _moment(value: Any) -> datetime | date | None:
    """A datetime, date or ISO string as a value to format (naive times are UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value or " " in value \
                else date.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value if isinstance(value, (datetime, date)) else None


def local_time(value: Any, format: str = "short", *, language: str | None = None) -> str:
    """A moment in the school's time zone and the reader's format; a date as a date; a dash for none."""
    moment = _moment(value)
    if moment is None:
        return NOTHING if value in (None, "") else str(value)
    locale = format_locale(language)
    if isinstance(moment, datetime):
        return format_datetime(moment, format, tzinfo=school_zone(), locale=locale)
    return format_date(moment, format, locale=locale)


def local_date(value: Any, format: str = "medium", *, language: str | None = None) -> str:
    """A date (or a moment's date in the school's time zone) in the reader's format."""
    moment = _moment(value)
    if moment is None:
        return NOTHING if value in (None, "") else str(value)
    if isinstance(moment, datetime):
        moment = moment.astimezone(school_zone()).date()
    return format_date(moment, format, locale=format_locale(language))


def template_helpers() -> Mapping[str, Any]:
    """The functions every template may call."""
    return {"label": label, "channel_label": channel_label, "action_label": action_label,
            "name_of": name_of, "actor_label": actor_label, "subject_label": subject_label,
            "audit_action_choices": audit_action_choices, "audit_action_known": audit_action_known,
            "field_label": field_label,
            "field_value": field_value}


# The person's file in words (the subject-access summary) -------------------------------------

FIELD_LABELS: dict[str, Any] = {
    "id": lazy_gettext("number"), "external_id": lazy_gettext("pupil or staff number"),
    "role": lazy_gettext("role"), "given_name": lazy_gettext("given name"),
    "family_name": lazy_gettext("family name"), "birth_date": lazy_gettext("birth date"),
    "email": lazy_gettext("e-mail address"), "group": lazy_gettext("class"),
    "status": lazy_gettext("status"), "left_on": lazy_gettext("left on"),
    "erased_at": lazy_gettext("erased on"), "language": lazy_gettext("language"),
    "created_at": lazy_gettext("recorded on"), "updated_at": lazy_gettext("last changed on"),
    "name": lazy_gettext("name"), "relation": lazy_gettext("relation"),
    "channel": lazy_gettext("channel"), "channels": lazy_gettext("channels"),
    "decision": lazy_gettext("decision"), "decider_kind": lazy_gettext("decided by"),
    "guardian_id": lazy_gettext("guardian number"), "guardian_name": lazy_gettext("guardian"),
    "method": lazy_gettext("how"), "entered_by": lazy_gettext("entered by (staff number)"),
    "text_sha256": lazy_gettext("fingerprint of the text shown"),
    "text_version": lazy_gettext("text version"), "text_language": lazy_gettext("text language"),
    "text_title": lazy_gettext("text title"), "valid_from": lazy_gettext("valid from"),
    "valid_until": lazy_gettext("valid until"), "decided_at": lazy_gettext("decided on"),
    "recipient_id": lazy_gettext("delivery number"),
    "possibly_scanner": lazy_gettext("possibly opened by a mail scanner"),
    "note": lazy_gettext("note"), "paper_scan": lazy_gettext("scan of a paper form"),
    "request_id": lazy_gettext("request number"), "requested_at": lazy_gettext("asked on"),
    "requested_by": lazy_gettext("asked by (staff number)"),
    "media_id": lazy_gettext("media number"), "delivery": lazy_gettext("delivery"),
    "sent_at": lazy_gettext("sent on"), "opened_at": lazy_gettext("opened on"),
    "answered_at": lazy_gettext("answered on"), "reminders_sent": lazy_gettext("reminders sent"),
    "kind": lazy_gettext("kind"), "title": lazy_gettext("title"),
    "taken_on": lazy_gettext("taken on"), "uploaded_at": lazy_gettext("uploaded on"),
    "sha256": lazy_gettext("fingerprint of the file"), "appearances": lazy_gettext("appearances"),
    "resolution": lazy_gettext("decision about this appearance"), "box": lazy_gettext("place"),
    "segments": lazy_gettext("times"), "source": lazy_gettext("found by"),
    "auto_accepted": lazy_gettext("accepted automatically"),
    "resolved_by": lazy_gettext("decided by (staff number)"),
    "resolved_at": lazy_gettext("decided on"), "appearance_id": lazy_gettext("appearance number"),
    "distance": lazy_gettext("distance"), "media_sha256": lazy_gettext("fingerprint of the file"),
    "connector": lazy_gettext("published by"), "state": lazy_gettext("state"),
    "live": lazy_gettext("online now"), "attested": lazy_gettext("tagging confirmed by the publisher"),
    "published_by": lazy_gettext("published by (staff number)"),
    "published_at": lazy_gettext("published on"), "evaluated_at": lazy_gettext("checked on"),
    "appearance_ids": lazy_gettext("appearance numbers"),
    "consent_state": lazy_gettext("consent at that moment"),
    "consent_record_ids": lazy_gettext("consent record numbers"),
    "consent_valid_until": lazy_gettext("consent valid until"),
    "takedown": lazy_gettext("takedown"), "reason": lazy_gettext("reason"),
    "taken_down_at": lazy_gettext("taken down on"),
    "taken_down_by": lazy_gettext("taken down by (staff number)"),
    "publication_id": lazy_gettext("publication number"), "held": lazy_gettext("held"),
    "count": lazy_gettext("number held"), "occurred_at": lazy_gettext("when"),
    "actor_type": lazy_gettext("done by"), "actor_id": lazy_gettext("number of who did it"),
    "action": lazy_gettext("what"), "subject_type": lazy_gettext("about"),
    "subject_id": lazy_gettext("number of what it is about"), "details": lazy_gettext("details"),
    "match_suggestions": lazy_gettext("face matching suggestions"),
    "person_id": lazy_gettext("person"), "person_ids": lazy_gettext("people"),
    "old_person_id": lazy_gettext("person before"), "new_person_id": lazy_gettext("person after"),
    "suggested_person_id": lazy_gettext("suggested person"),
    "old_resolution": lazy_gettext("before"), "new_resolution": lazy_gettext("after"),
    "fields": lazy_gettext("fields changed"), "attempt": lazy_gettext("attempt"),
    "attempts": lazy_gettext("attempts"), "error": lazy_gettext("error"),
    "enabled": lazy_gettext("switched on"), "format": lazy_gettext("format"),
    "filters": lazy_gettext("filters"), "export_id": lazy_gettext("export number"),
    "post_id": lazy_gettext("post"), "until": lazy_gettext("until"),
    "decider": lazy_gettext("decider"), "size": lazy_gettext("size"),
    # Keys of audit event details (what the code passes to record(..., details=...)).
    "again": lazy_gettext("published again"),
    "album_media_ids": lazy_gettext("media numbers of the album"),
    "range": lazy_gettext("part of the file asked for"),
    "blockers": lazy_gettext("number of blocks"),
    "broken_event_id": lazy_gettext("first broken event number"),
    "by_hand": lazy_gettext("by hand"),
    "bytes": lazy_gettext("size in bytes"),
    "cancelled": lazy_gettext("cancelled"),
    "checked": lazy_gettext("events checked"),
    "code": lazy_gettext("error code"),
    "consent_record_id": lazy_gettext("consent record number"),
    "consent_records": lazy_gettext("consent records"),
    "consent_records_kept": lazy_gettext("consent records kept"),
    "consent_records_removed": lazy_gettext("consent records removed"),
    "content_type": lazy_gettext("file type"),
    "created": lazy_gettext("added"),
    "deleted": lazy_gettext("deleted"),
    "exports": lazy_gettext("exports"),
    "faces": lazy_gettext("faces"),
    "from": lazy_gettext("from"),
    "gave_up": lazy_gettext("given up"),
    "guardians_removed": lazy_gettext("guardians removed"),
    "has_box": lazy_gettext("place marked"),
    "head": lazy_gettext("chain head"),
    "keyed": lazy_gettext("with a key"),
    "known_account": lazy_gettext("known account"),
    "label": lazy_gettext("token name"),
    "matching": lazy_gettext("face matching on"),
    "media": lazy_gettext("media items"),
    "media_ids": lazy_gettext("media numbers"),
    "missing": lazy_gettext("missing"),
    "modality": lazy_gettext("face or voice"),
    "ok": lazy_gettext("intact"),
    "part": lazy_gettext("part"),
    "people": lazy_gettext("people"),
    "people_erased": lazy_gettext("people erased"),
    "posted_while_cancelled": lazy_gettext("posted while cancelled"),
    "previous_chain_intact": lazy_gettext("previous chain intact"),
    "previous_first_broken_event_id": lazy_gettext("first broken event number before"),
    "previous_head": lazy_gettext("previous chain head"),
    "previous_state": lazy_gettext("state before"),
    "printed": lazy_gettext("from a printed form"),
    "printed_link": lazy_gettext("through the link of a printed form"),
    "reasons": lazy_gettext("reasons"),
    "recipient_ids": lazy_gettext("delivery numbers"),
    "recipients": lazy_gettext("deliveries"),
    "record_id": lazy_gettext("consent record number"),
    "reference_id": lazy_gettext("reference number"),
    "references": lazy_gettext("references"),
    "reminder": lazy_gettext("reminder"),
    "rendition_sha256": lazy_gettext("fingerprint of the published file"),
    "renditions": lazy_gettext("published files"),
    "requests": lazy_gettext("requests"),
    "retry_in": lazy_gettext("retry in (seconds)"),
    "size_bytes": lazy_gettext("size in bytes"),
    "sound_without_speech": lazy_gettext("sounds without speech"),
    "stops_publishing": lazy_gettext("stops publishing"),
    "suggestions": lazy_gettext("suggestions"),
    "takedowns": lazy_gettext("takedowns"),
    "to": lazy_gettext("to"),
    "token_id": lazy_gettext("token number"),
    "unchanged": lazy_gettext("unchanged"),
    "updated": lazy_gettext("changed"),
    "via": lazy_gettext("via"),
    "voice_matching": lazy_gettext("voice matching on"),
    "voices": lazy_gettext("voices"),
    "without_address": lazy_gettext("without e-mail address"),
}

# Which label table translates a field's value (kind: photo/video/audio or face/voice).
FIELD_KINDS = {
    "role": "person_role", "status": "status", "decision": "decision", "consent_state": "decision",
    "decider_kind": "decider", "method": "method", "delivery": "recipient_state",
    "channel": "channel", "state": "publication_state", "connector": "connector",
    "resolution": "resolution", "reason": "reason", "actor_type": "actor_type",
    "subject_type": "subject_type", "action": "action", "old_resolution": "resolution",
    "new_resolution": "resolution",
}
PERSON_FIELDS = frozenset({"person_id", "person_ids", "old_person_id", "new_person_id",
                           "suggested_person_id"})
DATE_FIELDS = frozenset({"birth_date", "left_on", "taken_on", "valid_from", "valid_until",
                         "consent_valid_until"})


def field_label(key: str) -> str:
    """A field of the person's file in words."""
    found = FIELD_LABELS.get(key)
    return str(found) if found is not None else key.replace("_", " ")


def field_value(key: str, value: Any, *, name_people: bool = False) -> Any:
    """A field's value in words: codes as labels, moments local; anything else unchanged.

    People are named only for staff (name_people): a subject-access summary must never name
    another child, so there their ids stay numbers.
    """
    if key == "fields" and isinstance(value, list):
        return [field_label(str(v)) for v in value]
    if key == "reasons" and isinstance(value, list):  # the gate's blocker codes (gate:blocked)
        return [label("reason", v) for v in value]
    if name_people and key in PERSON_FIELDS and isinstance(value, list):
        return [name_of("person", v) for v in value]
    if name_people and key in PERSON_FIELDS and (isinstance(value, int) or str(value).isdigit()):
        return name_of("person", value)
    if value is None or isinstance(value, (bool, dict, list)):
        return value
    if key in FIELD_KINDS:
        return label(FIELD_KINDS[key], value)
    if key == "kind":
        found = LABELS["media_kind"].get(value) or LABELS["appearance_kind"].get(value)
        return str(found) if found is not None else value
    if key in DATE_FIELDS:
        return local_date(value, "long")
    if key.endswith("_at"):
        return local_time(value)
    if key == "channels" and isinstance(value, str):
        return channel_label(value)
    return value
