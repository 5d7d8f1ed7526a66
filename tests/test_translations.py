"""The Dutch catalog is complete, keeps every placeholder and covers every message the code uses."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.catalog import Catalog, Message
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[1]
BABEL_CFG = ROOT / "babel.cfg"
NL_PO = ROOT / "consent_registry" / "translations" / "nl" / "LC_MESSAGES" / "messages.po"
KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")
REFRESH_COMMANDS = "make messages   # then translate the new entries in the .po file"


def load_catalog() -> Catalog:
    """Read the Dutch catalog from disk."""
    with NL_PO.open("rb") as po_file:
        return read_po(po_file, locale="nl")


def translatable(catalog: Catalog) -> list[Message]:
    """The catalog's messages without the header entry."""
    return [message for message in catalog if message.id]


def as_forms(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A msgid or msgstr as a tuple of its (singular and plural) forms."""
    return (text,) if isinstance(text, str) else tuple(text)


def extracted_catalog() -> Catalog:
    """Extract the messages of the code in-process, as `pybabel extract -F babel.cfg` does."""
    with BABEL_CFG.open(encoding="utf-8") as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, filename=str(BABEL_CFG))
    catalog = Catalog(project="consent-registry")
    for filename, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map, options_map, keywords=KEYWORDS
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def test_every_message_is_translated() -> None:
    """Every msgid has a non-empty translation for each plural form and nothing is fuzzy."""
    catalog = load_catalog()
    messages = translatable(catalog)
    assert messages, f"{NL_PO} has no messages"
    assert not catalog.fuzzy, "The catalog header is marked fuzzy."
    fuzzy = [message.id for message in messages if message.fuzzy]
    assert not fuzzy, f"Fuzzy entries in {NL_PO.name}: {fuzzy}"
    untranslated = []
    for message in messages:
        forms = as_forms(message.string)
        expected = catalog.num_plurals if message.pluralizable else 1
        if len(forms) != expected or not all(form.strip() for form in forms):
            untranslated.append(message.id)
    assert not untranslated, f"Untranslated entries in {NL_PO.name}: {untranslated}"


def test_placeholders_match() -> None:
    """Each translation uses exactly the placeholders of its msgid."""
    mismatches = []
    for message in translatable(load_catalog()):
        ids = as_forms(message.id)
        for index, form in enumerate(as_forms(message.string)):
            source = ids[min(index, len(ids) - 1)]
            expected, found = set(PLACEHOLDER.findall(source)), set(PLACEHOLDER.findall(form))
            if expected != found:
                mismatches.append(f"{source!r} -> {form!r}: expected {sorted(expected)}, got {sorted(found)}")
    assert not mismatches, "Placeholders differ:\n" + "\n".join(mismatches)


def test_catalog_passes_babel_checks() -> None:
    """The header is Dutch and babel's own checks (python-format, plural count) find nothing."""
    catalog = load_catalog()
    assert str(catalog.locale) == "nl"
    assert catalog.plural_forms == "nplurals=2; plural=(n != 1);"
    problems = [f"{message.id!r}: {[str(error) for error in errors]}" for message, errors in catalog.check()]
    assert not problems, "pybabel compile would complain:\n" + "\n".join(problems)


def test_catalog_covers_extracted_messages() -> None:
    """Every message the code and templates use is in the Dutch catalog."""
    extracted = {(message.id, message.context) for message in translatable(extracted_catalog())}
    assert extracted, "Extraction found no messages; is babel.cfg still right?"
    in_catalog = {(message.id, message.context) for message in translatable(load_catalog())}
    missing = sorted(extracted - in_catalog, key=str)
    assert not missing, (
        f"{len(missing)} message(s) used in the code are not in {NL_PO.relative_to(ROOT)}: {missing}\n"
        f"Refresh the catalog and translate the new entries:\n{REFRESH_COMMANDS}"
    )
