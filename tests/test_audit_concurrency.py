"""Many writers at once never fork the audit chain: the head row serialises appends."""

from __future__ import annotations

import threading

from flask import Flask

from consent_registry.audit import Actor, record, verify
from consent_registry.db import db

WRITERS = 4
EVENTS_EACH = 15


def _write_events(app: Flask, errors: list[BaseException], start: threading.Barrier) -> None:
    """One writer: its own app context and session, committing after every event."""
    try:
        with app.app_context():
            start.wait()
            for i in range(EVENTS_EACH):
                record("test:concurrent", actor=Actor("system"), details={"i": i})
                db.session.commit()
            db.session.remove()
    except BaseException as exc:  # collected and asserted on by the test
        errors.append(exc)


def test_concurrent_writers_keep_one_unbroken_chain(app: Flask) -> None:
    """Writers racing on the same chain all succeed, in some order, and the chain verifies."""
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)
    threads = [threading.Thread(target=_write_events, args=(app, errors, start))
               for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    report = verify()
    assert report.ok, report
    assert report.checked == WRITERS * EVENTS_EACH
