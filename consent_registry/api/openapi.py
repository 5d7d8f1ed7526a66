"""The OpenAPI 3.1 document of API v1, built from the same pydantic models that validate requests."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..biometrics.schemas import (
    FaceMatchingIn,
    FaceMatchingOut,
    ReferencePhotoList,
    ReferencePhotoOut,
)
from ..consent.schemas import (
    ConsentIn,
    ConsentRecordOut,
    ConsentRequestCreated,
    ConsentRequestIn,
    ConsentRequestOut,
    ConsentsOut,
)
from ..consent.texts import BIOMETRIC
from ..media.schemas import ACCEPTED_CONTENT_TYPES, MediaOut, MediaPage, MediaUploadFields
from ..people.schemas import PersonCreate, PersonOut, PersonPage, PersonPatch
from ..publishing.gate import DEFAULT_CHANNELS
from ..publishing.models import PUBLICATION_STATES
from .appearances import AppearanceCreate, AppearanceOut, AppearancePatch, PersonMediaPage
from .audit import AuditEventOut, AuditPage  # G1
from .dpo_export import ExportCreated, ExportOut
from .dpo_files import PersonFileOut, PublicationProofOut  # G2
from .gate import GateDecisionOut
from .publications import (
    AlbumPublishIn,
    LivePublication,
    PublicationOut,
    PublicationPage,
    PublishBlocker,
    PublishIn,
    PublishOut,
)


class ErrorDetail(BaseModel):
    """The inside of an error body."""

    code: str
    message: str
    fields: dict[str, str] | None = None
    blockers: list[PublishBlocker] | None = None  # code "blocked": what the gate refuses
    # already_published / still_published: the publications holding the item
    publications: list[LivePublication] | None = None


class ErrorBody(BaseModel):
    """Every error the API answers."""

    error: ErrorDetail


_MODELS: list[type[BaseModel]] = [
    PersonCreate, PersonPatch, PersonOut, PersonPage, ErrorBody, ConsentIn, ConsentRecordOut,
    ConsentsOut, ConsentRequestIn, ConsentRequestCreated, ConsentRequestOut, MediaOut, MediaPage,
]
_MODELS += [AppearancePatch, AppearanceCreate, AppearanceOut, PersonMediaPage]  # tagging
_MODELS += [FaceMatchingIn, FaceMatchingOut, ReferencePhotoOut, ReferencePhotoList]  # biometrics
_MODELS += [GateDecisionOut]  # publication gate
_MODELS += [PublishIn, PublishOut, PublicationOut, PublicationPage]  # publications
_MODELS += [AuditEventOut, AuditPage]  # the audit log
_MODELS += [AlbumPublishIn]  # albums
_MODELS += [PersonFileOut, PublicationProofOut]  # the DPO: files and proofs
_MODELS += [ExportCreated, ExportOut]  # subject-access exports
_ERROR_TEXT = {
    400: "Malformed request (bad JSON, bad query parameter)",
    401: "Missing or invalid bearer token",
    403: "The token's role may not do this",
    404: "No such resource",
    409: "Conflicts with existing data (e.g. duplicate external id)",
    413: "Request too large",
    415: "Body is not application/json",
    422: "Fields are invalid; `fields` names each one",
}
_MEDIA_ERROR_TEXT = {
    413: "The file is larger than the limit for its kind (photo, video or sound recording)",
    415: "Not multipart/form-data, or the file's content is none of the accepted types",
    422: "Missing, unknown or invalid fields; an empty, damaged or unreadable file; a picture with "
         "too many pixels",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON content block."""
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """Documented error responses, all with the ErrorBody shape."""
    return {
        str(s): {"description": _ERROR_TEXT[s], **_json(_ref(ErrorBody))} for s in statuses
    }


def _media_errors(*statuses: int) -> dict[str, Any]:
    """Error responses of the upload, with texts that say what each means for a file."""
    return {
        str(s): {"description": _MEDIA_ERROR_TEXT.get(s) or _ERROR_TEXT[s], **_json(_ref(ErrorBody))}
        for s in statuses
    }


