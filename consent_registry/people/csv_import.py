"""Pupils from CSV exports of Dutch pupil administrations (Magister, Somtoday, ParnasSys).

No database: `parse_pupil_csv` turns the bytes of an export into validated pupils and row
errors, and `plan_import` compares them with a snapshot of the register to say what an import
would create, update or leave alone. Messages are in the request's language (`translate._`),
English outside a request (the command line); error codes and field names never change.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from pydantic import ValidationError

from ..translate import _
from .schemas import PersonCreate, normalise_email_address

MAX_GUARDIANS = 4
GUARDIAN_KINDS = ("name", "email", "relation")
SIMPLE_FIELDS = (
    "external_id",
    "given_name",
    "family_name",
    "family_name_prefix",
    "birth_date",
    "email",
    "group",
)
GUARDIAN_FIELDS = tuple(
    f"guardian{number}_{kind}" for number in range(1, MAX_GUARDIANS + 1) for kind in GUARDIAN_KINDS
)
FIELDS = SIMPLE_FIELDS + GUARDIAN_FIELDS
REQUIRED_FIELDS = ("external_id", "given_name", "family_name", "birth_date")

# Header names per field, most preferred first: a file with both "Roepnaam" and "Voornaam"
# uses "Roepnaam". The first name is the Dutch one suggested when the column is missing.
# "Voornamen" (all given names) is left out on purpose: it is not the name a pupil goes by.
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "external_id": (
        "Leerlingnummer",
        "Leerling nummer",
        "Llnr",
        "Stamnummer",
        "Stamnr",
        "Studentnummer",
        "Pupil number",
        "Student number",
        "Pupil ID",
        "Student ID",
    ),
    "given_name": ("Roepnaam", "Voornaam", "Given name", "First name"),
    "family_name": (
        "Achternaam",
        "Familienaam",
        "Geslachtsnaam",
        "Family name",
        "Last name",
        "Surname",
    ),
    "family_name_prefix": ("Tussenvoegsel", "Tussenvoegsels", "Tussenv", "Voorvoegsel"),
    "birth_date": ("Geboortedatum", "Geb. datum", "Date of birth", "Birth date", "Birthdate"),
    # The pupil's own address, asked once they decide themselves (16 and older). Magister,
    # Somtoday and ParnasSys name it after the pupil or after the school account; a file with both
    # uses the pupil's own, then the school's, then a plain "E-mail".
    "email": (
        "E-mailadres leerling",
        "E-mail leerling",
        "Leerling e-mailadres",
        "Leerling e-mail",
        "E-mailadres leerling (prive)",
        "E-mailadres school",
        "E-mail school",
        "School e-mailadres",
        "School e-mail",
        "Schoolmail",
        "E-mailadres leerling school",
        "E-mail",
        "E-mailadres",
        "E-mail address",
        "Pupil e-mail",
        "Student e-mail",
        "Pupil school e-mail",
        "Student school e-mail",
    ),
    "group": ("Klas", "Stamgroep", "Stamklas", "Groep", "Basisgroep", "Class", "Group"),
}

# Guardian columns: a person word, a number and a kind word, in one of the orders below.
GUARDIAN_PERSON_WORDS = ("ouderverzorger", "ouder", "verzorger", "voogd", "guardian", "parent")
GUARDIAN_KIND_WORDS: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailadres", "emailaddress", "mail", "mailadres"),
    "name": ("naam", "name", "volledigenaam", "fullname"),
    "relation": ("relatie", "relation", "relationship", "soortrelatie"),
}
# Kind words that already say whose relation it is, so they need no person word.
GUARDIAN_SELF_EXPLAINING_WORDS: dict[str, str] = {
    "relatietotleerling": "relation",
    "relationtopupil": "relation",
}

DELIMITERS = (";", ",", "\t")

_GUARDIAN_FIELD = re.compile(r"guardian(?P<number>\d+)_(?P<kind>name|email|relation)")
_NOT_ALPHANUMERIC = re.compile(r"[^0-9a-z]")
_DATE_DMY = re.compile(r"(?P<day>\d{1,2})(?P<sep>[-/.])(?P<month>\d{1,2})(?P=sep)(?P<year>\d{4})")
_DATE_YMD = re.compile(r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})")
_DATE_SHORT_YEAR = re.compile(r"\d{1,2}(?P<sep>[-/.])\d{1,2}(?P=sep)\d{2}")
_FIELD_POSITION = {field: position for position, field in enumerate(FIELDS)}


def header_key(text: str) -> str:
    """A header reduced to lower-case letters and digits, so spelling variants compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    # Everything but letters and digits goes: spaces, hyphens, dots, but also the slash of
    # "ouder/verzorger" and brackets, which vary between exports just as much.
    without_accents = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NOT_ALPHANUMERIC.sub("", without_accents)


