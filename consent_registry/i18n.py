"""Dutch by default, English by browser preference or the language switch."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, has_request_context, redirect, request, session
from flask_babel import Babel, get_locale
from werkzeug.wrappers import Response

from .auth.access import allow_public
from .db import utcnow
from .labels import LABELS, channel_label, local_date, local_time, template_helpers
from .people.age import age_on
from .people.csv_import import field_label
from .school import school_names

bp = Blueprint("i18n", __name__)
babel = Babel()


def select_locale() -> str:
    """The chosen language: the switch, else the browser's preference, else Dutch."""
    locales = current_app.config["LOCALES"]
    if not has_request_context():  # commands and jobs speak the default language
        return current_app.config["DEFAULT_LOCALE"]
    chosen = session.get("lang")
    if chosen in locales:
        return chosen
    return request.accept_languages.best_match(locales) or current_app.config["DEFAULT_LOCALE"]


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go back to; anything pointing elsewhere becomes the default."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target:
        return default
    return target


@bp.post("/language")
@allow_public
def set_language() -> Response:
    """Remember the language chosen with the switch and go back."""
    lang = request.form.get("lang", "")
    if lang in current_app.config["LOCALES"]:
        session["lang"] = lang
    return redirect(safe_next(request.form.get("next")))


def _labeller(kind: str) -> object:
    """A template function that shows a stored code as its translated label."""
    return lambda code: str(LABELS[kind].get(code, code))


def init_app(app: Flask) -> None:
    """Hook Babel, the labels and the language switch into the app."""
    babel.init_app(app, locale_selector=select_locale, default_translation_directories="translations")
    app.jinja_env.globals.update(
        role_label=_labeller("role"),
        person_role_label=_labeller("person_role"),
        status_label=_labeller("status"),
        method_label=_labeller("method"),
        recipient_state_label=_labeller("recipient_state"),
        get_locale=get_locale,
        age_today=lambda birth_date: age_on(birth_date, utcnow().date()),
        import_field_label=field_label,
        school_names=school_names,
    )
    app.jinja_env.globals.update(template_helpers())
    # One way to show a moment everywhere: the school's time zone, the reader's format (en-GB).
    app.jinja_env.filters.update(datetimeformat=local_time, dateformat=local_date, when=local_time,
                                 channel_label=channel_label)
    app.register_blueprint(bp)
