"""The photo shown on the pages: made once, within a pixel budget, never inside a transaction."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from PIL import Image
from test_tagging import jpeg_bytes, make_photo

from consent_registry.db import db
from consent_registry.media import display
from consent_registry.media.analysis import analyse_media
from consent_registry.media.display import DisplayTooLarge, decode_budget, display_rendition
from consent_registry.media.models import Media
from consent_registry.storage import get_storage

from api_helpers import api_caller

WAIT = 30  # seconds a thread waits for the other before the test gives up (never reached when green)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every display rendition made (one entry per decode)."""
    made: list[int] = []
    real = display.display_rendition

    def counting(data: bytes, **kwargs: Any) -> bytes:
        made.append(1)
        return real(data, **kwargs)
    monkeypatch.setattr(display, "display_rendition", counting)
    return made


def _display_key(media_id: int) -> str | None:
    """The stored display key, re-read."""
    db.session.expire_all()
    return db.session.execute(sa.select(Media.display_key).where(Media.id == media_id)).scalar_one()


def test_the_rendition_is_made_once_and_then_served_from_storage(app: Flask, logged_in,
                                                                 renders: list[int]) -> None:
    """The first look makes and stores it; later looks (any user) read the stored copy."""
    media = make_photo(app, size=(320, 240))
    assert _display_key(media.id) is None
    first = logged_in("staff").get(f"/media/{media.id}/display")
    second = logged_in("dpo").get(f"/media/{media.id}/display")
    assert first.status_code == second.status_code == 200
    assert first.data == second.data and renders == [1]
    key = _display_key(media.id)
    assert key and key.startswith("display/") and get_storage().get(key) == first.data


def test_the_analysis_makes_it_so_no_page_has_to(app: Flask, logged_in, renders: list[int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A photo's analysis ends by storing the rendition; the page then renders nothing."""
    monkeypatch.setattr("consent_registry.media.analysis.analyse_photo", lambda *a, **k: [])
    media = make_photo(app, status="queued")
    analyse_media(media.id)
    assert renders == [1] and _display_key(media.id)
    assert logged_in("staff").get(f"/media/{media.id}/display").status_code == 200
    assert renders == [1]


def test_a_lost_rendition_is_made_again(app: Flask, logged_in, renders: list[int]) -> None:
    """Storage lost the file: the page makes a new one rather than failing."""
    media = make_photo(app)
    client = logged_in("staff")
    assert client.get(f"/media/{media.id}/display").status_code == 200
    get_storage().delete(_display_key(media.id))
    assert client.get(f"/media/{media.id}/display").status_code == 200
    assert renders == [1, 1] and get_storage().exists(_display_key(media.id))


def test_deleting_the_item_deletes_its_rendition(app: Flask, logged_in, tokens: dict[str, str]) -> None:
    """Nothing of a deleted photo stays in storage."""
    media = make_photo(app)
    assert logged_in("staff").get(f"/media/{media.id}/display").status_code == 200
    key = _display_key(media.id)
    api = api_caller(app, tokens, "communications")
    assert api("DELETE", f"/media/{media.id}").status_code == 204
    assert not get_storage().exists(key)


def test_a_jpeg_decodes_scaled_down_within_a_small_budget() -> None:
    """A 3200 by 2400 JPEG decodes at half scale (draft): a budget of 2 MP suffices."""
    data = display_rendition(jpeg_bytes((3200, 2400)), max_pixels=2_000_000)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (1600, 1200) and img.format == "JPEG"


def test_a_photo_beyond_the_budget_is_refused_before_decoding(app: Flask, logged_in,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A PNG cannot decode scaled down; beyond the budget the page answers 422, nothing stored."""
    out = io.BytesIO()
    Image.new("RGB", (400, 300), (10, 200, 30)).save(out, format="PNG")
    with pytest.raises(DisplayTooLarge):
        display_rendition(out.getvalue(), max_pixels=100_000)
    monkeypatch.setitem(app.config, "DISPLAY_MAX_DECODE_PIXELS", 320 * 240)
    media = make_photo(app, size=(320, 240))  # shown at full size: exactly the budget
    assert logged_in("staff").get(f"/media/{media.id}/display").status_code == 200
    monkeypatch.setitem(app.config, "DISPLAY_MAX_DECODE_PIXELS", 320 * 240 - 1)
    other = make_photo(app, seed=2, size=(320, 240))
    assert logged_in("staff").get(f"/media/{other.id}/display").status_code == 422
    assert _display_key(other.id) is None


def test_the_budget_fits_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset: a quarter of the memory at 20 bytes a pixel, at most MAX_IMAGE_PIXELS; set: as set."""
    monkeypatch.setattr(display, "machine_memory", lambda: 2 * 1024**3)
    assert decode_budget({"MAX_IMAGE_PIXELS": 100_000_000}) == 2 * 1024**3 // 4 // 20
    monkeypatch.setattr(display, "machine_memory", lambda: 64 * 1024**3)
    assert decode_budget({"MAX_IMAGE_PIXELS": 100_000_000}) == 100_000_000
    monkeypatch.setattr(display, "machine_memory", lambda: None)
    assert decode_budget({"MAX_IMAGE_PIXELS": 100_000_000}) == display.FALLBACK_BUDGET
    assert decode_budget({"MAX_IMAGE_PIXELS": 100_000_000,
                          "DISPLAY_MAX_DECODE_PIXELS": "1234"}) == 1234


@pytest.fixture
def held_decode(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The display's shrinking step blocks until released; records whether a transaction was open."""
    state: dict[str, Any] = {"started": threading.Event(), "release": threading.Event(),
                             "in_transaction": []}
    real = display._shrink

    def held(image: Image.Image, max_side: int) -> Image.Image:
        state["in_transaction"].append(db.session().in_transaction())
        state["started"].set()
        state["release"].wait(WAIT)
        return real(image, max_side)
    monkeypatch.setattr(display, "_shrink", held)
    yield state
    state["release"].set()


def test_a_slow_display_never_blocks_another_users_write(
        app: Flask, logged_in, tokens: dict[str, str], held_decode: dict[str, Any]) -> None:
    """While one request is shrinking a photo, another adds a person: 201, not "database is locked"."""
    path = f"/media/{make_photo(app).id}/display"
    viewer = logged_in("staff")
    answers: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: answers.setdefault("display", viewer.get(path)))
    reader.start()
    try:
        assert held_decode["started"].wait(WAIT), "the display never reached its decode"
        api = api_caller(app, tokens, "staff")
        created = api("POST", "/people", json={
            "external_id": "X1", "given_name": "Noor", "family_name": "Bakker",
            "birth_date": "2014-02-03", "role": "pupil", "guardians": []})
        assert created.status_code == 201, created.get_data(as_text=True)
    finally:
        held_decode["release"].set()
        reader.join(WAIT)
    assert held_decode["in_transaction"] == [False]
    assert answers["display"].status_code == 200


def test_a_face_crop_is_read_from_storage_outside_any_transaction(
        app: Flask, logged_in, monkeypatch: pytest.MonkeyPatch) -> None:
    """Storage may be S3 across a network: the crop route ends its transaction before asking."""
    from test_tagging import face

    media = make_photo(app)
    storage = get_storage()
    crop = face(media, crop_key=storage.put(jpeg_bytes((40, 40)), prefix="crops"))
    seen: list[bool] = []
    real = storage.get

    def get(key: str) -> bytes:
        seen.append(db.session().in_transaction())
        return real(key)
    monkeypatch.setattr(storage, "get", get)
    response = logged_in("staff").get(f"/media/{media.id}/appearances/{crop.id}/crop")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert seen == [False]