def _alternatives(words: Sequence[str]) -> str:
    """A regex alternation, longest first so that a longer word wins over its prefix."""
    return "|".join(sorted(words, key=len, reverse=True))


_PERSON = f"(?:{_alternatives(GUARDIAN_PERSON_WORDS)})"
_KIND = f"(?P<kind>{_alternatives([w for ws in GUARDIAN_KIND_WORDS.values() for w in ws])})"
_NUMBER = f"(?P<number>[1-{MAX_GUARDIANS}])"
_GUARDIAN_HEADER_SHAPES = tuple(
    re.compile(shape)
    for shape in (
        f"{_KIND}{_PERSON}{_NUMBER}",  # E-mail ouder/verzorger 1, Naam verzorger 1
        f"{_PERSON}{_NUMBER}{_KIND}",  # Verzorger 1 e-mail, Parent 2 name
        f"{_PERSON}{_KIND}{_NUMBER}",  # Verzorger e-mail 1
        f"(?P<kind>{_alternatives(list(GUARDIAN_SELF_EXPLAINING_WORDS))}){_NUMBER}",
    )
)
_KIND_OF_WORD = {
    word: kind for kind, words in GUARDIAN_KIND_WORDS.items() for word in words
} | GUARDIAN_SELF_EXPLAINING_WORDS
# Header key -> (field, preference); lower preference wins.
_ALIAS_INDEX = {
    header_key(alias): (field, preference)
    for field, aliases in HEADER_ALIASES.items()
    for preference, alias in enumerate(aliases)
}


@dataclass(frozen=True, slots=True)
class ImportedGuardian:
    """A guardian as read from a row; `name` is None when the file gives none."""

    name: str | None
    email: str
    relation: str | None


@dataclass(frozen=True, slots=True)
class ImportedPupil:
    """A pupil read from a row that passed every check."""

    row_number: int
    external_id: str
    given_name: str
    family_name: str
    birth_date: date
    email: str | None
    group: str | None
    guardians: tuple[ImportedGuardian, ...]


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row cannot be imported; `field` is one of FIELDS, or None for the row as a whole."""

    row_number: int
    external_id: str | None
    field: str | None
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """Everything read from one file: good pupils, rejected rows and problems with the file."""

    pupils: tuple[ImportedPupil, ...]
    errors: tuple[RowError, ...]
    file_errors: tuple[str, ...]
    encoding: str
    delimiter: str
    columns: dict[str, str]


class ImportFormatError(ValueError):
    """The file as a whole cannot be read; `errors` holds the file error codes."""

    def __init__(self, *errors: str) -> None:
        """Keep the codes; the first one doubles as the exception message."""
        super().__init__(errors[0] if errors else "unreadable file")
        self.errors = errors


class _FieldProblem(Exception):
    """A value that fails a check of this module (not of PersonCreate)."""

    def __init__(self, code: str, message: str) -> None:
        """Keep the error code and the translated message."""
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ExistingPupil:
    """A snapshot of a person already in the register, to compare an import with."""

    external_id: str
    role: str
    given_name: str
    family_name: str
    birth_date: date
    email: str | None
    group: str | None
    status: str
    guardians: frozenset[tuple[str, str, str | None]]


@dataclass(frozen=True, slots=True)
class PlannedUpdate:
    """A pupil in the register whose data in the file differs; `fields` names what changes."""

    pupil: ImportedPupil
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What importing a parsed file would do; `missing` pupils are reported, never deleted."""

    create: tuple[ImportedPupil, ...]
    update: tuple[PlannedUpdate, ...]
    unchanged: tuple[ImportedPupil, ...]
    rejected: tuple[RowError, ...]
    file_errors: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def applicable(self) -> bool:
        """Whether the import may run: it is all-or-nothing, so one bad row stops it."""
        return not self.rejected and not self.file_errors


