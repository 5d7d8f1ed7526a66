"""Applying a planned CSV import to the register: all rows or none, every change audited."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..audit import SYSTEM, Actor, record
from ..db import UTCDateTime, db, utcnow
from .csv_import import (
    ExistingPupil,
    ImportedPupil,
    ImportPlan,
    parse_pupil_csv,
    plan_import,
)
from .models import Person
from .schemas import GuardianIn, PersonCreate, PersonPatch
from .service import WITH_GUARDIANS, all_guardians, create_person, update_person

MAX_IMPORT_BYTES = 10 * 1024 * 1024


class ImportBatch(db.Model):
    """An uploaded pupil file between its preview and its application; content is wiped after."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    uploaded_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    filename: Mapped[str] = mapped_column(sa.String(255), default="")
    sha256: Mapped[str] = mapped_column(sa.String(64))
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
    mapping: Mapped[dict[str, str]] = mapped_column(sa.JSON, default=dict)
    status: Mapped[str] = mapped_column(sa.String(12), default="previewed")
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    summary: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


STALE_BATCH_AGE = timedelta(days=1)


def discard_stale_batches(*, now: datetime) -> int:
    """Delete uploads that were previewed but never applied; they hold personal data for nothing."""
    stale = db.session.execute(
        sa.select(ImportBatch).where(ImportBatch.status == "previewed",
                                     ImportBatch.created_at < now - STALE_BATCH_AGE)
    ).scalars().all()
    for batch in stale:
        db.session.delete(batch)
        record("import:discard", actor=SYSTEM, subject_type="import", subject_id=batch.id)
    return len(stale)


def existing_pupils() -> dict[str, ExistingPupil]:
    """A snapshot of everyone in the register, by external id, for planning."""
    people = db.session.execute(
        sa.select(Person).options(WITH_GUARDIANS)
    ).scalars().all()
    return {
        p.external_id: ExistingPupil(
            external_id=p.external_id, role=p.role, given_name=p.given_name,
            family_name=p.family_name, birth_date=p.birth_date, email=p.email, group=p.group,
            status=p.status,
            guardians=frozenset((ln.guardian.email, ln.guardian.name, ln.relation)
                                for ln in p.guardian_links),
        )
        for p in people
    }


def plan_for(content: bytes, mapping: dict[str, str] | None = None) -> ImportPlan:
    """Parse a file and compare it with the register."""
    return plan_import(parse_pupil_csv(content, mapping=mapping or None), existing_pupils())


def _people_by_external_id(external_ids: list[str]) -> dict[str, Person]:
    """The people to update, with their guardians, in a few queries."""
    found: dict[str, Person] = {}
    for start in range(0, len(external_ids), 500):  # stay under the databases' parameter limits
        chunk = external_ids[start:start + 500]
        found.update((p.external_id, p) for p in db.session.execute(
            sa.select(Person).where(Person.external_id.in_(chunk)).options(WITH_GUARDIANS)
        ).scalars())
    return found


def _guardians(pupil: ImportedPupil) -> list[GuardianIn]:
    """The pupil's guardians as validated inputs."""
    return [GuardianIn(name=g.name, email=g.email, relation=g.relation) for g in pupil.guardians]


def _person_fields(pupil: ImportedPupil) -> dict[str, Any]:
    """The register fields an imported pupil carries."""
    return {
        "external_id": pupil.external_id, "given_name": pupil.given_name,
        "family_name": pupil.family_name, "birth_date": pupil.birth_date,
        "email": pupil.email, "group": pupil.group,
    }


@dataclass
class ImportReport:
    """What an import did (or, on a dry run, would do)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # One entry per problem; a row with three problems is three entries but one rejected row.
    rejected: list[dict[str, Any]] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def rejected_rows(self) -> int:
        """How many rows were rejected, whatever the number of problems each has."""
        return len({problem["row"] for problem in self.rejected})

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
            "rejected": self.rejected, "rejected_rows": self.rejected_rows, "file_errors": self.file_errors,
            "missing": self.missing, "applied": self.applied,
        }


def report_of(plan: ImportPlan) -> ImportReport:
    """The counts and reasons of a plan."""
    return ImportReport(
        created=len(plan.create), updated=len(plan.update), unchanged=len(plan.unchanged),
        rejected=[{"row": e.row_number, "external_id": e.external_id, "field": e.field,
                   "code": e.code, "message": e.message} for e in plan.rejected],
        file_errors=list(plan.file_errors), missing=list(plan.missing),
    )


def apply_plan(plan: ImportPlan, *, actor: Actor, source_sha256: str) -> ImportReport:
    """Carry out a plan inside the caller's transaction; refuses a plan with any rejection."""
    report = report_of(plan)
    if not plan.applicable:
        return report
    known = all_guardians()
    with db.session.no_autoflush:
        for pupil in plan.create:
            create_person(
                PersonCreate(**_person_fields(pupil), role="pupil", guardians=_guardians(pupil)),
                actor=actor, known=known,
            )
        people = _people_by_external_id([p.pupil.external_id for p in plan.update])
        for planned in plan.update:
            patch = PersonPatch(**_person_fields(planned.pupil), status="active",
                                guardians=_guardians(planned.pupil))
            update_person(people[planned.pupil.external_id], patch, actor=actor, known=known)
    record("people:import", actor=actor, details={
        "sha256": source_sha256, "created": report.created, "updated": report.updated,
        "unchanged": report.unchanged, "missing": len(report.missing),
    })
    report.applied = True
    return report


def import_file(
    content: bytes, *, actor: Actor, mapping: dict[str, str] | None = None, dry_run: bool = False
) -> ImportReport:
    """Plan and (unless a dry run) apply a file, committing only when every row is fine."""
    plan = plan_for(content, mapping)
    if dry_run:
        return report_of(plan)
    report = apply_plan(plan, actor=actor, source_sha256=hashlib.sha256(content).hexdigest())
    if report.applied:
        db.session.commit()
    else:
        db.session.rollback()
    return report