def _upload_body() -> dict[str, Any]:
    """The multipart body of an upload: the file and the optional fields of MediaUploadFields."""
    return {
        "required": True,
        "description": "The type is decided from the file's content, never from its name or the "
                       "part's Content-Type. Accepted: " + ", ".join(ACCEPTED_CONTENT_TYPES) + ".",
        "content": {"multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "contentMediaType": "application/octet-stream",
                             "description": "The photo, video or sound recording"},
                    # The optional text fields, from the model that validates them; a form
                    # field is text or absent, never null.
                    **{name: _without_null(field) for name, field
                       in MediaUploadFields.model_json_schema()["properties"].items()},
                },
                "additionalProperties": False,
            },
        }},
    }


_MEDIA_ID = {"name": "media_id", "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_PAGE = _query("page", {"type": "integer", "minimum": 1, "maximum": 100_000}, "Page number, from 1")


_PERSON_ID = {"name": "person_id", "in": "path", "required": True,
              "schema": {"type": "integer", "minimum": 1}}


_APPEARANCE_ID = {"name": "appearance_id", "in": "path", "required": True,
                  "schema": {"type": "integer", "minimum": 1}}


def _tagging_paths() -> dict[str, Any]:
    """Tagging: appearances of an item, and the items a person appears in."""
    return {
        "/api/v1/media/{media_id}/appearances": {
            "parameters": [_MEDIA_ID],
            "post": {
                "operationId": "addAppearance",
                "summary": "Add a face the detector missed (a box) or a person present but not "
                           "detected (no box, person_id required)",
                "requestBody": {"required": True, **_json(_ref(AppearanceCreate))},
                "responses": {"201": {"description": "Added; `Location` names it",
                                      **_json(_ref(AppearanceOut))},
                              **_errors(400, 401, 403, 404, 409, 413, 415, 422)},
            },
        },
        "/api/v1/media/{media_id}/appearances/{appearance_id}": {
            "parameters": [_MEDIA_ID, _APPEARANCE_ID],
            "get": {
                "operationId": "getAppearance",
                "summary": "One appearance of an item",
                "responses": {"200": {"description": "The appearance", **_json(_ref(AppearanceOut))},
                              **_errors(401, 403, 404)},
            },
            "patch": {
                "operationId": "decideAppearance",
                "summary": "Exactly one of: tag a person, accept or reject the suggestion, set the "
                           "resolution (409 not_ready before analysis, no_suggestion without one)",
                "requestBody": {"required": True, **_json(_ref(AppearancePatch))},
                "responses": {"200": {"description": "The changed appearance",
                                      **_json(_ref(AppearanceOut))},
                              **_errors(400, 401, 403, 404, 409, 413, 415, 422)},
            },
        },
        "/api/v1/people/{person_id}/media": {
            "parameters": [_PERSON_ID],
            "get": {
                "operationId": "getPersonMedia",
                "summary": "The media items a person is tagged in, newest first",
                "parameters": [
                    _PAGE,
                    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200},
                           "Items per page"),
                ],
                "responses": {"200": {"description": "A page of items",
                                      **_json(_ref(PersonMediaPage))},
                              **_errors(400, 401, 403, 404)},
            },
        },
    }


_REFERENCE_ERROR_TEXT = {
    "face": {
        409: "`matching_off`: face matching is switched off; `no_biometric_consent`: the person is "
             "not active with a valid biometric consent; `duplicate`: this photo is already a "
             "reference",
        413: "The file is larger than the photo limit",
        415: "Not multipart/form-data, or the file's content is not an accepted photo type",
        422: "Missing or unknown fields; an empty, damaged or unreadable photo; too many pixels; "
             "`not_one_face`: the photo does not show exactly one face",
    },
    "voice": {
        409: "`matching_off`: voice matching is switched off; `no_biometric_consent`: the person is "
             "not active with a valid biometric consent; `duplicate`: this recording is already a "
             "reference",
        413: "The file is larger than the sound-recording limit (and 40 MB)",
        415: "Not multipart/form-data, or the file's content is not an accepted sound type",
        422: "Missing or unknown fields; an empty, damaged or unreadable recording; `not_one_voice`: "
             "the recording does not hold exactly one voice with at least 3 seconds of speech",
    },
}
# modality: (settings path, references path, operation noun, what is uploaded)
_MATCHING = {
    "face": ("face-matching", "reference-photos", "ReferencePhoto", "FaceMatching",
             "a photo with exactly one face", "JPEG, PNG, WebP, HEIC/HEIF", "A photo of the person alone"),
    "voice": ("voice-matching", "reference-voices", "ReferenceVoice", "VoiceMatching",
              "a recording of exactly one voice", "WAV, MP3, M4A, FLAC, OGG",
              "A recording of the person speaking alone, at least 3 seconds of speech"),
}