def field_label(field: str) -> str:
    """The translated name of one of our fields (or of a changed field), for people to read."""
    labels = {
        "external_id": _("Pupil number"),
        "given_name": _("Given name"),
        "family_name_prefix": _("Family name prefix"),
        "family_name": _("Family name"),
        "birth_date": _("Birth date"),
        "email": _("E-mail address"),
        "group": _("Group"),
        "guardians": _("Guardians"),  # the fields changed_fields may name besides FIELDS
        "status": _("Status"),
    }
    if field in labels:
        return labels[field]
    match = _GUARDIAN_FIELD.fullmatch(field)
    if match is None:
        return field
    number, kind = match["number"], match["kind"]
    if kind == "name":
        return _("Guardian %(number)s name", number=number)
    if kind == "email":
        return _("Guardian %(number)s e-mail address", number=number)
    return _("Guardian %(number)s relation", number=number)


def _file_error(code: str, message: str) -> str:
    """A file error as "code: message": the code is for scripts, the message for people."""
    return f"{code}: {message}"


def detect_field(header: str) -> tuple[str, int] | None:
    """The field a header names and its preference (lower wins), or None when unknown."""
    key = header_key(header)
    known = _ALIAS_INDEX.get(key)
    if known is not None:
        return known
    for shape in _GUARDIAN_HEADER_SHAPES:
        match = shape.fullmatch(key)
        if match:
            return f"guardian{match['number']}_{_KIND_OF_WORD[match['kind']]}", 0
    return None


def _decode(data: bytes) -> tuple[str, str]:
    """The text of the file and the encoding it was read with."""
    candidates = ("utf-8-sig",) if data.startswith(codecs.BOM_UTF8) else ("utf-8", "cp1252")
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        # NUL bytes mean UTF-16 ("Unicode text" from Excel) or no text at all; cp1252
        # would happily read them as characters.
        if "\x00" in text:
            break
        return text, encoding
    raise ImportFormatError(
        _file_error("undecodable", _("The file is not UTF-8 or Windows-1252 text."))
    )


def _detect_delimiter(text: str) -> str:
    """The delimiter used most in the header line, counting only outside quotes."""
    counts = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    seen_text = False
    for ch in text:
        if ch == '"':
            in_quotes = not in_quotes
            seen_text = True
        elif in_quotes:
            continue
        elif ch in counts:
            counts[ch] += 1
        elif ch == "\n":
            if seen_text:
                break
            counts = dict.fromkeys(DELIMITERS, 0)
        elif not ch.isspace():
            seen_text = True
    # Ties (including a single-column file) go to the earliest in DELIMITERS.
    return max(DELIMITERS, key=counts.__getitem__)


def _find_header(header: Sequence[str], wanted: str) -> int | None:
    """The index of the header a mapping names: exact text first, then the same key."""
    wanted = wanted.strip()
    if wanted in header:
        return header.index(wanted)
    key = header_key(wanted)
    matches = [index for index, text in enumerate(header) if header_key(text) == key]
    return matches[0] if len(matches) == 1 else None


