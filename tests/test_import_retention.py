"""Uploaded files that were previewed but never applied do not linger."""

from __future__ import annotations

from datetime import timedelta

from consent_registry.audit import AuditEvent
from consent_registry.db import db, utcnow
from consent_registry.people.importing import ImportBatch, discard_stale_batches


def _batch(age: timedelta, status: str = "previewed") -> ImportBatch:
    """A stored upload of some age."""
    batch = ImportBatch(uploaded_by=None, sha256="0" * 64, content=b"Leerlingnummer\n1\n",
                        mapping={}, status=status, created_at=utcnow() - age)
    db.session.add(batch)
    db.session.commit()
    return batch


def test_stale_previews_are_discarded_and_audited(app) -> None:
    """Previews older than a day go; fresh ones and applied ones stay."""
    old, fresh, applied = (_batch(timedelta(days=2)), _batch(timedelta(hours=2)),
                           _batch(timedelta(days=9), status="applied"))
    old_id = old.id
    assert discard_stale_batches(now=utcnow()) == 1
    db.session.commit()
    assert db.session.get(ImportBatch, old_id) is None
    assert db.session.get(ImportBatch, fresh.id) is not None
    assert db.session.get(ImportBatch, applied.id) is not None
    event = db.session.query(AuditEvent).filter_by(action="import:discard").one()
    assert event.subject_id == str(old_id)