def _biometric_paths() -> dict[str, Any]:
    """Face and voice matching: the school's switches and people's references (never an encoding)."""
    return {path: item for modality in _MATCHING for path, item in _matching_paths(modality).items()}


def _matching_paths(modality: str) -> dict[str, Any]:
    """One modality's switch and reference routes."""
    setting, references, noun, switch, upload, types, part = _MATCHING[modality]
    reference_errors = {
        str(s): {"description": _REFERENCE_ERROR_TEXT[modality].get(s) or _ERROR_TEXT[s],
                 **_json(_ref(ErrorBody))}
        for s in (400, 401, 403, 404, 409, 413, 415, 422)
    }
    return {
        f"/api/v1/settings/{setting}": {
            "get": {
                "operationId": f"get{switch}",
                "summary": f"Whether {modality} matching is on, on which DPIA, changed by whom and when",
                "responses": {"200": {"description": "The setting", **_json(_ref(FaceMatchingOut))},
                              **_errors(401, 403)},
            },
            "put": {
                "operationId": f"set{switch}",
                "summary": f"Switch {modality} matching on (with a DPIA reference) or off; switching "
                           "off deletes every reference of that kind",
                "requestBody": {"required": True, **_json(_ref(FaceMatchingIn))},
                "responses": {"200": {"description": "The changed setting",
                                      **_json(_ref(FaceMatchingOut))},
                              **_errors(400, 401, 403, 413, 415, 422)},
            },
        },
        f"/api/v1/people/{{person_id}}/{references}": {
            "parameters": [_PERSON_ID],
            "get": {
                "operationId": f"list{noun}s",
                "summary": f"A person's references for {modality} matching, oldest first",
                "responses": {"200": {"description": "The references",
                                      **_json(_ref(ReferencePhotoList))},
                              **_errors(401, 403, 404)},
            },
            "post": {
                "operationId": f"add{noun}",
                "summary": f"Enrol {upload}; only its encoding is kept",
                "requestBody": {
                    "required": True,
                    "description": f"The file's type is decided from its content. Accepted: {types}.",
                    "content": {"multipart/form-data": {"schema": {
                        "type": "object", "required": ["file"], "additionalProperties": False,
                        "properties": {"file": {"type": "string",
                                                "contentMediaType": "application/octet-stream",
                                                "description": part}},
                    }}},
                },
                "responses": {"201": {"description": "Enrolled", **_json(_ref(ReferencePhotoOut))},
                              **reference_errors},
            },
        },
        f"/api/v1/people/{{person_id}}/{references}/{{reference_id}}": {
            "parameters": [_PERSON_ID, {"name": "reference_id", "in": "path", "required": True,
                                        "schema": {"type": "integer", "minimum": 1}}],
            "delete": {
                "operationId": f"delete{noun}",
                "summary": "Delete one reference of a person (audited)",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404)},
            },
        },
    }


def _gate_paths() -> dict[str, Any]:
    """The publication gate: the decision for an item and a channel, without publishing."""
    return {
        "/api/v1/media/{media_id}/gate": {
            "parameters": [_MEDIA_ID],
            "get": {
                "operationId": "getMediaGate",
                "summary": "Whether the item may be published on the channel now, and every "
                           "blocker (per appearance and person); nothing is changed or audited",
                "parameters": [
                    {"name": "channel", "in": "query", "required": True,
                     "schema": {"type": "string", "minLength": 1},
                     "description": "A channel of this school, e.g. facebook (400 otherwise)"},
                    _query("attest", {"type": "string", "enum": ["true", "false"]},
                           "The publisher attests that every recognisable person is tagged "
                           "(default false: the decision then includes not_attested)"),
                ],
                "responses": {"200": {"description": "The gate's decision",
                                      **_json(_ref(GateDecisionOut))},
                              **_errors(400, 401, 403, 404)},
            },
        },
    }


