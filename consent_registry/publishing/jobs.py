"""Publishing as a background job: claim, check the gate again, render, send, record.

`publish_job` claims a queued publication (queued -> publishing, one more attempt) and commits;
re-evaluates the gate and fails closed; gets the cleared rendition with no transaction open; and
sends it through its connector. Facebook answers are written as soon as they arrive (`remote`),
so a retried publish never uploads or posts twice. Transient Graph errors are retried later with
backoff; a refused token or missing permission stops with a message the admin sees. An export is
live as soon as its rendition is stored: staff download it from the publication's page.

An album (a publication with `items`) is the same run for 2 to 10 photos: the gate is checked
again for each, each is rendered (no transaction open), and all go up unpublished before one
`/feed` post attaches them; `remote` records each uploaded photo, so a retry uploads none twice.

The database, not the queue, is the record of work to do: `sweep_publications` re-queues what a
lost job or a dead worker left behind. A run holds a lease on its publication (leases.py) and renews
it while it renders and sends; a dead worker's lease lapses within minutes and the publication is
queued again, while a running one is never started twice and a run that lost its lease changes
nothing any more. Jobs queued by changes inside a caller's transaction wait
for its commit (`enqueue_after_commit`), as a queue must only see committed work.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from ..audit import SYSTEM, AuditEvent, record
from ..db import db, utcnow
from ..jobs import Job, crontab, enqueue, enqueue_in, periodic_task, task
from ..leases import claim, heartbeat, held_by, lapsed, release_lapsed
from ..media.models import Media
from ..storage import get_storage
from .models import Publication, PublicationMedia

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
FIRST_RETRY = 30.0  # seconds; doubled per attempt
MAX_RETRY = 3600.0
LOST_JOB = timedelta(minutes=10)  # grace after a retry was due before the sweeper queues it again
STOPPING = ("auth", "permission")  # error kinds that stop publishing until an admin acts

# The lease owner of the publish run in this job's context (each job runs in a context of its own):
# every write of the run's outcome requires it, so a run that lost its lease changes nothing.
_run_owner: ContextVar[str | None] = ContextVar("publish_run_owner", default=None)

_PENDING = "publishing_jobs_pending"
_READY = "publishing_jobs_ready"


# --- queueing after the caller's commit ------------------------------------------------------------

def enqueue_after_commit(job: Job[..., Any], *args: Any) -> None:
    """Queue a job once the current transaction commits; forgotten if it rolls back.

    `jobs.enqueue` in immediate mode commits the caller's transaction at once, which a helper
    called in the middle of someone else's transaction (e.g. record_decision) must never do.
    """
    db.session().info.setdefault(_PENDING, []).append((job, args))


@event.listens_for(Session, "after_commit")
def _commit_done(session: Session) -> None:
    """Move the jobs of a committed transaction to the list run when it has ended."""
    if pending := session.info.pop(_PENDING, None):
        session.info.setdefault(_READY, []).extend(pending)


@event.listens_for(Session, "after_soft_rollback")
def _rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    """A rolled-back transaction queues nothing."""
    session.info.pop(_PENDING, None)


@event.listens_for(Session, "after_transaction_end")
def _transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    """Queue the committed jobs once the session is out of its transaction (it may run SQL again)."""
    if transaction.parent is not None or transaction.nested:
        return
    ready = session.info.pop(_READY, None)
    for job, args in ready or ():
        try:
            enqueue(job, *args)
        except Exception:  # the sweepers find the work in the database later
            log.exception("could not queue %s%r", job.name, args)


# --- small rules --------------------------------------------------------------------------------------

def backoff(attempt: int, retry_after: float | None = None) -> float:
    """Seconds before retry number `attempt` (from 1): 30 s doubling, at least retry_after, at most 1 h."""
    delay = FIRST_RETRY * 2 ** max(attempt - 1, 0)
    return min(max(delay, retry_after or 0.0), MAX_RETRY)


def error_text(kind: str, exc: Exception) -> str:
    """A stored error: its kind, the Graph code if any, and the message, within the column."""
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return (f"{kind} ({code}): {message}" if code is not None else f"{kind}: {message}")[:500]


def error_kind(exc: Exception) -> str:
    """transient, rate_limited, auth, permission, rejected or error, from a Graph error's class."""
    from .facebook import (
        AuthGraphError,
        PermissionGraphError,
        RateLimitedGraphError,
        RejectedGraphError,
        TransientGraphError,
    )

    for kind, cls in (("rate_limited", RateLimitedGraphError), ("transient", TransientGraphError),
                      ("auth", AuthGraphError), ("permission", PermissionGraphError),
                      ("rejected", RejectedGraphError)):
        if isinstance(exc, cls):
            return kind
    return "error"


