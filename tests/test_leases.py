"""Leases: a dead worker's job is queued again once its lease lapses; a running one never twice."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import time_machine
from fake_face_engine import FakeFaceEngine
from flask import Flask

from consent_registry import create_app, jobs
from consent_registry.audit import SYSTEM, AuditEvent
from consent_registry.db import db, utcnow
from consent_registry.dpo import export as exports
from consent_registry.dpo.models import SubjectExport
from consent_registry.leases import Heartbeat, heartbeat
from consent_registry.media import analysis
from consent_registry.media.faces import Box
from consent_registry.media.models import Media
from consent_registry.media.views import failure_label
from consent_registry.people.schemas import PersonCreate
from consent_registry.people.service import create_person

from api_helpers import api_caller
from conftest import SHARED_DATA, make_app, wait_for

GROUP = SHARED_DATA / "groups" / "g01.jpg"
LEASE = timedelta(seconds=120)  # the default JOB_LEASE_SECONDS


@pytest.fixture
def faces(monkeypatch: pytest.MonkeyPatch) -> FakeFaceEngine:
    """One face in every photo, found at once (the subject here is the lease, not dlib)."""
    engine = FakeFaceEngine([Box(10, 10, 40, 40)])
    monkeypatch.setattr(analysis, "engine", lambda: engine)
    return engine


@pytest.fixture
def queued_photo(app: Flask, tokens: dict[str, str], faces: FakeFaceEngine,
                 monkeypatch: pytest.MonkeyPatch) -> int:
    """An uploaded photo left queued: the upload's own job is not run."""
    with monkeypatch.context() as patch:
        patch.setattr("consent_registry.api.media.start_analysis", lambda media_id: None)
        api = api_caller(app, tokens, "communications")
        response = api("POST", "/media", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(GROUP.read_bytes()), GROUP.name)})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _media(media_id: int) -> Media:
    db.session.expire_all()
    media = db.session.get(Media, media_id)
    assert media is not None
    return media


def _count(action: str) -> int:
    return db.session.query(AuditEvent).filter_by(action=action).count()


class _ByHand(Heartbeat):
    """A heartbeat driven by the test, as the worker's thread would beat every interval."""

    def renew(self) -> bool:
        """Renew once; the test's own transaction ends first (on SQLite it holds the lock)."""
        db.session.commit()
        return super().renew()


def _beat(model: Any, row_id: int, owner: str, still: sa.ColumnElement[bool]) -> Heartbeat:
    """A heartbeat the test renews by hand."""
    return _ByHand(db.engine, model, row_id, owner, still=still, interval=30, lease=LEASE)


def test_a_dead_workers_analysis_is_queued_again_once_its_lease_lapses(
    app: Flask, queued_photo: int
) -> None:
    """Claimed, then never renewed (the worker died): kept while the lease runs, redone after."""
    start = utcnow()
    owner = analysis._claim(queued_photo, start)
    assert owner is not None and analysis._claim(queued_photo, start) is None  # one claim only
    media = _media(queued_photo)
    assert (media.status, media.lease_owner, media.lease_expires_at) == ("analysing", owner,
                                                                        start + LEASE)
    with time_machine.travel(start + LEASE - timedelta(seconds=1), tick=False):
        assert analysis.sweep_analyses() == 0  # the worker may still be busy
    with time_machine.travel(start + LEASE + timedelta(seconds=1), tick=False):
        assert analysis.sweep_analyses() == 1  # queued again, and run (immediate mode)
    media = _media(queued_photo)
    assert media.status == "ready" and len(media.appearances) == 1
    assert media.lease_owner is None and _count("media:analysis_restarted") == 1
    assert not _beat(Media, queued_photo, owner, Media.status == "analysing").renew()


def test_a_renewed_lease_is_never_swept_nor_claimed_twice(app: Flask, queued_photo: int) -> None:
    """While the heartbeat renews, the sweeper leaves the run alone however long it takes."""
    start = utcnow()
    owner = analysis._claim(queued_photo, start)
    assert owner is not None
    beat = _beat(Media, queued_photo, owner, Media.status == "analysing")
    for minutes in range(1, 11):  # ten minutes of work, renewed every minute
        with time_machine.travel(start + timedelta(minutes=minutes), tick=False):
            assert beat.renew()
            assert analysis.sweep_analyses(lost_jobs=False) == 0
            assert analysis._claim(queued_photo, utcnow()) is None
    media = _media(queued_photo)
    assert (media.status, media.lease_owner) == ("analysing", owner)
    assert media.lease_expires_at == start + timedelta(minutes=10) + LEASE
    assert _count("media:analysis_restarted") == 0