_PUBLICATION_ID = {"name": "publication_id", "in": "path", "required": True,
                   "schema": {"type": "integer", "minimum": 1}}
_PUBLISH_ERROR_TEXT = {
    409: "`blocked`: the publication gate blocks the item on the channel now; `blockers` lists "
         "each appearance, person and reason. `already_published`: the item (for an album: one "
         "of its photos) is queued or live on the channel; `publications` names each (id, "
         "channel, state, since, post link); send `again: true` to publish it again",
    422: "Invalid fields: `unknown_channel`, `not_publishable` (only photos and videos go to "
         "Facebook), a caption that is too long, a non-boolean attest, a malformed "
         "Idempotency-Key; `idempotency_key_reused`: the key was used for a different request",
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": "Any unique string (a UUID): a request repeated with the same key (per user) "
                   "and the same body answers the same publication (201) and creates nothing; "
                   "the same key with another body is refused (422 idempotency_key_reused)",
}
_CREATED = "Created and queued; `Location` names it. With a repeated Idempotency-Key: the " \
           "publication that key created, in its state now"


def _publication_paths() -> dict[str, Any]:
    """Publications: publish an item on a channel, read them (the proof), take one down."""
    publish_errors = {
        str(s): {"description": _PUBLISH_ERROR_TEXT.get(s) or _ERROR_TEXT[s], **_json(_ref(ErrorBody))}
        for s in (400, 401, 403, 404, 409, 413, 415, 422)
    }
    return {
        "/api/v1/media/{media_id}/publish": {
            "parameters": [_MEDIA_ID],
            "post": {
                "operationId": "publishMedia",
                "summary": "Publish the item on a channel: the gate is evaluated again; Facebook "
                           "posts go out in the background, other channels are exports. An item "
                           "is published once per channel: 409 already_published unless `again`",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **_json(_ref(PublishIn))},
                "responses": {"201": {"description": _CREATED,
                                      **_json(_ref(PublishOut))},
                              **publish_errors},
            },
        },
        "/api/v1/publications": {
            "post": {
                "operationId": "publishAlbum",
                "summary": "Publish 2 to 10 ready photos as one Facebook post: the gate is "
                           "evaluated again for each; any blocked photo blocks the album (409, "
                           "each blocker with its media_id); 422 also for unknown, duplicate, "
                           "non-photo or not yet analysed items and for export channels; a "
                           "photo queued or live on the channel: 409 already_published unless "
                           "`again`",
                "parameters": [_IDEMPOTENCY_KEY],
                "requestBody": {"required": True, **_json(_ref(AlbumPublishIn))},
                "responses": {"201": {"description": _CREATED,
                                      **_json(_ref(PublishOut))},
                              **{s: r for s, r in publish_errors.items() if s != "404"}},
            },
            "get": {
                "operationId": "listPublications",
                "summary": "Publications, newest first",
                "parameters": [
                    _query("state", {"type": "string", "enum": list(PUBLICATION_STATES)},
                           "Only publications in this state"),
                    _query("channel", {"type": "string"},
                           "Only publications on this channel (one of this school's)"),
                    _query("media_id", {"type": "integer", "minimum": 1}, "Only of this item"),
                    _PAGE,
                    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200},
                           "Items per page"),
                ],
                "responses": {"200": {"description": "A page of publications",
                                      **_json(_ref(PublicationPage))},
                              **_errors(400, 401, 403)},
            },
        },
        "/api/v1/publications/{publication_id}": {
            "parameters": [_PUBLICATION_ID],
            "get": {
                "operationId": "getPublication",
                "summary": "One publication with the gate's decision, its state and takedown",
                "responses": {"200": {"description": "The publication",
                                      **_json(_ref(PublicationOut))},
                              **_errors(401, 403, 404)},
            },
            "delete": {
                "operationId": "takeDownPublication",
                "summary": "Take the publication down (reason by_staff); Facebook posts are "
                           "deleted in the background, exports become a task for staff",
                "responses": {"202": {"description": "Takedown requested (or already done)",
                                      **_json(_ref(PublicationOut))},
                              **_errors(401, 403, 404, 409)},
            },
        },
    }


