"""Tagging on the site: the item page's boxes and panels, its forms, search, and the person page."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_tagging import events, face, make_photo, make_video, pupil

from consent_registry.db import db
from consent_registry.media.models import Appearance, Media

from conftest import csrf_token


@pytest.fixture
def english(logged_in):
    """A factory: a client logged in with a role, whose browser asks for English."""
    def make(role: str) -> FlaskClient:
        client = logged_in(role)
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        return client
    return make


@pytest.fixture
def photo(app: Flask) -> Media:
    """A ready 320 by 240 photo."""
    return make_photo(app)


def page_of(client: FlaskClient, media: Media, query: str = "") -> str:
    """The item's page as HTML."""
    response = client.get(f"/media/{media.id}{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def post(client: FlaskClient, url: str, media: Media, **data: object) -> str:
    """Post a form with the session's CSRF token; follow the redirect; the page it lands on."""
    token = csrf_token(client, f"/media/{media.id}")
    response = client.post(url, data={"csrf_token": token, **data})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    assert response.headers["Location"].startswith(f"/media/{media.id}#")
    return page_of(client, media)


def test_the_photo_has_numbered_boxes_without_inline_styles_or_scripts(english, photo: Media) -> None:
    """An SVG in the photo's own pixels, a rect and a number per face, the drawing script by src."""
    face(photo, (10, 20, 30, 40))
    face(photo, (100, 50, 40, 40))
    html = page_of(english("communications"), photo)
    assert 'viewBox="0 0 320 240"' in html
    assert f'src="/media/{photo.id}/display"' in html
    assert len(re.findall(r"<rect class=\"box state-unresolved\"", html)) == 2
    assert re.search(r'<rect [^>]*x="10" y="20" width="30" height="40"', html)
    assert re.findall(r'<text class="box-number"[^>]*>(\d)</text>', html) == ["1", "2"]
    assert "style=" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert '<script src="/static/tagging.js" defer></script>' in html
    assert 'id="add-face-form"' in html and 'name="x"' in html and 'type="number"' in html


def test_others_see_states_but_no_forms(english, photo: Media) -> None:
    """Staff and the DPO see who is who, but nothing to change."""
    ada = pupil("1", "Ada")
    face(photo, person_id=ada.id, resolution="identified")
    for role in ("staff", "dpo"):
        html = page_of(english(role), photo)
        assert "Ada Jansen" in html and "tagged" in html
        assert f'action="/media/{photo.id}/appearances' not in html
        assert 'id="add-face-form"' not in html and "Tag a person" not in html


def test_search_by_name_or_class_and_tag(english, photo: Media) -> None:
    """The GET search lists matches with their class; "this is X" tags and says so."""
    ada, bram = pupil("1", "Ada", group="1A"), pupil("2", "Bram", group="2B")
    pupil("3", "Cas", family="de Vries", group="1A", status="left")
    appearance = face(photo)
    client = english("communications")
    html = page_of(client, photo, f"?q=ada&appearance={appearance.id}")
    assert "This is Ada Jansen" in html and "This is Bram Jansen" not in html
    html = page_of(client, photo, f"?q=1a&appearance={appearance.id}")
    assert "This is Ada Jansen" in html and "This is Cas de Vries" in html
    assert "has left the school" in html
    assert "This is" not in page_of(client, photo, "?q=zzz&appearance=new").split("Nobody matches")[0]
    html = post(client, f"/media/{photo.id}/appearances/{appearance.id}/tag", photo,
                person_id=bram.id)
    assert "Tagged as Bram Jansen." in html
    db.session.expire_all()
    assert (appearance.person_id, appearance.resolution) == (bram.id, "identified")
    person_page = client.get(f"/people/{bram.id}").get_data(as_text=True)
    assert "Media this person appears in" in person_page and "Sports day" in person_page
    assert f"/media/{photo.id}/appearances/{appearance.id}/crop" not in person_page  # no crop
    assert "Not tagged in any media yet." in client.get(f"/people/{ada.id}").get_data(as_text=True)


def test_suggestion_resolution_and_reset_forms(english, photo: Media) -> None:
    """Confirm and reject a suggestion; blur, not recognisable, reset; nonsense is a message."""
    ada = pupil("1", "Ada")
    first = face(photo, suggested=ada, distance=0.42)
    second = face(photo, (150, 40, 50, 50), suggested=ada, distance=0.55)
    client = english("admin")
    html = page_of(client, photo)
    assert "Suggestion: Ada Jansen" in html and "distance 0.42" in html
    assert "Confirm: this is Ada Jansen" in html
    base = f"/media/{photo.id}/appearances"
    post(client, f"{base}/{first.id}/suggestion", photo, decision="accept")
    post(client, f"{base}/{second.id}/suggestion", photo, decision="reject")
    html = post(client, f"{base}/{second.id}/suggestion", photo, decision="accept")
    assert "There is no suggestion to decide on." in html
    post(client, f"{base}/{second.id}/resolution", photo, resolution="not_recognisable")
    post(client, f"{base}/{first.id}/resolution", photo, resolution="blur")
    html = post(client, f"{base}/{first.id}/resolution", photo, resolution="identified")
    assert "Choose a person" in html
    db.session.expire_all()
    assert (first.resolution, first.person_id) == ("blur", ada.id)
    assert (second.resolution, second.suggested_person_id) == ("not_recognisable", None)
    post(client, f"{base}/{first.id}/resolution", photo, resolution="unresolved")
    db.session.expire_all()
    assert (first.resolution, first.person_id, first.resolved_by) == ("unresolved", None, None)
    assert len(events("appearance:resolution")) == 3


def test_add_a_face_by_numbers_and_a_person_without_a_box(english, photo: Media) -> None:
    """The add form takes typed numbers; a bad box is a message; a person is added by search."""
    ada = pupil("1", "Ada")
    client = english("communications")
    html = post(client, f"/media/{photo.id}/appearances", photo, x=300, y=0, w=40, h=40)
    assert "must lie within the picture" in html
    html = post(client, f"/media/{photo.id}/appearances", photo, x="a", y=0, w=40, h=40)
    assert "Fill in all four numbers" in html
    html = post(client, f"/media/{photo.id}/appearances", photo)
    assert "Without a box, say who is present." in html
    html = post(client, f"/media/{photo.id}/appearances", photo, x=10, y=10, w=50, h=60)
    assert "The face has been added." in html and "added by hand" in html
    html = page_of(client, photo, "?q=Ada&appearance=new")
    assert "This is Ada Jansen" in html
    html = post(client, f"/media/{photo.id}/appearances", photo, person_id=ada.id)
    assert "The person has been added." in html
    assert "Present, but not found by the analysis." in html
    db.session.expire_all()
    drawn, present = photo.appearances
    assert drawn.box == {"x": 10, "y": 10, "w": 50, "h": 60} and drawn.crop_key
    assert present.box is None and present.person_id == ada.id
    crop = client.get(f"/media/{photo.id}/appearances/{drawn.id}/crop")
    assert crop.status_code == 200 and crop.mimetype == "image/jpeg"
    assert client.get(f"/media/{photo.id}/appearances/{present.id}/crop").status_code == 404
    assert len(events("appearance:added")) == 2


def test_forms_need_csrf_and_the_right_role(english, users, photo: Media) -> None:
    """A post without its token is refused and changes nothing; staff are refused outright."""
    appearance = face(photo)
    client = english("communications")
    response = client.post(f"/media/{photo.id}/appearances/{appearance.id}/resolution",
                           data={"resolution": "blur"})
    assert response.status_code == 400
    staff = english("staff")
    token = csrf_token(staff, f"/media/{photo.id}")
    response = staff.post(f"/media/{photo.id}/appearances/{appearance.id}/resolution",
                          data={"resolution": "blur", "csrf_token": token})
    assert response.status_code == 403
    db.session.expire_all()
    assert appearance.resolution == "unresolved" and events("appearance:resolution") == []


def test_odd_ids_and_values_are_never_a_500(app: Flask, english, photo: Media) -> None:
    """Other items' appearances, huge ids and nonsense person ids end in a 404 or a message."""
    other = make_photo(app, seed=5)
    elsewhere = face(other)
    client = english("admin")
    token = csrf_token(client, f"/media/{photo.id}")
    for url in (f"/media/{photo.id}/appearances/{elsewhere.id}/tag",
                f"/media/{photo.id}/appearances/{2**40}/resolution",
                f"/media/{2**40}/appearances/1/suggestion"):
        assert client.post(url, data={"csrf_token": token}).status_code == 404, url
    assert client.get(f"/media/{photo.id}/appearances/{elsewhere.id}/crop").status_code == 404
    appearance = face(photo)
    for person_id in ("", "x", "99999999999999", "999999", "-1"):
        html = post(client, f"/media/{photo.id}/appearances/{appearance.id}/tag", photo,
                    person_id=person_id)
        assert "Choose a person from the search results." in html
    assert page_of(client, photo, "?q=%00&appearance=zzz")


def test_an_item_being_analysed_cannot_be_tagged_yet(app: Flask, english) -> None:
    """No forms while analysing; a forged post is refused with a message."""
    media = make_photo(app, status="analysing")
    appearance = face(media)
    client = english("communications")
    html = page_of(client, media)
    assert "Tagging starts when the analysis has finished." in html
    assert 'id="add-face-form"' not in html and "Reset" not in html
    html = post(client, f"/media/{media.id}/appearances/{appearance.id}/resolution", media,
                resolution="blur")
    assert "not ready for tagging" in html


def test_a_video_lists_its_tracks_with_times(app: Flask, english) -> None:
    """Tracks show their times and can be tagged; no box drawing on a video."""
    video = make_video()
    track = Appearance(media_id=video.id, kind="face", box_x=10, box_y=10, box_w=40, box_h=40,
                       segments=[[0.0, 1.5], [3.2, 4.0]], resolution="unresolved")
    db.session.add(track)
    db.session.commit()
    html = page_of(english("communications"), video)
    assert "0.0\u20131.5 s, 3.2\u20134.0 s" in html
    assert "Tag a person" in html and 'id="add-face-form"' not in html
    assert "Add a person who is present but was not found" in html
