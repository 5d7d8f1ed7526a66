"""The consent texts deciders are shown, versioned, in Dutch and English, stored by their hash."""

from __future__ import annotations

import hashlib

from ..db import db
from .models import ConsentText

TEXT_VERSION = "2026-1"
BIOMETRIC = "biometric"

# (title, body) per purpose and language. Changing a text means a new TEXT_VERSION: records keep
# pointing at the exact text that was shown, by its SHA-256.
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "facebook": {
        "nl": ("Facebookpagina van de school",
               "Foto's, films en geluidsopnamen van schoolactiviteiten waarop de leerling of "
               "medewerker te zien of te horen is, mogen op de openbare Facebookpagina van de school "
               "worden geplaatst. Facebook is openbaar: iedereen kan de berichten zien, en wat eenmaal "
               "is gepubliceerd kan door anderen worden bewaard, ook als de school het later verwijdert. "
               "U kunt deze toestemming op elk moment intrekken; de school haalt dan zijn eigen berichten "
               "met deze persoon weg."),
        "en": ("The school's Facebook page",
               "Photos, films and sound recordings of school activities in which the pupil or staff "
               "member can be seen or heard may be posted on the school's public Facebook page. Facebook "
               "is public: anyone can see the posts, and what has been published may be kept by others, "
               "even after the school removes it. You can withdraw this consent at any time; the school "
               "then takes down its own posts showing this person."),
    },
    "website": {
        "nl": ("Website van de school",
               "Foto's, films en geluidsopnamen van schoolactiviteiten mogen op de openbare website van "
               "de school worden geplaatst. De website is voor iedereen te zien. U kunt deze toestemming "
               "op elk moment intrekken."),
        "en": ("The school's website",
               "Photos, films and sound recordings of school activities may be published on the "
               "school's public website, which anyone can see. You can withdraw this consent at any "
               "time."),
    },
    "newsletter": {
        "nl": ("Nieuwsbrief",
               "Foto's van schoolactiviteiten mogen in de nieuwsbrief aan ouders, leerlingen en "
               "medewerkers worden geplaatst. U kunt deze toestemming op elk moment intrekken."),
        "en": ("Newsletter",
               "Photos of school activities may appear in the newsletter sent to parents, pupils and "
               "staff. You can withdraw this consent at any time."),
    },
    "schoolguide": {
        "nl": ("Schoolgids",
               "Foto's van schoolactiviteiten mogen in de gedrukte en digitale schoolgids worden "
               "gebruikt. U kunt deze toestemming op elk moment intrekken; een al gedrukte gids kan "
               "niet worden teruggehaald."),
        "en": ("School guide",
               "Photos of school activities may be used in the printed and digital school guide. You "
               "can withdraw this consent at any time; a guide already printed cannot be recalled."),
    },
    BIOMETRIC: {
        "nl": ("Gezichts- en stemherkenning",
               "De school mag een referentiefoto en een stemopname gebruiken om deze persoon automatisch "
               "te herkennen in foto's, films en geluidsopnamen, zodat toestemming beter kan worden "
               "gecontroleerd. Dit is verwerking van biometrische gegevens. Zonder deze toestemming "
               "wordt de persoon met de hand aangewezen; dat werkt even goed. Intrekken kan altijd; "
               "de referentiegegevens worden dan gewist."),
        "en": ("Face and voice recognition",
               "The school may use a reference photo and a voice recording to recognise this person "
               "automatically in photos, films and sound recordings, so that consent can be checked "
               "more reliably. This is processing of biometric data. Without this consent the person is "
               "tagged by hand, which works just as well. You can withdraw at any time; the reference "
               "data are then erased."),
    },
}
# Channels a school adds in its configuration get this general text.
GENERIC = {
    "nl": ("Publicatie: %s", "Foto's, films en geluidsopnamen van schoolactiviteiten mogen via het "
           "kanaal '%s' worden gepubliceerd. U kunt deze toestemming op elk moment intrekken."),
    "en": ("Publication: %s", "Photos, films and sound recordings of school activities may be "
           "published through the channel '%s'. You can withdraw this consent at any time."),
}


def text_for(channel: str, language: str) -> tuple[str, str]:
    """The (title, body) shown for a purpose in a language (Dutch when the language is unknown)."""
    language = language if language in ("nl", "en") else "nl"
    if channel in TEXTS:
        return TEXTS[channel][language]
    title, body = GENERIC[language]
    return title % channel, body % channel


def text_hash(channel: str, language: str) -> str:
    """SHA-256 of the exact text, which a record refers to."""
    title, body = text_for(channel, language)
    canonical = f"{channel}\n{TEXT_VERSION}\n{language}\n{title}\n{body}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_text(channel: str, language: str) -> ConsentText:
    """The stored row of the current text, created the first time it is used."""
    digest = text_hash(channel, language)
    row = db.session.get(ConsentText, digest)
    if row is None:
        title, body = text_for(channel, language)
        row = ConsentText(sha256=digest, channel=channel, version=TEXT_VERSION, language=language,
                          title=title, body=body)
        db.session.add(row)
        db.session.flush()
    return row