def _export_paths() -> dict[str, Any]:
    """Subject-access exports (DPO and admin): request a ZIP of everything about a person."""
    return {
        "/api/v1/people/{person_id}/export": {
            "parameters": [_PERSON_ID],
            "post": {
                "operationId": "requestPersonExport",
                "summary": "Queue a subject-access export (GDPR art. 15) of the person: a ZIP "
                           "built in the background, downloadable once at `download_url`",
                "responses": {"202": {"description": "Queued; `Location` names its status",
                                      **_json(_ref(ExportCreated))},
                              **_errors(401, 403, 404)},
            },
        },
        "/api/v1/exports/{export_id}": {
            "parameters": [{"name": "export_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "get": {
                "operationId": "getExport",
                "summary": "Where a subject-access export stands",
                "responses": {"200": {"description": "The export", **_json(_ref(ExportOut))},
                              **_errors(401, 403, 404)},
            },
        },
    }


def _dpo_file_paths() -> dict[str, Any]:
    """The DPO's read-only views: a person's file and a publication's proof (each view audited)."""
    return {
        "/api/v1/people/{person_id}/file": {
            "parameters": [_PERSON_ID],
            "get": {
                "operationId": "getPersonFile",
                "summary": "Everything held about a person (dpo, admin); the view is audited",
                "responses": {"200": {"description": "The person's file",
                                      **_json(_ref(PersonFileOut))},
                              **_errors(401, 403, 404)},
            },
        },
        "/api/v1/publications/{publication_id}/proof": {
            "parameters": [_PUBLICATION_ID],
            "get": {
                "operationId": "getPublicationProof",
                "summary": "Per person the consent records that allowed the publication, the "
                           "attestation, the publisher and whether it is live (dpo, admin); audited",
                "responses": {"200": {"description": "The proof",
                                      **_json(_ref(PublicationProofOut))},
                              **_errors(401, 403, 404)},
            },
        },
    }


def _audit_paths() -> dict[str, Any]:
    """The audit log (dpo, admin): search events."""
    id_query = {"type": "integer", "minimum": 1}
    moment = {"anyOf": [{"type": "string", "format": "date"},
                        {"type": "string", "format": "date-time"}],
              "description": "YYYY-MM-DD or an ISO 8601 date-time (UTC unless it has an offset)"}
    return {
        "/api/v1/audit": {
            "get": {
                "operationId": "listAuditEvents",
                "summary": "Audit events, newest first, filtered (dpo, admin)",
                "parameters": [
                    _query("since", moment, "Events at or after this moment"),
                    _query("until", moment, "Events before this moment; a bare date includes the day"),
                    _query("actor_type", {"type": "string",
                                          "enum": ["user", "guardian", "person", "system"]},
                           "Only events by this kind of actor"),
                    _query("actor_id", {"type": "integer", "minimum": 0}, "Only events by this actor"),
                    _query("action", {"type": "string", "maxLength": 64},
                           "`subject:action` exactly, or `subject` for every action on it"),
                    _query("person_id", id_query,
                           "Events about this person, or naming them in their details"),
                    _query("media_id", id_query,
                           "Events about this item, or naming it in their details"),
                    _query("text", {"type": "string", "maxLength": 200},
                           "Text found in the details (case-insensitive)"),
                    _PAGE,
                    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200},
                           "Items per page"),
                ],
                "responses": {"200": {"description": "A page of audit events",
                                      **_json(_ref(AuditPage))},
                              **_errors(400, 401, 403)},
            },
        },
    }