def stops_publishing(last_error: str | None) -> bool:
    """Whether a stored error is one only an admin can fix (token or permission)."""
    return bool(last_error) and last_error.split(" ", 1)[0].rstrip(":") in STOPPING


def graph_client() -> Any:
    """The Graph API client for this app's Facebook Page."""
    from .facebook import GraphClient, GraphSettings

    return GraphClient(GraphSettings.from_config(current_app.config))


def last_event_at(publication_id: int) -> datetime | None:
    """When the newest audit event about a publication was written."""
    return db.session.execute(
        sa.select(sa.func.max(AuditEvent.occurred_at)).where(
            AuditEvent.subject_type == "publication", AuditEvent.subject_id == str(publication_id))
    ).scalar_one_or_none()


# --- the publish job -----------------------------------------------------------------------------------

def _claim(publication_id: int) -> tuple[int, str] | None:
    """Take a queued publication for this run with a lease (audited); its attempt number and lease
    owner, or None if not ours."""
    owner = claim(Publication, publication_id, where=Publication.state == "queued",
                  values={"state": "publishing", "attempts": Publication.attempts + 1})
    if owner is None:
        db.session.commit()
        return None
    attempt = db.session.execute(sa.select(Publication.attempts)
                                 .where(Publication.id == publication_id)).scalar_one()
    record("publication:publishing", actor=SYSTEM, subject_type="publication",
           subject_id=publication_id, details={"attempt": attempt})
    db.session.commit()
    return attempt, owner


def _set_if_publishing(publication_id: int, **values: Any) -> bool:
    """Change a publication still being published by this run (no commit); False if cancelled, or
    if this run lost its lease to another."""
    owner = _run_owner.get()
    held = held_by(Publication, owner) if owner is not None else sa.true()
    return bool(db.session.execute(
        sa.update(Publication)
        .where(Publication.id == publication_id, Publication.state == "publishing", held)
        .values(**values)).rowcount)


def _fail(publication_id: int, action: str, error: str, details: dict[str, Any]) -> None:
    """Mark the run failed (unless it was cancelled meanwhile), audit, commit."""
    if _set_if_publishing(publication_id, state="failed", last_error=error[:500]):
        record(action, actor=SYSTEM, subject_type="publication", subject_id=publication_id,
               details=details)
    db.session.commit()


def _retry_later(publication_id: int, attempt: int, kind: str, exc: Exception) -> None:
    """Put the publication back in the queue with backoff, or fail it after the last attempt."""
    db.session.rollback()
    error = error_text(kind, exc)
    code = getattr(exc, "code", None)
    if attempt >= MAX_ATTEMPTS:
        _fail(publication_id, "publication:failed", error,
              {"attempt": attempt, "code": code, "kind": kind, "gave_up": True})
        return
    delay = backoff(attempt, getattr(exc, "retry_after", None))
    if _set_if_publishing(publication_id, state="queued", last_error=error):
        record("publication:retry", actor=SYSTEM, subject_type="publication",
               subject_id=publication_id,
               details={"attempt": attempt, "code": code, "kind": kind, "retry_in": delay})
        db.session.commit()
        queue_publication(publication_id, delay=delay)
    else:
        db.session.commit()


def _save_remote(publication_id: int) -> Callable[[dict[str, Any]], None]:
    """The `save` callback of the Graph client: each remote answer in its own short commit."""
    def save(remote: dict[str, Any]) -> None:
        db.session.execute(sa.update(Publication).where(Publication.id == publication_id)
                           .values(remote=dict(remote)))
        db.session.commit()
    return save


def _went_live(publication_id: int, post_id: str | None) -> None:
    """Record the post (live), or, when a takedown came meanwhile, have the new post deleted."""
    now = utcnow()
    if _set_if_publishing(publication_id, state="live", post_id=post_id, published_at=now,
                          last_error=None):
        record("publication:live", actor=SYSTEM, subject_type="publication",
               subject_id=publication_id, details={"post_id": post_id})
        db.session.commit()
        return
    # Cancelled while sending: whatever went up must come down again.
    publication = db.session.get(Publication, publication_id)
    if publication is not None and post_id:
        publication.post_id = post_id
        if publication.state == "taken_down":
            publication.state, publication.taken_down_at = "takedown_pending", None
        record("publication:takedown_requested", actor=SYSTEM, subject_type="publication",
               subject_id=publication_id,
               details={"reason": publication.takedown_reason, "posted_while_cancelled": True,
                        "post_id": post_id})
        if publication.connector == "facebook":
            from .takedown import takedown_job

            enqueue_after_commit(takedown_job, publication_id)
    db.session.commit()