def test_a_run_that_lost_its_lease_keeps_nothing(
    app: Flask, queued_photo: int, faces: FakeFaceEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker cut off past its lease while it works, then back while a new run holds the item,
    writes no result; back once more after the new run finished, it removes nothing."""
    old = analysis._claim(queued_photo, utcnow())
    assert old is not None
    monkeypatch.setattr(analysis, "enqueue", lambda job, media_id: None)  # queued, not run yet
    taken_over: list[str] = []
    detect = faces.detect

    def detect_while_cut_off(image: Any) -> Any:
        """Meanwhile the lease lapses, the sweeper hands the item back and a new run claims it."""
        if not taken_over:
            db.session.execute(sa.update(Media).where(Media.id == queued_photo)
                               .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
            db.session.commit()
            assert analysis.sweep_analyses() == 1
            new = analysis._claim(queued_photo, utcnow())
            assert new is not None
            taken_over.append(new)
        return detect(image)

    monkeypatch.setattr(faces, "detect", detect_while_cut_off)
    analysis._analyse_claimed(queued_photo, old)  # the old run finishes after all
    [new] = taken_over
    media = _media(queued_photo)
    assert (media.status, media.lease_owner, media.appearances) == ("analysing", new, [])
    assert _count("media:analysed") == 0 and faces.detected  # it did the work, and dropped it
    analysis._analyse_claimed(queued_photo, new)
    media = _media(queued_photo)
    assert media.status == "ready" and len(media.appearances) == 1
    assert _count("media:analysed") == 1
    analysis._analyse_claimed(queued_photo, old)  # cut off again, and back after the new run
    media = _media(queued_photo)
    assert media.status == "ready" and len(media.appearances) == 1  # the new run's result stays
    assert _count("media:analysed") == 1


def test_the_heartbeat_thread_renews_the_lease_in_its_own_transactions(
    app: Flask, queued_photo: int
) -> None:
    """heartbeat() renews every JOB_HEARTBEAT_SECONDS while the job works, and stops after."""
    app.config.update(JOB_LEASE_SECONDS=120, JOB_HEARTBEAT_SECONDS=0.05)
    owner = analysis._claim(queued_photo, utcnow() - timedelta(minutes=1))  # claimed a while ago
    assert owner is not None
    claimed_until = _media(queued_photo).lease_expires_at
    db.session.commit()  # the test holds no transaction (on SQLite it would hold the lock)
    with heartbeat(Media, queued_photo, owner, still=Media.status == "analysing") as beat:
        wait_for(lambda: beat.beats >= 2, timeout=30)
    beats = beat.beats
    assert not beat.lost.is_set() and beats >= 2
    renewed_until = _media(queued_photo).lease_expires_at
    assert renewed_until is not None and claimed_until is not None
    assert renewed_until > claimed_until
    assert beat.beats == beats  # stopped with the block


def test_a_dead_workers_export_is_built_again_once_its_lease_lapses(app: Flask) -> None:
    """Subject-access exports use the same lease: building with a lapsed lease -> queued -> built."""
    person = create_person(PersonCreate.model_validate({
        "external_id": "L1", "given_name": "Lena", "family_name": "Jansen",
        "birth_date": "2012-03-04", "role": "pupil"}), actor=SYSTEM)
    db.session.commit()
    export = exports.request_export(person, user_id=None, actor=SYSTEM)
    db.session.commit()
    export_id, start = export.id, utcnow()
    owner = exports._claim(export_id)
    assert owner is not None and exports._claim(export_id) is None
    beat = _beat(SubjectExport, export_id, owner, SubjectExport.status == "building")
    with time_machine.travel(start + LEASE - timedelta(seconds=1), tick=False):
        assert beat.renew()
    with time_machine.travel(start + LEASE + timedelta(seconds=1), tick=False):
        assert exports.sweep_exports() == 0  # renewed: still building
    with time_machine.travel(start + 2 * LEASE, tick=False):
        assert exports.sweep_exports() == 1
    db.session.expire_all()
    export = db.session.get(SubjectExport, export_id)
    assert export is not None and export.status == "ready" and export.storage_key
    assert _count("person:export_restarted") == 1 and _count("person:export_built") == 1
    assert not beat.renew()


def test_a_heartbeat_slower_than_half_the_lease_is_refused_at_start(tmp_path: Path) -> None:
    """A lease that could lapse between two beats of a live worker would start jobs twice."""
    environ = {"CONSENT_REGISTRY_ENV": "test", "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path)}
    with pytest.raises(RuntimeError, match="JOB_HEARTBEAT_SECONDS must be above 0 and at most half"):
        create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/t.db", "JOB_LEASE_SECONDS": 60,
                    "JOB_HEARTBEAT_SECONDS": 31}, environ=environ)


# A real worker process, killed -------------------------------------------------------------------

REDIS_TEST_URL = "redis://127.0.0.1:6379/13"  # never database 0; the queue name is this test's own
ROOT = Path(__file__).resolve().parents[1]


def _flask_worker(environ: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`flask worker` on the analysis queue, running tests/lease_worker_app.py."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", str(ROOT / "tests" / "lease_worker_app.py"),
         "worker", "--queues", "analysis", "--workers", "1", "--no-periodic"],
        cwd=ROOT, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_a_redis_worker_killed_mid_analysis_is_replaced_after_its_lease(
    app: Flask, database_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    """JOBS=redis: a worker claims an analysis and renews its lease; `kill -9` stops the renewals,
    the sweeper queues the item again once the lease lapsed (not before), and a second worker
    finishes it. Times are short settings; the test waits on states, never on seconds."""
    name = f"crtest_lease_{uuid.uuid4().hex}"
    settings: dict[str, Any] = {
        "JOBS": "redis", "REDIS_URL": REDIS_TEST_URL, "JOBS_NAME": name,
        "JOB_LEASE_SECONDS": 6, "JOB_HEARTBEAT_SECONDS": 1,
        "DATABASE_URL": database_url, "UPLOAD_DIR": str(tmp_path / "uploads")}
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("CONSENT_REGISTRY_")},
               "CONSENT_REGISTRY_ENV": "test",
               **{f"CONSENT_REGISTRY_{key}": str(value) for key, value in settings.items()}}
    web = make_app(database_url, tmp_path / "web", **settings)
    client = redis.Redis.from_url(REDIS_TEST_URL)
    held = tmp_path / "held"
    first = second = None
    try:
        api = api_caller(web, tokens, "communications")
        response = api("POST", "/media", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(GROUP.read_bytes()), GROUP.name)})
        assert response.status_code == 201, response.get_json()
        media_id = response.get_json()["id"]
        assert jobs.get_huey(web, "analysis").pending_count() == 1

        first = _flask_worker({**environ, "LEASE_TEST_HOLD": str(held),
                               "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "a")},
                              tmp_path / "first.log")
        wait_for(held.exists, timeout=120)  # claimed, and busy on the photo
        media = _media(media_id)
        owner, claimed_until = media.lease_owner, _moment(media.lease_expires_at)
        assert media.status == "analysing" and owner
        db.session.commit()
        # Its heartbeat renews the lease while it works, so the sweeper leaves it alone.
        wait_for(lambda: _lease_until(media_id) > claimed_until, timeout=60)
        with web.app_context():
            assert analysis.sweep_analyses(lost_jobs=False) == 0
        assert _media(media_id).lease_owner == owner
        db.session.commit()

        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert _media(media_id).status == "analysing"  # left claimed: Huey delivers at most once
        db.session.commit()
        with web.app_context():  # the sweeper's minute, as often as the test likes
            wait_for(lambda: analysis.sweep_analyses(lost_jobs=False) == 1, timeout=120, every=0.5)
        assert _media(media_id).status == "queued"
        db.session.commit()

        second = _flask_worker({**environ, "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "b")},
                               tmp_path / "second.log")
        wait_for(lambda: _settled(media_id) == "ready", timeout=120, every=0.2)
        media = _media(media_id)
        assert len(media.appearances) == 1 and media.lease_owner is None
        assert _count("media:analysis_restarted") == 1 and _count("media:analysed") == 1
        assert jobs.get_huey(web, "analysis").pending_count() == 0
    finally:
        for process in (first, second):
            if process is not None:
                _stop(process)
        keys = list(client.scan_iter(match=f"huey.*{name}*"))
        if keys:
            client.delete(*keys)
        client.close()


def _settled(media_id: int) -> str:
    """The item's status, read without keeping a transaction open (on SQLite it holds the lock)."""
    status = _media(media_id).status
    db.session.commit()
    return status


def _lease_until(media_id: int) -> datetime:
    """When the item's lease ends, read without keeping a transaction open."""
    until = _moment(_media(media_id).lease_expires_at)
    db.session.commit()
    return until


def _moment(value: datetime | None) -> datetime:
    assert value is not None
    return value


def test_a_publish_run_that_lost_its_lease_changes_nothing(app: Flask, graph: Any) -> None:
    """Publishing uses the same lease: claimed once; once swept and claimed by a new run, the old
    run can neither mark the publication live nor fail it."""
    from test_publishing import tagged_photo

    from consent_registry.publishing import jobs as publishing_jobs
    from consent_registry.publishing.models import Publication
    from consent_registry.publishing.service import request_publication

    media, _person = tagged_photo(app)
    publication = request_publication(media, channel="facebook", caption=None, attested=True,
                                      actor=SYSTEM)  # queued; its job is not run here
    db.session.commit()
    publication_id, start = publication.id, utcnow()
    claimed = publishing_jobs._claim(publication_id)
    assert claimed is not None and publishing_jobs._claim(publication_id) is None
    _attempt, old = claimed
    with time_machine.travel(start + LEASE + timedelta(seconds=1), tick=False), \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(publishing_jobs, "enqueue", lambda job, pub_id: None)  # queued, not run yet
        assert publishing_jobs.sweep_publications() == 1
        again = publishing_jobs._claim(publication_id)
    assert again is not None and again[1] != old
    token = publishing_jobs._run_owner.set(old)
    try:
        assert not publishing_jobs._set_if_publishing(publication_id, state="live", post_id="1")
    finally:
        publishing_jobs._run_owner.reset(token)
    db.session.commit()
    db.session.expire_all()
    publication = db.session.get(Publication, publication_id)
    assert publication is not None
    assert (publication.state, publication.lease_owner, publication.post_id) == (
        "publishing", again[1], None)
    assert graph.posts == {}  # nothing was sent by either run


def test_a_run_whose_lease_went_to_another_stops_at_its_next_progress(
    app: Flask, queued_photo: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled run that was swept and re-claimed stops working (LeaseLost) at its next progress
    report instead of spending minutes on an item another run holds, and writes no progress."""
    monkeypatch.setattr(analysis, "PROGRESS_EVERY", 0.0)
    first = analysis._claim(queued_photo, utcnow())
    assert first is not None
    db.session.commit()
    token = analysis._run_owner.set(first)
    try:
        report = analysis._progress_reporter(queued_photo)
        report(40)  # still its own: written
        assert _media(queued_photo).progress == 40
        db.session.commit()
        db.session.execute(sa.update(Media).where(Media.id == queued_photo)
                           .values(lease_owner="a-newer-run"))  # swept and claimed again
        db.session.commit()
        with pytest.raises(analysis.LeaseLost):
            report(80)
    finally:
        analysis._run_owner.reset(token)
    assert _media(queued_photo).progress == 40


def test_an_analysis_whose_worker_keeps_dying_fails_for_a_person_after_three_restarts(
    app: Flask, queued_photo: int
) -> None:
    """A file that kills its worker every time (memory) is not restarted forever: after
    MAX_RESTARTS the item fails, with the reason, and stays blocked."""
    start = utcnow()
    for run in range(analysis.MAX_RESTARTS + 1):
        moment = start + run * (LEASE + timedelta(minutes=1))
        assert analysis._claim(queued_photo, moment) is not None  # a worker takes it, and dies
        db.session.commit()
        with time_machine.travel(moment + LEASE + timedelta(seconds=1), tick=False):
            assert analysis.sweep_analyses(lost_jobs=False) == (
                1 if run < analysis.MAX_RESTARTS else 0)
        if run < analysis.MAX_RESTARTS:  # immediate mode ran it again: put it back as cut off
            db.session.execute(sa.update(Media).where(Media.id == queued_photo).values(
                status="queued", lease_owner=None, lease_expires_at=None))
            db.session.commit()
    media = _media(queued_photo)
    assert media.status == "failed" and media.failure_reason == "worker_lost"
    assert "meermaals gestopt" in failure_label(media.failure_reason)  # the school's Dutch
    assert _count("media:analysis_restarted") == analysis.MAX_RESTARTS
    assert _count("media:analysis_failed") == 1
