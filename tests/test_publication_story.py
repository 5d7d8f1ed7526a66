"""The publication story of issue 6 in one test: real faces, real SMTP, the fake Graph API.

A pupil of 12 with two guardians and a classmate are in the register. The communications officer
uploads a real group photo (with camera metadata and a GPS position added, as a phone would write
it) through the API; the real face engine finds the two faces. Face 1 is tagged as the pupil;
face 2 as the classmate, then marked `blur`. Publishing on Facebook answers 409: the pupil has no
consent. The gate's button on the media page asks exactly the pupil's guardians, by real e-mail;
guardian A opens the link, sees a preview with the classmate blurred, and grants. Publishing
answers 201 and the fake Graph server holds the post: no metadata in the posted bytes, the
classmate's face unrecognisable, the pupil's still there. Guardian A withdraws through the link in
the confirmation e-mail; the fake server sees the DELETE; the publication is taken down; the audit
chain verifies and tells the whole story.
"""

from __future__ import annotations

import io
import re
from datetime import date
from email.message import EmailMessage
from typing import Any

import numpy as np
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from consent_registry.audit import SYSTEM, AuditEvent, verify
from consent_registry.consent.service import effective_for
from consent_registry.db import db
from consent_registry.media.faces import Box, make_engine
from consent_registry.people.models import Person
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person
from consent_registry.publishing.models import Publication

from conftest import SHARED_DATA, bearer

PHOTO = SHARED_DATA / "groups" / "g01.jpg"  # two counted faces (manifest.json)
ANNA, BERT = "anna@ouders.example.nl", "bert@ouders.example.nl"
CLASSMATE_GUARDIAN = "iris@ouders.example.nl"
LINK = re.compile(r"http://127\.0\.0\.1:5000(/[cmw]/[A-Za-z0-9_.\-]+)")
SAME_FACE = 0.6  # dlib's usual threshold: encodings closer than this are the same person
GPS_IFD = 0x8825