def _paths() -> dict[str, Any]:
    """Every documented path and operation."""
    return {
        "/api/v1/people": {
            "get": {
                "operationId": "listPeople",
                "summary": "Search and page through the people register",
                "parameters": [
                    _query("q", {"type": "string", "maxLength": 200},
                           "Words matched against names, external id and e-mail"),
                    _query("group", {"type": "string", "maxLength": 40}, "Only this class or group"),
                    _query("status", {"type": "string", "enum": ["active", "left"]}, "Only this status"),
                    _PAGE,
                    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200},
                           "Items per page"),
                ],
                "responses": {"200": {"description": "A page of people", **_json(_ref(PersonPage))},
                              **_errors(400, 401, 403)},
            },
            "post": {
                "operationId": "createPerson",
                "summary": "Add a pupil or staff member, with guardians for a pupil",
                "requestBody": {"required": True, **_json(_ref(PersonCreate))},
                "responses": {"201": {"description": "Created", **_json(_ref(PersonOut))},
                              **_errors(400, 401, 403, 409, 413, 415, 422)},
            },
        },
        "/api/v1/people/{person_id}": {
            "parameters": [_PERSON_ID],
            "get": {
                "operationId": "getPerson",
                "summary": "One person with their guardians",
                "responses": {"200": {"description": "The person", **_json(_ref(PersonOut))},
                              **_errors(401, 403, 404)},
            },
            "patch": {
                "operationId": "updatePerson",
                "summary": "Change some fields; `guardians`, when given, replaces the list",
                "requestBody": {"required": True, **_json(_ref(PersonPatch))},
                "responses": {"200": {"description": "The changed person", **_json(_ref(PersonOut))},
                              **_errors(400, 401, 403, 404, 409, 413, 415, 422)},
            },
        },
        "/api/v1/people/{person_id}/consents": {
            "parameters": [_PERSON_ID],
            "get": {
                "operationId": "getConsents",
                "summary": "Effective consent per channel now, and every record",
                "responses": {"200": {"description": "Consents", **_json(_ref(ConsentsOut))},
                              **_errors(401, 403, 404)},
            },
            "post": {
                "operationId": "recordConsent",
                "summary": "Record a decision made on paper, in person or in an import",
                "requestBody": {"required": True, **_json(_ref(ConsentIn))},
                "responses": {"201": {"description": "Recorded", **_json(_ref(ConsentRecordOut))},
                              **_errors(400, 401, 403, 404, 413, 415, 422)},
            },
        },
        "/api/v1/consent-requests": {
            "post": {
                "operationId": "createConsentRequest",
                "summary": "E-mail the right deciders of these people a personal link",
                "requestBody": {"required": True, **_json(_ref(ConsentRequestIn))},
                "responses": {"202": {"description": "Accepted; mails go out in the background",
                                      **_json(_ref(ConsentRequestCreated))},
                              **_errors(400, 401, 403, 413, 415, 422)},
            },
        },
        "/api/v1/consent-requests/{request_id}": {
            "parameters": [{"name": "request_id", "in": "path", "required": True,
                            "schema": {"type": "integer", "minimum": 1}}],
            "get": {
                "operationId": "getConsentRequest",
                "summary": "Progress and each recipient's state",
                "responses": {"200": {"description": "The request",
                                      **_json(_ref(ConsentRequestOut))},
                              **_errors(401, 403, 404)},
            },
        },
        "/api/v1/media": {
            "get": {
                "operationId": "listMedia",
                "summary": "Page through uploaded media, newest first",
                "parameters": [
                    _query("status", {"type": "string",
                                      "enum": ["queued", "analysing", "ready", "failed"]},
                           "Only items with this status"),
                    _query("kind", {"type": "string", "enum": ["photo", "video", "audio"]},
                           "Only items of this kind"),
                    _PAGE,
                    _query("per_page", {"type": "integer", "minimum": 1, "maximum": 200},
                           "Items per page"),
                ],
                "responses": {"200": {"description": "A page of media items", **_json(_ref(MediaPage))},
                              **_errors(400, 401, 403)},
            },
            "post": {
                "operationId": "uploadMedia",
                "summary": "Upload a photo, video or sound recording; analysis follows (status queued)",
                "requestBody": _upload_body(),
                "responses": {
                    "201": {"description": "Stored; `Location` names the new item",
                            **_json(_ref(MediaOut))},
                    "200": {"description": "The same content was uploaded before: that item",
                            **_json(_ref(MediaOut))},
                    **_media_errors(400, 401, 403, 413, 415, 422),
                },
            },
        },
        "/api/v1/media/{media_id}": {
            "parameters": [_MEDIA_ID],
            "get": {
                "operationId": "getMedia",
                "summary": "One media item with the faces and voices found in it",
                "responses": {"200": {"description": "The item", **_json(_ref(MediaOut))},
                              **_errors(401, 403, 404)},
            },
            "delete": {
                "operationId": "deleteMedia",
                "summary": "Remove an item, its appearances and its stored files; refused while "
                           "it is queued or live on a channel",
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404),
                              "409": {"description": "`still_published`: the item is queued or "
                                                     "live; `publications` names each, to be taken "
                                                     "down first",
                                      **_json(_ref(ErrorBody))}},
            },
        },
        **_tagging_paths(),
        **_biometric_paths(),
        **_gate_paths(),
        **_publication_paths(),
        **_audit_paths(),
        **_dpo_file_paths(),
        **_export_paths(),
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This document",
                "security": [],
                "responses": {"200": {"description": "The OpenAPI document",
                                      **_json({"type": "object"})}},
            }
        },
    }


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic `X | None` property as X alone (with its title, description and default)."""
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**branches[0], **rest}


MAX_DATABASE_ID = 2**31 - 1
# Where the school's channels (and, for consent, biometric matching too) are the only values:
# (component schema, property, whether biometric is allowed). Query parameters named `channel`
# take the channels as well.
_CHANNEL_PROPERTIES = (("ConsentIn", "channel", True), ("ConsentRequestIn", "channels", True),
                       ("PublishIn", "channel", False), ("AlbumPublishIn", "channel", False))
_EMAIL_PROPERTIES = (("GuardianIn", "email"), ("PersonCreate", "email"), ("PersonPatch", "email"))
# Switching matching on needs the DPIA it rests on, not blank (the code's dpia_required).
_DPIA_RULE = {
    "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
    "then": {"properties": {"dpia_reference": {"type": "string", "pattern": r"\S"}},
             "required": ["dpia_reference"]},
}


def _enum_of(schema: dict[str, Any], values: list[str]) -> None:
    """Restrict a string property (or the items of a list, or the string of `X | None`) to values."""
    target = schema.get("items", schema)
    for branch in target.get("anyOf", [target]):
        if branch.get("type") == "string":
            branch["enum"] = values


def _email(schema: dict[str, Any]) -> None:
    """Mark a string property (or the string of `X | None`) as an e-mail address."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["format"] = "email"