def _send_to_facebook(publication_id: int, *, kind: str, key: str, caption: str | None,
                      title: str | None, remote: dict[str, Any]) -> str:
    """Publish the rendition on the Page (no transaction open); the post's (or video's) id."""
    client = graph_client()
    save = _save_remote(publication_id)
    storage = get_storage()
    if kind == "photo":
        # One photo as an album of one: uploaded unpublished, then posted; each step is saved, so a
        # retry after a lost answer never posts twice.
        return client.publish_album([storage.get(key)], caption=caption, remote=remote, save=save)
    with tempfile.TemporaryDirectory(prefix="publish-") as folder:
        path = Path(folder) / "video.mp4"
        with storage.open(key) as source, path.open("wb") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)
        return client.publish_video(str(path), title=title, description=caption, remote=remote,
                                    save=save)


def queue_publication(publication_id: int, *, delay: float | None = None) -> None:
    """Queue the run of a publication: a video's on the analysis queue, anything else's on urgent.

    A video's rendition is re-encoded with its blur (minutes of CPU); on the urgent queue two of
    them would hold up takedowns and consent mail, which must never wait behind heavy work.
    """
    kind = db.session.execute(sa.select(Media.kind).join(
        Publication, Publication.media_id == Media.id).where(Publication.id == publication_id)
    ).scalar_one_or_none()
    job = publish_video_job if kind == "video" else publish_job
    if delay is None:
        enqueue(job, publication_id)
    else:
        enqueue_in(delay, job, publication_id)


@task()
def publish_job(publication_id: int) -> None:
    """Publish one queued publication (a photo or an album); harmless to run twice."""
    _publish(publication_id)


@task(queue="analysis")
def publish_video_job(publication_id: int) -> None:
    """Publish one queued video publication, beside analysis; harmless to run twice."""
    _publish(publication_id)


def _publish(publication_id: int) -> None:
    """Claim a queued publication and run it under its lease."""
    claimed = _claim(publication_id)
    if claimed is None:
        return
    attempt, owner = claimed
    token = _run_owner.set(owner)
    try:
        with heartbeat(Publication, publication_id, owner,
                       still=Publication.state == "publishing"):
            _publish_claimed(publication_id, attempt)
    finally:
        _run_owner.reset(token)