def with_camera_metadata(jpeg: bytes) -> bytes:
    """The same JPEG (pixels untouched) with an EXIF APP1 segment: camera, date and a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0110] = "Phone 12"  # Model
    exif[0x0132] = "2027:05:14 10:30:00"  # DateTime
    exif[0x013B] = "Photographer Name"  # Artist
    exif[GPS_IFD] = {1: "N", 2: (52.0, 5.0, 30.0), 3: "E", 4: (4.0, 53.0, 10.0)}
    payload = b"Exif\x00\x00" + exif.tobytes()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    assert jpeg.startswith(b"\xff\xd8")
    return jpeg[:2] + segment + jpeg[2:]


def assert_no_metadata(data: bytes) -> None:
    """A JPEG without EXIF (so no GPS), XMP or IPTC, by Pillow and by its bytes."""
    assert data.startswith(b"\xff\xd8\xff")
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    exif = image.getexif()
    assert len(exif) == 0 and not exif.get_ifd(GPS_IFD)
    assert "exif" not in image.info and "xmp" not in image.info and "photoshop" not in image.info
    assert b"Exif\x00" not in data and b"http://ns.adobe.com/xap" not in data
    assert b"PhoneMaker" not in data and b"Photographer Name" not in data


def _text(message: EmailMessage) -> str:
    """The plain-text part of a message."""
    return message.get_body(preferencelist=("plain",)).get_content()


def _links(message: EmailMessage) -> list[str]:
    """The site paths linked from a message, in order."""
    return LINK.findall(_text(message))


def _csrf(html: str) -> str:
    """The CSRF token of a rendered form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def _follow_and_post(client: FlaskClient, path: str, data: dict[str, str]) -> Any:
    """Open a link as a browser would, then submit the page's form with its CSRF token."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    return client.post(path, data={**data, "csrf_token": _csrf(page.get_data(as_text=True))})


def _scaled(box: dict[str, int], fx: float, fy: float) -> Box:
    """A stored box (original pixels) in the pixels of a resized copy."""
    return Box(round(box["x"] * fx), round(box["y"] * fy), round(box["w"] * fx), round(box["h"] * fy))


def _found_at(engine: Any, image: Image.Image, box: Box) -> Box | None:
    """The face the engine detects over `box` in the image (IoU over 0.3), if any."""
    found = [f.box for f in engine.detect(image)]
    best = max(found, key=box.iou, default=None)
    return best if best is not None and box.iou(best) > 0.3 else None


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Euclidean distance of two face encodings."""
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def _actions() -> list[str]:
    """Every audit action, oldest first."""
    db.session.expire_all()
    return list(db.session.execute(sa.select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def test_the_publication_story(app: Flask, smtp: Any, graph: Any, tokens: dict[str, str],
                               logged_in: Any) -> None:
    """Upload, faces, tags, 409, consent by e-mail, 201 with a clean post, withdrawal, DELETE."""
    app.config["CONSENT_VALIDITY"] = "indefinite"  # the story must not depend on the school year
    today = date.today()
    born = date(today.year - 12, 3, 1)
    pupil = create_person(PersonCreate.model_validate({
        "external_id": "S12", "given_name": "Noor", "family_name": "Visser",
        "birth_date": born.isoformat(), "role": "pupil", "group": "8B",
        "guardians": [{"name": "Anna Visser", "email": ANNA}, {"name": "Bert Visser", "email": BERT}],
    }), actor=SYSTEM)
    classmate = create_person(PersonCreate.model_validate({
        "external_id": "S13", "given_name": "Sem", "family_name": "de Wit",
        "birth_date": date(today.year - 12, 6, 1).isoformat(), "role": "pupil", "group": "8B",
        "guardians": [{"name": "Iris de Wit", "email": CLASSMATE_GUARDIAN}],
    }), actor=SYSTEM)
    db.session.commit()
    pupil_id, classmate_id = pupil.id, classmate.id
    api = app.test_client()
    auth = bearer(tokens["communications"])

    # Upload a real group photo; the real engine finds the faces (jobs run inline in tests).
    original = with_camera_metadata(PHOTO.read_bytes())
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)  # the upload has a position
    uploaded = api.post("/api/v1/media", headers=auth, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(original), "schoolreis.jpg"),
                              "title": "Schoolreis groep 8"})
    assert uploaded.status_code == 201, uploaded.get_json()
    media_id = uploaded.get_json()["id"]
    media = api.get(f"/api/v1/media/{media_id}", headers=auth).get_json()
    assert media["status"] == "ready", media
    faces = [a for a in media["appearances"] if a["kind"] == "face"]
    assert len(faces) == 2 and all(a["box"] and a["resolution"] == "unresolved" for a in faces)
    face1, face2 = faces

    # Tag face 1 as the pupil; face 2 as the classmate, then blurred (blur keeps who it is).
    for appearance_id, body in ((face1["id"], {"person_id": pupil_id}),
                                (face2["id"], {"person_id": classmate_id}),
                                (face2["id"], {"resolution": "blur"})):
        tagged = api.patch(f"/api/v1/media/{media_id}/appearances/{appearance_id}", headers=auth,
                           json=body)
        assert tagged.status_code == 200, tagged.get_json()
    media = api.get(f"/api/v1/media/{media_id}", headers=auth).get_json()
    states = {a["id"]: (a["person_id"], a["resolution"]) for a in media["appearances"]}
    assert states == {face1["id"]: (pupil_id, "identified"), face2["id"]: (classmate_id, "blur")}

    # Publishing is blocked: the pupil has no consent for facebook (the blurred face needs none).
    publish = {"channel": "facebook", "caption": "Schoolreis groep 8", "attest": True}
    blocked = api.post(f"/api/v1/media/{media_id}/publish", headers=auth, json=publish)
    assert blocked.status_code == 409, blocked.get_json()
    error = blocked.get_json()["error"]
    assert error["code"] == "blocked"
    assert error["blockers"] == [{"appearance_id": face1["id"], "person_id": pupil_id,
                                  "reason": "no_consent"}]
    assert graph.posts == {} and graph.photos == {}

    # The media page's button asks the deciders of the people still missing, by real e-mail.
    officer = logged_in("communications")
    detail = officer.get(f"/media/{media_id}?channel=facebook")
    assert detail.status_code == 200
    html = detail.get_data(as_text=True)
    assert f'action="/media/{media_id}/gate/request"' in html
    asked = officer.post(f"/media/{media_id}/gate/request", data={
        "csrf_token": _csrf(html), "channel": "facebook", "note": "Schoolreis groep 8, mei 2027"})
    assert asked.status_code == 302
    messages = smtp.wait_for_messages(2)
    assert sorted(m["To"] for m in messages) == [ANNA, BERT]  # not the classmate's guardian
    assert all(received.tls and received.login == "registry" for received in smtp.received)
    [anna_mail] = [m for m in messages if m["To"] == ANNA]
    assert list(anna_mail.iter_attachments()) == []  # no image in the e-mail
    answer_path = _links(anna_mail)[0]
    assert answer_path.startswith("/c/")

    # Guardian A opens the link: the page shows the preview, with the classmate blurred.
    anna = app.test_client()
    answer_page = anna.get(answer_path)
    assert answer_page.status_code == 200
    assert answer_page.headers["Referrer-Policy"] == "no-referrer"
    assert f'src="{answer_path}/preview"' in answer_page.get_data(as_text=True)
    preview = anna.get(f"{answer_path}/preview")
    assert preview.status_code == 200 and preview.mimetype == "image/jpeg"
    assert_no_metadata(preview.data)
    engine = make_engine()
    width, height = media["width"], media["height"]
    original_image = Image.open(PHOTO).convert("RGB")
    own, other = (Box(**face1["box"]), Box(**face2["box"]))
    [own_encoding, other_encoding] = engine.encode(original_image, [own, other])
    shown = Image.open(io.BytesIO(preview.data)).convert("RGB")
    fx, fy = shown.width / width, shown.height / height
    assert _found_at(engine, shown, _scaled(face1["box"], fx, fy)) is not None
    blurred = _found_at(engine, shown, _scaled(face2["box"], fx, fy))
    assert blurred is None or _distance(engine.encode(shown, [blurred])[0], other_encoding) > SAME_FACE

    # Guardian A grants facebook by submitting the form.
    granted = anna.post(answer_path, data={"csrf_token": _csrf(answer_page.get_data(as_text=True)),
                                           "choice_facebook": "granted"})
    assert granted.status_code == 200, granted.get_data(as_text=True)
    db.session.expire_all()
    assert effective_for(db.session.get(Person, pupil_id), "facebook").state == "granted"

    # Publishing now answers 201 and the fake Graph server holds the post.
    published = api.post(f"/api/v1/media/{media_id}/publish", headers=auth, json=publish)
    assert published.status_code == 201, published.get_json()
    publication_id = published.get_json()["publication_id"]
    publication = api.get(f"/api/v1/publications/{publication_id}", headers=auth).get_json()
    assert publication["state"] == "live", publication
    post_id = publication["post_id"]
    live = graph.live_posts()
    assert list(live) == [post_id]
    assert live[post_id]["message"] == "Schoolreis groep 8"
    [photo_id] = live[post_id]["photo_ids"]
    posted = graph.photos[photo_id]["bytes"]
    [proof] = [p for p in publication["decision"]["people"] if p["person_id"] == pupil_id]
    assert proof["state"] == "granted" and proof["consent_record_ids"]

    # No metadata in the posted bytes; the blurred face is unrecognisable, the pupil's is not.
    assert_no_metadata(posted)
    image = Image.open(io.BytesIO(posted)).convert("RGB")
    fx, fy = image.width / width, image.height / height
    kept = _found_at(engine, image, _scaled(face1["box"], fx, fy))
    assert kept is not None
    assert _distance(engine.encode(image, [kept])[0], own_encoding) < SAME_FACE
    blurred = _found_at(engine, image, _scaled(face2["box"], fx, fy))
    assert blurred is None or _distance(engine.encode(image, [blurred])[0], other_encoding) > SAME_FACE

    # Guardian A withdraws through the link in the confirmation e-mail: the post is deleted.
    confirmations = [m for m in smtp.wait_for_messages(3)
                     if m["To"] == ANNA and any(p.startswith("/w/") for p in _links(m))]
    assert confirmations, [m["Subject"] for m in smtp.messages]
    withdraw = next(p for p in _links(confirmations[-1]) if p.startswith("/w/"))
    withdrawn = _follow_and_post(app.test_client(), withdraw, {})
    assert withdrawn.status_code == 200, withdrawn.get_data(as_text=True)
    db.session.expire_all()
    assert effective_for(db.session.get(Person, pupil_id), "facebook").state == "withdrawn"
    assert post_id in graph.deleted and photo_id in graph.deleted
    assert ("DELETE", f"/v24.0/{post_id}") in graph.requests
    assert graph.live_posts() == {}
    taken_down = db.session.get(Publication, publication_id)
    assert (taken_down.state, taken_down.takedown_reason) == ("taken_down", "withdrawn")
    assert taken_down.taken_down_at is not None

    # The audit chain holds and tells the story.
    report = verify()
    assert report.ok, report
    actions = _actions()
    for action in ("gate:blocked", "publication:create", "publication:live",
                   "publication:takedown_requested", "publication:taken_down"):
        assert action in actions, action
    order = [actions.index(a) for a in ("gate:blocked", "publication:create", "publication:live",
                                        "publication:takedown_requested", "publication:taken_down")]
    assert order == sorted(order)