def _school_specific(schemas: dict[str, Any], paths: dict[str, Any], channels: tuple[str, ...]) -> None:
    """What the models cannot say alone: the configured channels, e-mail formats, the DPIA rule."""
    for model, prop, biometric in _CHANNEL_PROPERTIES:
        if prop in schemas.get(model, {}).get("properties", {}):
            _enum_of(schemas[model]["properties"][prop], [*channels, *([BIOMETRIC] if biometric else [])])
    for model, prop in _EMAIL_PROPERTIES:
        if prop in schemas.get(model, {}).get("properties", {}):
            _email(schemas[model]["properties"][prop])
    if "FaceMatchingIn" in schemas:
        schemas["FaceMatchingIn"].update(_DPIA_RULE)
    for item in paths.values():
        for parameter in _parameters(item):
            if parameter["name"] == "channel":
                parameter["schema"] = {"type": "string", "enum": list(channels)}


def _parameters(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Every parameter of a path item: its own and its operations'."""
    found = list(item.get("parameters", []))
    for operation in item.values():
        if isinstance(operation, dict):
            found += operation.get("parameters", [])
    return found


def _no_null_defaults(schemas: dict[str, Any]) -> None:
    """A field that may be left out but not sent as null has no default of null (it would not
    validate against its own schema)."""
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            allows_null = prop.get("type") == "null" or {"type": "null"} in prop.get("anyOf", [])
            if "default" in prop and prop["default"] is None and not allows_null:
                del prop["default"]


def _bounded_ids(paths: dict[str, Any]) -> None:
    """Ids in paths and queries are database integers: at most 2**31 - 1 (larger: 404 or 400)."""
    for item in paths.values():
        for parameter in _parameters(item):
            schema = parameter["schema"]
            if parameter["name"].endswith("_id") and schema.get("type") == "integer":
                schema.setdefault("maximum", MAX_DATABASE_ID)


@cache
def openapi_document(channels: tuple[str, ...] = DEFAULT_CHANNELS) -> dict[str, Any]:
    """The whole OpenAPI document for a school with these channels; built once per set."""
    _, schemas = models_json_schema(
        [(m, "validation") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    paths = _paths()
    _school_specific(schemas.get("$defs", {}), paths, channels)
    _bounded_ids(paths)
    _no_null_defaults(schemas.get("$defs", {}))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Consent registry API",
            "version": "1",
            "description": "Publication consents for school media. Errors are always "
            '{"error": {"code", "message", "fields"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
