"""Voices in a real browser (Debian's Chromium via Playwright): listen to each voice, tag it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from test_browser_tagging import _log_in, _serious
from test_tagging import pupil

from consent_registry.audit import SYSTEM
from consent_registry.db import db
from consent_registry.media import analysis
from consent_registry.media.ingest import Limits, ingest_stream
from consent_registry.media.models import Appearance
from consent_registry.storage import get_storage

from conftest import StaffUser
from fake_voice_engine import FakeVoiceEngine, voice_vector
from voice_clips import flac_bytes

pytestmark = pytest.mark.one_backend


def test_listen_to_each_voice_and_tag_it(page: Any, live_server: str, app: Flask, tmp_path: Path,
                                         users: dict[str, StaffUser],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Two voices with players; one is tagged as a pupil, the other marked not recognisable."""
    engine = FakeVoiceEngine([(0.5, 2.5, voice_vector(1)), (3.0, 5.5, voice_vector(2))])
    monkeypatch.setattr(analysis, "voice_engine", lambda: engine)
    media = ingest_stream(io.BytesIO(flac_bytes(_tone(6.0), tmp_path)),
                          limits=Limits.from_config(app.config), storage=get_storage(), actor=SYSTEM,
                          uploaded_by=None, title="Debate club").media
    media_id = media.id
    db.session.commit()
    analysis.analyse_media(media_id)
    ada = pupil("1", "Ada")
    first, second = (a.id for a in db.session.get(analysis.Media, media_id).appearances)
    ada_id = ada.id
    db.session.commit()  # release this test's transaction before the browser's requests come in

    _log_in(page, live_server, users["communications"].email)
    page.goto(f"{live_server}/media/{media_id}")
    page.get_by_role("button", name="English").click()
    players = page.locator(".appearance audio")
    assert players.count() == 2
    assert page.locator(f"#appearance-{first}").get_by_role(
        "button", name="Blur when published").count() == 0  # a voice cannot be blurred
    duration = page.evaluate("""async () => {
        const audio = document.querySelector('.appearance audio');
        audio.preload = 'auto'; audio.load();
        await new Promise(r => audio.addEventListener('loadedmetadata', r, {once: true}));
        return audio.duration; }""")
    assert 1.0 <= duration <= 3.0  # the snippet is the voice's own stretch, not the recording
    assert not _serious(page)

    panel = page.locator(f"#appearance-{first}")
    panel.get_by_label("Tag a person: name or class").fill("ada")
    panel.get_by_role("button", name="Search").click()
    page.locator(f"#appearance-{first}").get_by_role("button", name="This is Ada Jansen").click()
    assert page.get_by_role("status").filter(has_text="Tagged as Ada Jansen.").count() == 1
    page.locator(f"#appearance-{second}").get_by_role("button", name="Not recognisable").click()
    page.screenshot(path=str(_artifacts() / "voices-tagged.png"), full_page=True)

    db.session.expire_all()
    tagged = [(a.person_id, a.resolution) for a in (db.session.get(Appearance, first),
                                                   db.session.get(Appearance, second))]
    assert tagged == [(ada_id, "identified"), (None, "not_recognisable")]
    db.session.commit()


def _tone(seconds: float) -> Any:
    """A quiet tone: the fake engine decides where the voices are."""
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _artifacts() -> Path:
    """The folder the browser tests keep their screenshots in."""
    folder = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
