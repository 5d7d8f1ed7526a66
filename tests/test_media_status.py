"""The media list and page follow analysis live: a status endpoint, a script, a no-script refresh."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

import numpy as np
from flask import Flask

from consent_registry.db import db
from consent_registry.media.models import Media
from consent_registry.media.sound import SAMPLE_RATE
from consent_registry.media.voices import SpeechRegion, find_voices
from consent_registry.storage import get_storage

from fake_voice_engine import FakeVoiceEngine, voice_vector

# The assertions below read English; the site defaults to Dutch.
PAGES_IN_ENGLISH = True


def _item(status: str, progress: int = 0, kind: str = "audio") -> Media:
    """A stored media row in some state of its analysis."""
    data = f"{status}-{progress}-{kind}".encode()
    media = Media(kind=kind, status=status, progress=progress, sha256=hashlib.sha256(data).hexdigest(),
                  storage_key=get_storage().put(data, prefix="media"), content_type="audio/mp4",
                  size_bytes=len(data), title=f"A {status} recording")
    db.session.add(media)
    db.session.commit()
    return media


def test_the_status_endpoint_answers_each_items_status_and_progress(app: Flask, logged_in) -> None:
    """JSON per id asked for, with the status in the reader's words; unknown ids left out."""
    busy, done = _item("analysing", 42), _item("ready", 100)
    response = logged_in("staff").get(f"/media/status.json?ids={busy.id},{done.id},999999")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    items = {item["id"]: item for item in response.get_json()["items"]}
    assert items == {
        busy.id: {"id": busy.id, "status": "analysing", "progress": 42,
                  "status_label": "being analysed", "done": False},
        done.id: {"id": done.id, "status": "ready", "progress": 100, "status_label": "ready",
                  "done": True}}


def test_the_status_endpoint_refuses_bad_ids_and_strangers(app: Flask, logged_in, client) -> None:
    """400 naming the parameter for nonsense; no session, no answer."""
    staff = logged_in("staff")
    for query in ("", "ids=", "ids=abc", "ids=1;2", "ids=" + ",".join(["1"] * 101), "ids=²"):
        response = staff.get(f"/media/status.json?{query}")
        assert response.status_code == 400, query
        assert "ids" in response.get_json()["error"]["fields"]
    assert client.get("/media/status.json?ids=1").status_code in (302, 401)


def test_pages_follow_analysis_only_while_it_runs(app: Flask, logged_in) -> None:
    """While an item is analysed: the script and a no-script refresh; once ready: neither."""
    busy = _item("analysing", 10)
    staff = logged_in("staff")
    for path in ("/media/", f"/media/{busy.id}"):
        page = staff.get(path).get_data(as_text=True)
        assert 'src="/static/media_status.js" data-url="/media/status.json"' in page, path
        assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in page, path
        assert f'data-media-status="{busy.id}" data-state="analysing"' in page, path
    assert "data-reload-when-done" in staff.get(f"/media/{busy.id}").get_data(as_text=True)
    busy.status, busy.progress = "ready", 100
    db.session.commit()
    for path in ("/media/", f"/media/{busy.id}"):
        page = staff.get(path).get_data(as_text=True)
        assert "media_status.js" not in page and "http-equiv" not in page, path
    assert staff.get("/static/media_status.js").status_code == 200


class _ChunkByChunkEngine(FakeVoiceEngine):
    """Like Silero: the speech of each chunk comes out before the next chunk is read."""

    def speech(self, chunks: Iterable[np.ndarray]) -> Iterator[SpeechRegion]:
        """The spans that end within the sound heard so far, chunk by chunk."""
        heard, given = 0.0, 0
        for chunk in chunks:
            heard += np.asarray(chunk).size / SAMPLE_RATE
            while given < len(self.spans) and self.spans[given][1] <= heard:
                start, end, vector = self.spans[given]
                self._speaking = vector
                given += 1
                yield SpeechRegion(start, end, np.zeros(int((end - start) * SAMPLE_RATE), np.float32))


def test_voice_analysis_reports_progress_within_a_chunk_as_each_region_is_embedded() -> None:
    """Embedding is the slow part: a chunk full of talk shows progress region by region, never back."""
    alice, bob = voice_vector(1), voice_vector(2)
    engine = _ChunkByChunkEngine([(0.5, 3.0, alice), (4.0, 6.0, bob), (7.0, 9.5, alice)])
    seen: list[float] = []
    find_voices(iter([np.zeros(SAMPLE_RATE * 10, np.float32)] * 2), engine=engine,
                progress=seen.append)
    assert seen == [3.0, 6.0, 9.5, 10.0, 20.0]