def _apply_mapping(
    header: Sequence[str], mapping: Mapping[str, str]
) -> tuple[dict[str, int], set[str], list[str]]:
    """Columns named by an explicit mapping, the fields it switches off, and its errors."""
    columns: dict[str, int] = {}
    switched_off: set[str] = set()
    unknown_fields = sorted(field for field in mapping if field not in _FIELD_POSITION)
    not_found: list[str] = []
    used_twice: list[str] = []
    for field, wanted in mapping.items():
        if field not in _FIELD_POSITION:
            continue
        if not wanted or not wanted.strip():
            # An empty header means "do not import this field", even if detection finds it.
            switched_off.add(field)
            continue
        index = _find_header(header, wanted)
        if index is None:
            not_found.append(wanted.strip())
        elif index in columns.values():
            used_twice.append(header[index])
        else:
            columns[field] = index
    errors = []
    if unknown_fields:
        errors.append(_file_error("unknown_fields", _(
            "The column mapping names unknown fields: %(fields)s", fields=", ".join(unknown_fields)
        )))
    if not_found:
        errors.append(_file_error("mapped_columns_not_found", _(
            "The column mapping names columns the file does not have: %(columns)s",
            columns=", ".join(not_found),
        )))
    if used_twice:
        errors.append(_file_error("column_mapped_twice", _(
            "The column mapping uses a column for more than one field: %(columns)s",
            columns=", ".join(used_twice),
        )))
    return columns, switched_off, errors


def _resolve_columns(header: Sequence[str], mapping: Mapping[str, str]) -> dict[str, int]:
    """Which column feeds which field; raises ImportFormatError when that is unclear."""
    columns, switched_off, errors = _apply_mapping(header, mapping)
    mapped_indexes = set(columns.values())
    candidates: dict[str, list[tuple[int, int]]] = {}
    for index, text in enumerate(header):
        found = detect_field(text)
        if found is None or index in mapped_indexes:
            continue
        field, preference = found
        if field not in columns and field not in switched_off:
            candidates.setdefault(field, []).append((preference, index))
    ambiguous: list[str] = []
    for field, found in candidates.items():
        best = min(preference for preference, _index in found)
        indexes = [index for preference, index in found if preference == best]
        if len(indexes) > 1:
            ambiguous.append(" / ".join(header[index] for index in indexes))
        columns[field] = indexes[0]
    if ambiguous:
        errors.append(_file_error("ambiguous_columns", _(
            "Several columns could hold the same field, choose one in the column mapping: "
            "%(columns)s",
            columns=", ".join(ambiguous),
        )))
    if not columns and not mapping:
        errors.append(_file_error("no_header", _("The first line holds no known column names.")))
    missing = [HEADER_ALIASES[field][0] for field in REQUIRED_FIELDS if field not in columns]
    if missing:
        errors.append(_file_error("missing_columns", _(
            "The file lacks these required columns: %(columns)s", columns=", ".join(missing)
        )))
    if errors:
        raise ImportFormatError(*errors)
    return dict(sorted(columns.items(), key=lambda item: _FIELD_POSITION[item[0]]))


def _parse_birth_date(text: str) -> date:
    """A date written as dd-mm-yyyy (or with / or .) or yyyy-mm-dd; raises _FieldProblem."""
    match = _DATE_DMY.fullmatch(text) or _DATE_YMD.fullmatch(text)
    if match is None:
        if not text:
            raise _FieldProblem("required", _("%(field)s is required", field=field_label("birth_date")))
        if _DATE_SHORT_YEAR.fullmatch(text):
            raise _FieldProblem(
                "invalid_date", _("Birth date %(value)s needs a four-digit year", value=text)
            )
        raise _FieldProblem(
            "invalid_date", _("Birth date %(value)s is not a dd-mm-yyyy date", value=text)
        )
    try:
        return date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        raise _FieldProblem(
            "invalid_date", _("Birth date %(value)s does not exist", value=text)
        ) from None


