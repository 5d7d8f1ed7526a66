"""Flask commands: init, users, people import, audit verify, consent daily, media listen."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from flask_migrate import upgrade

from .audit import SYSTEM, WitnessedHead, verify
from .auth.models import ROLES, User
from .auth.service import AccountError, create_user, find_user
from .auth.tokens import issue_token
from .db import db


@click.command("init")
@with_appcontext
@click.option("--admin-email", envvar="CONSENT_REGISTRY_ADMIN_EMAIL",
              default="admin@school.invalid", show_default=True)
def init_command(admin_email: str) -> None:
    """Create or migrate the database; on the very first run, create an admin account."""
    upgrade(directory=current_app.extensions["migrate"].directory)
    if db.session.execute(sa.select(sa.func.count()).select_from(User)).scalar_one():
        click.echo("Database is up to date.")
        return
    user, password = create_user(email=admin_email, role="admin", name="Admin", actor=SYSTEM)
    db.session.commit()
    click.echo("Created the first admin account. Log in and choose your own password:")
    click.echo(f"  e-mail:            {user.email}")
    click.echo(f"  one-time password: {password}")


# AppGroup runs every subcommand inside an app context.
users = AppGroup("users", help="Staff accounts.")


@users.command("create")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", default="")
@click.option("--password", default=None, help="Leave out to get a one-time password.")
def users_create(email: str, role: str, name: str, password: str | None) -> None:
    """Create a staff account."""
    try:
        user, generated = create_user(email=email, role=role, name=name, password=password,
                                      actor=SYSTEM)
    except AccountError as exc:
        raise click.ClickException(f"{exc.code}: {exc}") from None
    db.session.commit()
    click.echo(f"Created {user.email} ({user.role}).")
    if generated:
        click.echo(f"One-time password: {generated}")


@users.command("token")
@click.argument("email")
@click.option("--label", default="cli")
def users_token(email: str, label: str) -> None:
    """Print a new API token for an account; it is shown only now."""
    user = find_user(email)
    if user is None or not user.active:
        raise click.ClickException(f"no active account {email}")
    token = issue_token(user, label=label, actor=SYSTEM)
    db.session.commit()
    click.echo(token)


people = AppGroup("people", help="The people register.")


@people.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option("--map", "mapping", multiple=True, metavar="FIELD=HEADER",
              help="Which column holds a field, e.g. --map external_id=Llnr.")
def people_import(file: Path, dry_run: bool, mapping: tuple[str, ...]) -> None:
    """Import pupils from a pupil administration export (all rows or none)."""
    from .people.importing import MAX_IMPORT_BYTES, import_file

    if file.stat().st_size > MAX_IMPORT_BYTES:
        raise click.ClickException("file is larger than 10 MB")
    pairs = dict(item.split("=", 1) for item in mapping if "=" in item)
    report = import_file(file.read_bytes(), actor=SYSTEM, mapping=pairs, dry_run=dry_run)
    for problem in report.file_errors:
        click.echo(f"file: {problem}", err=True)
    for row in report.rejected:
        click.echo(f"row {row['row']}: {row['field'] or '-'}: {row['message']}", err=True)
    click.echo(f"created {report.created}, updated {report.updated}, "
               f"unchanged {report.unchanged}, rejected {report.rejected_rows}")
    if report.missing:
        click.echo(f"not in this file (kept, check them): {', '.join(report.missing)}")
    if dry_run:
        click.echo("dry run: nothing was changed")
        if report.rejected or report.file_errors:
            sys.exit(1)  # so a script can check a file before it imports it
    elif not report.applied:
        click.echo("nothing was imported", err=True)
        sys.exit(1)


audit = AppGroup("audit", help="The audit log.")


def _witnessed_head(_ctx: click.Context, _param: click.Parameter, value: str | None) -> WitnessedHead | None:
    """--expect's HASH:LENGTH, or a usage error saying what it should look like."""
    if value is None:
        return None
    try:
        return WitnessedHead.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@audit.command("verify")
@click.option("--expect", metavar="HASH:LENGTH", callback=_witnessed_head,
              help="A chain head witnessed earlier (the daily mail to the DPO); it must still be "
                   "part of the chain.")
def audit_verify(expect: WitnessedHead | None) -> None:
    """Walk the keyed hash chain; exit non-zero and name the first broken link when it is broken."""
    report = verify(expect=expect)
    if report.ok:
        click.echo(f"audit chain intact: {report.checked} events; head {report.head}")
        if expect is not None:
            click.echo(f"the witnessed head {expect.hash}:{expect.length} is part of it")
        return
    where = f"event {report.broken_event_id}" if report.broken_event_id else "the chain's end"
    click.echo(f"audit chain BROKEN at {where}: {report.reason} "
               f"({report.checked} events verified before it)", err=True)
    sys.exit(1)


consent = AppGroup("consent", help="Consent e-mails.")


@consent.command("daily")
def consent_daily() -> None:
    """Send due reminders and turning-16 messages now (the worker also does this every morning)."""
    from .consent.sending import send_reminders, send_turning_sixteen

    reminders, sixteen = send_reminders(), send_turning_sixteen()
    click.echo(f"reminders sent: {reminders}; turning-16 messages queued: {sixteen}")


media = AppGroup("media", help="Media items.")


@media.command("listen")
def media_listen() -> None:
    """Queue the sound analysis of recordings and videos analysed before voices were found."""
    from .jobs import enqueue
    from .media.analysis import listen_to_sound, unheard_items

    ids = unheard_items()
    db.session.commit()
    for media_id in ids:
        enqueue(listen_to_sound, media_id)
    click.echo(f"items queued for sound analysis: {len(ids)}")


def register_commands(app: Flask) -> None:
    """Add the commands to `flask`."""
    from .jobs import worker_command

    for command in (init_command, users, people, audit, consent, media, worker_command):
        app.cli.add_command(command)