def _publish_claimed(publication_id: int, attempt: int) -> None:
    """The run of a publication once claimed: gate, render, send, record."""
    from .facebook import AuthGraphError, GraphError, PermissionGraphError, TransientGraphError
    from .gate_service import gate_for
    from .renditions import publishable_rendition
    from .service import blocker_reasons

    publication = db.session.get(Publication, publication_id)
    assert publication is not None
    items = [(item.id, item.media_id) for item in publication.items]  # an album's photos, in order
    media_ids = [media_id for _item, media_id in items] if items else [publication.media_id]
    medias = [db.session.get(Media, media_id) if media_id else None for media_id in media_ids]
    if any(media is None for media in medias):
        _fail(publication_id, "publication:failed", "media_deleted: the item was deleted",
              {"attempt": attempt, "kind": "media_deleted"})
        return
    reasons: set[str] = set()
    for media in medias:
        decision = gate_for(media, publication.channel, attested=publication.attested)
        if not decision.allowed:
            reasons.update(blocker_reasons(decision))
    if reasons:
        _fail(publication_id, "publication:blocked_at_publish",
              "blocked: " + ", ".join(sorted(reasons)),
              {"reasons": sorted(reasons), "attempt": attempt})
        return
    connector, caption, remote = publication.connector, publication.caption, dict(publication.remote or {})
    kind, title = medias[0].kind, medias[0].title
    db.session.commit()  # nothing held while rendering and sending
    try:
        renditions = [publishable_rendition(media) for media in medias]
        db.session.commit()
        if not _set_if_publishing(publication_id, rendition_key=renditions[0].key,
                                  rendition_sha256=renditions[0].sha256):
            db.session.commit()
            return  # cancelled while rendering: nothing was sent
        for (item_id, _media_id), rendition in zip(items, renditions, strict=False):
            db.session.execute(sa.update(PublicationMedia).where(PublicationMedia.id == item_id)
                               .values(rendition_key=rendition.key,
                                       rendition_sha256=rendition.sha256))
        db.session.commit()
        if connector == "export":
            _went_live(publication_id, None)
            return
        if items:
            storage = get_storage()
            post_id = graph_client().publish_album(
                [storage.get(r.key) for r in renditions], caption=caption, remote=remote,
                save=_save_remote(publication_id))
        else:
            post_id = _send_to_facebook(publication_id, kind=kind, key=renditions[0].key,
                                        caption=caption, title=title, remote=remote)
    except TransientGraphError as exc:
        if exc.uncertain:
            # Facebook may hold the post already: retrying could post twice, so a person looks.
            db.session.rollback()
            _fail(publication_id, "publication:failed",
                  "uncertain: Facebook did not answer the last step; check the Page before "
                  "publishing again", {"attempt": attempt, "kind": "uncertain", "code": exc.code})
            return
        _retry_later(publication_id, attempt, error_kind(exc), exc)
        return
    except (AuthGraphError, PermissionGraphError) as exc:
        db.session.rollback()
        kind_of = error_kind(exc)
        _fail(publication_id, "publication:failed", error_text(kind_of, exc),
              {"attempt": attempt, "code": exc.code, "kind": kind_of, "stops_publishing": True})
        return
    except GraphError as exc:
        db.session.rollback()
        kind_of = error_kind(exc)
        _fail(publication_id, "publication:failed", error_text(kind_of, exc),
              {"attempt": attempt, "code": exc.code, "kind": kind_of})
        return
    except Exception as exc:  # rendering or storage trouble: retried, never left "publishing"
        current_app.logger.exception("publishing %s failed", publication_id)
        _retry_later(publication_id, attempt, "error", exc)
        return
    _went_live(publication_id, post_id)


# --- the sweeper -----------------------------------------------------------------------------------

def sweep_publications(now: datetime | None = None) -> int:
    """Queue again publishing and takedown work a lost job or dead worker left; returns how many."""
    from .takedown import takedown_job

    moment = now or utcnow()
    to_publish: list[int] = []
    to_take_down: list[int] = []
    rows = db.session.execute(sa.select(
        Publication.id, Publication.state, Publication.connector, Publication.attempts,
        Publication.takedown_attempts,
    ).where(sa.or_(Publication.state.in_(("queued", "takedown_pending")),
                   sa.and_(Publication.state == "publishing", lapsed(Publication, moment))))
        .order_by(Publication.id)).all()
    for pub_id, state, connector, attempts, takedown_attempts in rows:
        if state == "publishing":
            # Re-checked in the UPDATE: a run that renewed its lease meanwhile keeps it.
            if release_lapsed(Publication, pub_id, where=Publication.state == "publishing",
                              values={"state": "queued"}, now=moment):
                record("publication:restarted", actor=SYSTEM, subject_type="publication",
                       subject_id=pub_id, details={"attempt": attempts})
                to_publish.append(pub_id)
            continue
        last = last_event_at(pub_id) or moment
        if state == "queued" and last < moment - timedelta(seconds=backoff(attempts)) - LOST_JOB:
            to_publish.append(pub_id)
        elif (state == "takedown_pending" and connector == "facebook"
              and last < moment - timedelta(seconds=backoff(takedown_attempts)) - LOST_JOB):
            to_take_down.append(pub_id)
    db.session.commit()
    for pub_id in to_publish:
        queue_publication(pub_id)
    for pub_id in to_take_down:
        enqueue(takedown_job, pub_id)
    return len(to_publish) + len(to_take_down)


@periodic_task(crontab(minute="*"))
def sweep_publications_every_minute() -> None:
    """Keep publishing and takedowns going after crashes (lapsed leases) and lost jobs."""
    sweep_publications()


def facebook_stopped_message() -> str | None:
    """The error that stopped Facebook publishing (token or permission), until a later success."""
    rows = db.session.execute(
        sa.select(Publication.state, Publication.last_error)
        .where(Publication.connector == "facebook",
               Publication.state.in_(("live", "failed", "takedown_pending", "taken_down")))
        .order_by(Publication.id.desc()).limit(50)).all()
    for state, last_error in rows:
        if stops_publishing(last_error) and state in ("failed", "takedown_pending"):
            return last_error
        if state == "live" or (state == "taken_down" and last_error is None):
            return None
    return None