def _email_key(email: str) -> str:
    """The address two spellings of one e-mail address share; broken ones compare as typed."""
    try:
        return normalise_email_address(email)
    except ValueError:
        return email.casefold()


def _guardians_of_row(
    values: Mapping[str, str], problems: dict[str, tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[int]]:
    """The complete guardians of a row and their numbers; incomplete ones become problems."""
    guardians: list[dict[str, Any]] = []
    numbers: list[int] = []
    seen_emails: set[str] = set()
    for number in range(1, MAX_GUARDIANS + 1):
        name = values.get(f"guardian{number}_name", "")
        email = values.get(f"guardian{number}_email", "")
        relation = values.get(f"guardian{number}_relation", "")
        if not email:
            if name or relation:
                problems[f"guardian{number}_email"] = (
                    "guardian_without_email",
                    _("Guardian %(number)s has no e-mail address", number=number),
                )
            continue
        key = _email_key(email)
        if key in seen_emails:
            continue
        seen_emails.add(key)
        # A file may carry only the guardians' addresses (no name column, or an empty cell): the
        # guardian is imported without a name rather than the row refused or a name invented.
        guardians.append({"name": name or None, "email": email, "relation": relation or None})
        numbers.append(number)
    return guardians, numbers


def _error_field(location: tuple[int | str, ...], guardian_numbers: Sequence[int]) -> str:
    """Our field name for the location of a pydantic error."""
    if location[0] == "guardians" and len(location) >= 3 and isinstance(location[1], int):
        return f"guardian{guardian_numbers[location[1]]}_{location[2]}"
    if location[0] == "guardians" and guardian_numbers:
        return f"guardian{guardian_numbers[0]}_email"
    return str(location[0])


def _describe(field: str, error: Mapping[str, Any]) -> tuple[str, str]:
    """A code and a short translated message for one pydantic error on a field."""
    label = field_label(field)
    kind = error["type"]
    # Length limits set after a validator come as too_short/too_long, not string_too_*.
    if kind in ("string_too_short", "too_short", "missing"):
        return "required", _("%(field)s is required", field=label)
    if kind in ("string_too_long", "too_long"):
        return "too_long", _(
            "%(field)s is longer than %(maximum)s characters",
            field=label,
            maximum=error["ctx"]["max_length"],
        )
    if field == "email" or field.endswith("_email"):
        return "invalid_email", _("%(field)s is not a valid e-mail address", field=label)
    if kind == "value_error":
        code = "invalid_date" if field == "birth_date" else "invalid_value"
        # The schemas' own messages are translated already.
        message = str(error["ctx"]["error"])
        return code, _(
            "%(field)s: %(problem)s", field=label, problem=f"{message[:1].lower()}{message[1:]}"
        )
    return "invalid_value", _("%(field)s is not valid", field=label)


def _pupil_from_row(
    row_number: int, values: Mapping[str, str]
) -> tuple[ImportedPupil | None, list[RowError]]:
    """The pupil in one row, validated like the API does, or every error the row has."""
    problems: dict[str, tuple[str, str]] = {}
    birth_date: date | str = values["birth_date"]
    try:
        birth_date = _parse_birth_date(values["birth_date"])
    except _FieldProblem as problem:
        problems["birth_date"] = (problem.code, problem.message)
    guardians, guardian_numbers = _guardians_of_row(values, problems)
    family_name = values["family_name"]
    prefix = values.get("family_name_prefix", "")
    if prefix and family_name:
        family_name = f"{prefix} {family_name}"
    try:
        person = PersonCreate(
            role="pupil",
            external_id=values["external_id"],
            given_name=values["given_name"],
            family_name=family_name,
            birth_date=birth_date,
            email=values.get("email") or None,
            group=values.get("group") or None,
            guardians=guardians,
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = _error_field(error["loc"], guardian_numbers)
            # Our own message (e.g. on the date format) is more to the point than pydantic's.
            problems.setdefault(field, _describe(field, error))
        person = None
    if person is None or problems:
        external_id = values["external_id"] or None
        return None, [
            RowError(row_number, external_id, field, code, message)
            for field, (code, message) in sorted(
                problems.items(), key=lambda item: _FIELD_POSITION.get(item[0], len(FIELDS))
            )
        ]
    pupil = ImportedPupil(
        row_number=row_number,
        external_id=person.external_id,
        given_name=person.given_name,
        family_name=person.family_name,
        birth_date=person.birth_date,
        email=person.email,
        group=person.group,
        guardians=tuple(ImportedGuardian(g.name, g.email, g.relation) for g in person.guardians),
    )
    return pupil, []


def _read_rows(
    numbered: Iterator[tuple[int, list[str]]], width: int, columns: Mapping[str, int]
) -> tuple[list[ImportedPupil], list[RowError]]:
    """Every data row after the header; raises ImportFormatError when there are none."""
    pupils: list[ImportedPupil] = []
    errors: list[RowError] = []
    seen_ids: set[str] = set()
    data_rows = 0
    id_index = columns["external_id"]
    for row_number, record in numbered:
        cells = [cell.strip() for cell in record]
        if not any(cells):
            continue
        data_rows += 1
        external_id = unicodedata.normalize("NFC", cells[id_index]) if id_index < len(cells) else ""
        if len(cells) > width:
            errors.append(
                RowError(
                    row_number,
                    external_id or None,
                    None,
                    "too_many_cells",
                    _(
                        "Row has %(cells)s cells but the header has %(columns)s columns",
                        cells=len(cells),
                        columns=width,
                    ),
                )
            )
            continue
        duplicate = external_id in seen_ids
        if duplicate:
            errors.append(
                RowError(
                    row_number,
                    external_id,
                    "external_id",
                    "duplicate_external_id",
                    _(
                        "Pupil number %(number)s already appears on an earlier row",
                        number=external_id,
                    ),
                )
            )
        elif external_id:
            seen_ids.add(external_id)
        values = {
            field: cells[index] if index < len(cells) else "" for field, index in columns.items()
        }
        # A repeated row is still checked, so that the report lists all its problems at once.
        pupil, row_errors = _pupil_from_row(row_number, values)
        errors.extend(row_errors)
        if pupil is not None and not duplicate:
            pupils.append(pupil)
    if not data_rows:
        raise ImportFormatError(
            _file_error("no_rows", _("The file has a header but no pupils."))
        )
    return pupils, errors


def parse_pupil_csv(data: bytes, *, mapping: Mapping[str, str] | None = None) -> ParsedFile:
    """Read the pupils from an export; every problem is reported, nothing is guessed."""
    try:
        text, encoding = _decode(data)
    except ImportFormatError as exc:
        return ParsedFile((), (), exc.errors, "", "", {})
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        problem = _file_error("empty_file", _("The file holds no text."))
        return ParsedFile((), (), (problem,), encoding, "", {})
    delimiter = _detect_delimiter(text)
    # Row numbers count records as a spreadsheet shows them, blank lines included.
    numbered = enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1)
    columns: dict[str, int] = {}
    header: list[str] = []
    try:
        for _row_number, record in numbered:
            header = [cell.strip() for cell in record]
            if any(header):
                break
        else:
            raise ImportFormatError(
                _file_error("empty_file", _("The file holds only empty cells."))
            )
        columns = _resolve_columns(header, mapping or {})
        pupils, errors = _read_rows(numbered, len(header), columns)
    except ImportFormatError as exc:
        named = {field: header[index] for field, index in columns.items()}
        return ParsedFile((), (), exc.errors, encoding, delimiter, named)
    except csv.Error as exc:
        problem = _file_error(
            "unreadable_csv", _("The file cannot be read as CSV: %(error)s", error=str(exc))
        )
        return ParsedFile((), (), (problem,), encoding, delimiter, {})
    named = {field: header[index] for field, index in columns.items()}
    return ParsedFile(_one_name_per_guardian(pupils), tuple(errors), (), encoding, delimiter, named)


def _one_name_per_guardian(pupils: list[ImportedPupil]) -> tuple[ImportedPupil, ...]:
    """Give a guardian the name of their first row on every row.

    Siblings' rows may spell a shared guardian differently; the register holds one guardian per
    e-mail address, and without this each re-import would rename them back and forth.
    """
    first_name: dict[str, str | None] = {}
    for pupil in pupils:
        for guardian in pupil.guardians:
            # A row without the name does not hide the name another row gives.
            if first_name.get(guardian.email) is None:
                first_name[guardian.email] = guardian.name
    return tuple(
        replace(pupil, guardians=tuple(replace(g, name=first_name[g.email]) for g in pupil.guardians))
        if any(g.name != first_name[g.email] for g in pupil.guardians) else pupil
        for pupil in pupils
    )


_COMPARED_FIELDS = ("birth_date", "email", "family_name", "given_name", "group")


def guardian_set(
    pupil: ImportedPupil, current: ExistingPupil | None = None
) -> frozenset[tuple[str, str, str | None]]:
    """A pupil's guardians in the shape ExistingPupil keeps them: (email, name, relation).

    A guardian the file names no name for keeps the name the register has for them (none: "").
    """
    known = {email: name for email, name, _relation in current.guardians} if current else {}
    return frozenset(
        (g.email, g.name if g.name is not None else known.get(g.email, ""), g.relation)
        for g in pupil.guardians
    )


def changed_fields(pupil: ImportedPupil, current: ExistingPupil) -> tuple[str, ...]:
    """The sorted names of the fields an import of this pupil would change."""
    changed = [
        field for field in _COMPARED_FIELDS if getattr(pupil, field) != getattr(current, field)
    ]
    if current.status != "active":
        changed.append("status")
    if guardian_set(pupil, current) != current.guardians:
        changed.append("guardians")
    return tuple(sorted(changed))


def plan_import(parsed: ParsedFile, existing: Mapping[str, ExistingPupil]) -> ImportPlan:
    """What importing the file into a register holding `existing` (by external id) would do."""
    create: list[ImportedPupil] = []
    update: list[PlannedUpdate] = []
    unchanged: list[ImportedPupil] = []
    rejected = list(parsed.errors)
    for pupil in parsed.pupils:
        current = existing.get(pupil.external_id)
        if current is None:
            create.append(pupil)
        elif current.role == "staff":
            rejected.append(
                RowError(
                    pupil.row_number,
                    pupil.external_id,
                    "external_id",
                    "external_id_is_staff",
                    _(
                        "Pupil number %(number)s belongs to a staff member in the register",
                        number=pupil.external_id,
                    ),
                )
            )
        elif fields := changed_fields(pupil, current):
            update.append(PlannedUpdate(pupil, fields))
        else:
            unchanged.append(pupil)
    in_file = {pupil.external_id for pupil in parsed.pupils}
    # A rejected row still shows the pupil is in the school's export: not missing.
    in_file.update(error.external_id for error in parsed.errors if error.external_id)
    # A file that could not be read says nothing about who left.
    missing = (
        ()
        if parsed.file_errors
        else tuple(
            sorted(
                person.external_id
                for person in existing.values()
                if person.role == "pupil"
                and person.status == "active"
                and person.external_id not in in_file
            )
        )
    )
    return ImportPlan(
        create=tuple(create),
        update=tuple(update),
        unchanged=tuple(unchanged),
        rejected=tuple(sorted(rejected, key=lambda error: error.row_number)),
        file_errors=parsed.file_errors,
        missing=missing,
    )
