"""Tests for reading pupil CSV exports and planning their import (pure, no app or database)."""

from __future__ import annotations

import codecs
from datetime import date, timedelta

import pytest

from consent_registry.people.csv_import import (
    ExistingPupil,
    ImportedGuardian,
    ImportedPupil,
    ImportPlan,
    ParsedFile,
    PlannedUpdate,
    RowError,
    detect_field,
    guardian_set,
    parse_pupil_csv,
    plan_import,
)

BASIC_HEADER = ["Leerlingnummer", "Roepnaam", "Achternaam", "Geboortedatum"]


def make_csv(
    rows: list[list[str]],
    *,
    delimiter: str = ";",
    encoding: str = "utf-8",
    newline: str = "\n",
) -> bytes:
    """CSV bytes from rows of cells, written without quoting (tests quote by hand)."""
    return newline.join(delimiter.join(row) for row in rows).encode(encoding)


def basic_csv(*rows: list[str], **kwargs: str) -> bytes:
    """A file with the four required columns and the given data rows."""
    return make_csv([BASIC_HEADER, *rows], **kwargs)


def only_pupil(parsed: ParsedFile) -> ImportedPupil:
    """The single pupil of a file that must have no problems at all."""
    assert parsed.file_errors == ()
    assert parsed.errors == ()
    assert len(parsed.pupils) == 1
    return parsed.pupils[0]


def pupil_numbered(parsed: ParsedFile, external_id: str) -> ImportedPupil:
    """The pupil with this number in a parsed file."""
    [pupil] = [p for p in parsed.pupils if p.external_id == external_id]
    return pupil


def errors_by_field(parsed: ParsedFile) -> dict[str | None, RowError]:
    """Row errors keyed by field (tests use this when every field errs at most once)."""
    return {error.field: error for error in parsed.errors}


def existing_from(pupil: ImportedPupil, **changes: object) -> ExistingPupil:
    """A register snapshot equal to an imported pupil, with some fields changed."""
    values: dict[str, object] = {
        "external_id": pupil.external_id,
        "role": "pupil",
        "given_name": pupil.given_name,
        "family_name": pupil.family_name,
        "birth_date": pupil.birth_date,
        "email": pupil.email,
        "group": pupil.group,
        "status": "active",
        "guardians": frozenset((g.email, g.name, g.relation) for g in pupil.guardians),
    }
    values.update(changes)
    return ExistingPupil(**values)  # type: ignore[arg-type]


def register_pupil(external_id: str, **changes: object) -> ExistingPupil:
    """A pupil in the register that has nothing to do with the file under test."""
    values: dict[str, object] = {
        "external_id": external_id,
        "role": "pupil",
        "given_name": "Kim",
        "family_name": "Smit",
        "birth_date": date(2011, 1, 1),
        "email": None,
        "group": None,
        "status": "active",
        "guardians": frozenset(),
    }
    values.update(changes)
    return ExistingPupil(**values)  # type: ignore[arg-type]


# --- delimiters, encodings, quoting, line endings -------------------------------------------


@pytest.mark.parametrize("delimiter", [";", ",", "\t"])
def test_delimiter_is_detected_from_the_header(delimiter: str) -> None:
    data = basic_csv(["1001", "Sanne", "Bakker", "05-03-2012"], delimiter=delimiter)
    parsed = parse_pupil_csv(data)
    assert parsed.delimiter == delimiter
    pupil = only_pupil(parsed)
    assert (pupil.external_id, pupil.given_name, pupil.family_name) == ("1001", "Sanne", "Bakker")
    assert pupil.birth_date == date(2012, 3, 5)
    assert pupil.row_number == 2


def test_delimiters_inside_quoted_header_cells_do_not_count() -> None:
    data = (
        b'Leerlingnummer,Roepnaam,Achternaam,Geboortedatum,"Opmerking; intern; niet; tonen"\n'
        b'1001,Sanne,Bakker,05-03-2012,"a; b"\n'
    )
    parsed = parse_pupil_csv(data)
    assert parsed.delimiter == ","
    assert only_pupil(parsed).family_name == "Bakker"


def test_encoding_utf8() -> None:
    parsed = parse_pupil_csv(basic_csv(["1", "Daniëlle", "Çelik", "01-01-2012"]))
    assert parsed.encoding == "utf-8"
    pupil = only_pupil(parsed)
    assert (pupil.given_name, pupil.family_name) == ("Daniëlle", "Çelik")


def test_encoding_utf8_with_bom_does_not_spoil_the_first_header() -> None:
    data = codecs.BOM_UTF8 + basic_csv(["1", "Daniëlle", "Çelik", "01-01-2012"])
    parsed = parse_pupil_csv(data)
    assert parsed.encoding == "utf-8-sig"
    assert parsed.columns["external_id"] == "Leerlingnummer"
    assert only_pupil(parsed).given_name == "Daniëlle"


def test_encoding_cp1252_fallback() -> None:
    data = basic_csv(["1", "Daniëlle", "Çelik", "01-01-2012"], encoding="cp1252")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    parsed = parse_pupil_csv(data)
    assert parsed.encoding == "cp1252"
    pupil = only_pupil(parsed)
    assert (pupil.given_name, pupil.family_name) == ("Daniëlle", "Çelik")


@pytest.mark.parametrize("byte", [b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d"])
def test_bytes_neither_utf8_nor_cp1252_are_a_file_error(byte: bytes) -> None:
    data = basic_csv(["1", "Sanne", "Bakker", "01-01-2012"]) + byte
    parsed = parse_pupil_csv(data)
    assert len(parsed.file_errors) == 1
    assert parsed.file_errors[0].startswith("undecodable")
    assert parsed.pupils == ()


def test_utf16_export_is_a_file_error_not_garbage() -> None:
    data = "\n".join(";".join(row) for row in [BASIC_HEADER]).encode("utf-16")
    parsed = parse_pupil_csv(data)
    assert parsed.file_errors[0].startswith("undecodable")


def test_quoted_fields_keep_delimiters_quotes_and_newlines() -> None:
    data = (
        b"Leerlingnummer;Roepnaam;Achternaam;Geboortedatum;Opmerking\n"
        b'1001;"Anne-Fleur";"Berg; van den";05-03-2012;"twee\nregels"\n'
        b'1002;Sean;"O""Brien";06-03-2012;\n'
    )
    parsed = parse_pupil_csv(data)
    assert parsed.errors == ()
    first, second = parsed.pupils
    assert first.family_name == "Berg; van den"
    assert second.family_name == 'O"Brien'
    # The multi-line record is one spreadsheet row, so the next pupil is on row 3.
    assert (first.row_number, second.row_number) == (2, 3)


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_line_endings_are_normalised(newline: str) -> None:
    data = basic_csv(
        ["1", "Sanne", "Bakker", "01-01-2012"],
        ["2", "Joris", "Smit", "02-01-2012"],
        newline=newline,
    )
    parsed = parse_pupil_csv(data)
    assert parsed.errors == ()
    assert [(p.external_id, p.family_name, p.row_number) for p in parsed.pupils] == [
        ("1", "Bakker", 2),
        ("2", "Smit", 3),
    ]


# --- header detection -----------------------------------------------------------------------


def test_magister_like_export() -> None:
    header = [
        "Stamnr", "Roepnaam", "Voornamen", "Tussenv.", "Achternaam", "Geb. datum", "Klas",
        "E-mail", "Naam ouder/verzorger 1", "E-mail ouder/verzorger 1",
        "Relatie ouder/verzorger 1", "Naam ouder/verzorger 2", "E-mail ouder/verzorger 2",
    ]  # fmt: skip
    row = [
        "204518", "Daan", "Daniel Johannes", "de", "Vries", "14-09-2010", "2B",
        "204518@leerling.school.nl", "M. de Vries", "m.devries@example.org", "Moeder",
        "P. de Vries", "p.devries@example.org",
    ]  # fmt: skip
    parsed = parse_pupil_csv(make_csv([header, row]))
    assert parsed.columns == {
        "external_id": "Stamnr",
        "given_name": "Roepnaam",
        "family_name": "Achternaam",
        "family_name_prefix": "Tussenv.",
        "birth_date": "Geb. datum",
        "email": "E-mail",
        "group": "Klas",
        "guardian1_name": "Naam ouder/verzorger 1",
        "guardian1_email": "E-mail ouder/verzorger 1",
        "guardian1_relation": "Relatie ouder/verzorger 1",
        "guardian2_name": "Naam ouder/verzorger 2",
        "guardian2_email": "E-mail ouder/verzorger 2",
    }
    assert only_pupil(parsed) == ImportedPupil(
        row_number=2,
        external_id="204518",
        given_name="Daan",
        family_name="de Vries",
        birth_date=date(2010, 9, 14),
        email="204518@leerling.school.nl",
        group="2B",
        guardians=(
            ImportedGuardian("M. de Vries", "m.devries@example.org", "Moeder"),
            ImportedGuardian("P. de Vries", "p.devries@example.org", None),
        ),
    )


def test_somtoday_like_export() -> None:
    header = [
        "Leerlingnummer", "Roepnaam", "Voorvoegsel", "Achternaam", "Geboortedatum",
        "Stamgroep", "E-mailadres leerling", "Verzorger 1 naam", "Verzorger 1 e-mail",
        "Verzorger 1 relatie", "Verzorger 2 naam", "Verzorger 2 e-mail", "Verzorger 2 relatie",
    ]  # fmt: skip
    row = [
        "88231", "Noor", "", "El Amrani", "2011-02-28", "H2a", "Noor.ElAmrani@Leerling.nl",
        "Fatima El Amrani", "fatima@example.org", "Moeder", "Youssef El Amrani",
        "youssef@example.org", "Vader",
    ]  # fmt: skip
    parsed = parse_pupil_csv(make_csv([header, row], delimiter=","))
    assert parsed.columns["email"] == "E-mailadres leerling"
    assert parsed.columns["group"] == "Stamgroep"
    assert parsed.columns["guardian2_relation"] == "Verzorger 2 relatie"
    pupil = only_pupil(parsed)
    assert pupil.family_name == "El Amrani"
    assert pupil.email == "noor.elamrani@leerling.nl"
    assert pupil.birth_date == date(2011, 2, 28)
    assert pupil.guardians == (
        ImportedGuardian("Fatima El Amrani", "fatima@example.org", "Moeder"),
        ImportedGuardian("Youssef El Amrani", "youssef@example.org", "Vader"),
    )


def test_parnassys_like_export() -> None:
    header = [
        "Leerlingnummer", "Voornaam", "Tussenvoegsels", "Achternaam", "Geboortedatum", "Groep",
        "Naam ouder 1", "E-mail ouder 1", "Relatie tot leerling 1", "Naam ouder 2",
        "E-mail ouder 2", "Relatie tot leerling 2", "BSN", "Geslacht",
    ]  # fmt: skip
    row = [
        "5521", "Fenna", "van der", "Meer", "3-7-2016", "Groep 4b", "Ilse van der Meer",
        "ilse@example.org", "Moeder", "", "", "", "123456782", "V",
    ]  # fmt: skip
    parsed = parse_pupil_csv(make_csv([header, row], delimiter="\t"))
    assert parsed.delimiter == "\t"
    assert parsed.columns["given_name"] == "Voornaam"
    assert parsed.columns["guardian1_relation"] == "Relatie tot leerling 1"
    assert "BSN" not in parsed.columns.values()
    pupil = only_pupil(parsed)
    assert pupil.family_name == "van der Meer"
    assert pupil.birth_date == date(2016, 7, 3)
    assert pupil.group == "Groep 4b"
    assert pupil.guardians == (ImportedGuardian("Ilse van der Meer", "ilse@example.org", "Moeder"),)


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("Leerlingnummer", "external_id"),
        ("LEERLING-NUMMER", "external_id"),
        ("leerling_nummer", "external_id"),
        ("Llnr", "external_id"),
        ("Stamnummer", "external_id"),
        ("Studentnummer", "external_id"),
        ("Pupil number", "external_id"),
        ("Student number", "external_id"),
        ("Roepnaam", "given_name"),
        ("First name", "given_name"),
        ("Given name", "given_name"),
        ("Familienaam", "family_name"),
        ("Geslachtsnaam", "family_name"),
        ("Surname", "family_name"),
        ("Last name", "family_name"),
        ("Tussenvoegsel", "family_name_prefix"),
        ("Géboorte datum", "birth_date"),
        ("Geb.datum", "birth_date"),
        ("Date of birth", "birth_date"),
        ("Emailadres", "email"),
        ("E-mail leerling", "email"),
        ("Basisgroep", "group"),
        ("Class", "group"),
        ("E-mail ouder/verzorger 1", "guardian1_email"),
        ("E-mailadres verzorger 1", "guardian1_email"),
        ("Verzorger 1 e-mail", "guardian1_email"),
        ("E-mail ouder 1", "guardian1_email"),
        ("Naam verzorger 1", "guardian1_name"),
        ("Verzorger 1 naam", "guardian1_name"),
        ("Naam ouder 1", "guardian1_name"),
        ("Relatie verzorger 1", "guardian1_relation"),
        ("Relatie tot leerling 1", "guardian1_relation"),
        ("Guardian 1 email", "guardian1_email"),
        ("Parent 2 name", "guardian2_name"),
        ("Voogd 3 e-mailadres", "guardian3_email"),
        ("Ouder/verzorger 4 - relatie", "guardian4_relation"),
    ],
)
def test_header_variants_are_recognised(header: str, field: str) -> None:
    found = detect_field(header)
    assert found is not None
    assert found[0] == field


@pytest.mark.parametrize(
    "header", ["Naam ouder 5", "E-mail ouder", "BSN", "Voornamen", "Opmerking", "Ouder 1"]
)
def test_unknown_headers_are_not_guessed(header: str) -> None:
    assert detect_field(header) is None


def test_preferred_header_wins_when_a_file_has_two_names_for_a_field() -> None:
    header = ["Leerlingnummer", "Voornaam", "Roepnaam", "Achternaam", "Geboortedatum"]
    parsed = parse_pupil_csv(make_csv([header, ["1", "Johannes", "Hans", "Kok", "01-01-2012"]]))
    assert parsed.columns["given_name"] == "Roepnaam"
    assert only_pupil(parsed).given_name == "Hans"


def test_two_headers_with_the_same_meaning_are_a_file_error() -> None:
    header = [*BASIC_HEADER, "E-mail", "Email"]
    parsed = parse_pupil_csv(make_csv([header, ["1", "Sanne", "Bakker", "01-01-2012", "", ""]]))
    assert parsed.file_errors == (
        "ambiguous_columns: Several columns could hold the same field, choose one in the column "
        "mapping: E-mail / Email",
    )
    assert parsed.pupils == ()


# --- required columns, explicit mapping, empty files ----------------------------------------


def test_missing_required_column_is_named_in_dutch() -> None:
    data = make_csv([["Leerlingnummer", "Roepnaam", "Achternaam"], ["1", "Sanne", "Bakker"]])
    parsed = parse_pupil_csv(data)
    assert parsed.file_errors == ("missing_columns: The file lacks these required columns: Geboortedatum",)
    assert parsed.pupils == ()
    assert parsed.errors == ()


def test_several_missing_columns_are_listed_in_field_order() -> None:
    data = make_csv([["Geboortedatum", "Achternaam"], ["01-01-2012", "Bakker"]])
    parsed = parse_pupil_csv(data)
    assert parsed.file_errors == (
        "missing_columns: The file lacks these required columns: Leerlingnummer, Roepnaam",
    )


def test_a_file_without_header_says_so() -> None:
    data = make_csv([["1001", "Sanne", "Bakker", "01-01-2012"], ["1002", "Joris", "Smit", "x"]])
    parsed = parse_pupil_csv(data)
    assert parsed.file_errors[0].startswith("no_header")
    assert parsed.file_errors[1] == (
        "missing_columns: The file lacks these required columns: "
        "Leerlingnummer, Roepnaam, Achternaam, Geboortedatum"
    )


@pytest.mark.parametrize("data", [b"", b"   \n\r\n  ", codecs.BOM_UTF8, b";;;\n;;\n"])
def test_an_empty_file_is_a_file_error(data: bytes) -> None:
    parsed = parse_pupil_csv(data)
    assert len(parsed.file_errors) == 1
    assert parsed.file_errors[0].startswith("empty_file")


def test_a_header_without_rows_is_a_file_error() -> None:
    parsed = parse_pupil_csv(make_csv([BASIC_HEADER, [";;;"], []]))
    assert len(parsed.file_errors) == 1
    assert parsed.file_errors[0].startswith("no_rows")
    assert parsed.columns["birth_date"] == "Geboortedatum"


def test_explicit_mapping_reads_unrecognised_headers() -> None:
    header = ["Nr", "Naam", "Fam", "Dag", "Lokaal"]
    mapping = {
        "external_id": "Nr",
        "given_name": "Naam",
        "family_name": "Fam",
        "birth_date": "Dag",
        "group": "Lokaal",
    }
    parsed = parse_pupil_csv(
        make_csv([header, ["7", "Sanne", "Bakker", "01-01-2012", "B12"]]), mapping=mapping
    )
    assert parsed.columns == mapping
    pupil = only_pupil(parsed)
    assert (pupil.external_id, pupil.group) == ("7", "B12")


def test_explicit_mapping_overrides_detection() -> None:
    header = ["Leerlingnummer", "Roepnaam", "Voornaam", "Achternaam", "Geboortedatum"]
    data = make_csv([header, ["1", "Hans", "Johannes", "Kok", "01-01-2012"]])
    parsed = parse_pupil_csv(data, mapping={"given_name": "Voornaam"})
    assert parsed.columns["given_name"] == "Voornaam"
    assert only_pupil(parsed).given_name == "Johannes"


def test_explicit_mapping_takes_a_column_away_from_detection() -> None:
    header = ["Leerlingnummer", "Roepnaam", "Achternaam", "Geboortedatum", "Klas"]
    data = make_csv([header, ["1", "Hans", "Kok", "01-01-2012", "Kok"]])
    parsed = parse_pupil_csv(data, mapping={"family_name": "Klas"})
    assert parsed.columns["family_name"] == "Klas"
    assert "group" not in parsed.columns


def test_explicit_mapping_with_an_empty_header_switches_a_column_off() -> None:
    data = make_csv([[*BASIC_HEADER, "E-mail"], ["1", "Hans", "Kok", "01-01-2012", "kapot@"]])
    parsed = parse_pupil_csv(data, mapping={"email": ""})
    assert "email" not in parsed.columns
    assert only_pupil(parsed).email is None


def test_explicit_mapping_to_an_absent_header_is_a_file_error() -> None:
    data = basic_csv(["1", "Hans", "Kok", "01-01-2012"])
    parsed = parse_pupil_csv(data, mapping={"birth_date": "Geb datum van kind"})
    assert parsed.file_errors == (
        "mapped_columns_not_found: The column mapping names columns the file does not have: "
        "Geb datum van kind",
    )
    assert parsed.pupils == ()


def test_explicit_mapping_with_an_unknown_field_is_a_file_error() -> None:
    data = basic_csv(["1", "Hans", "Kok", "01-01-2012"])
    parsed = parse_pupil_csv(data, mapping={"shoe_size": "Leerlingnummer"})
    assert parsed.file_errors == ("unknown_fields: The column mapping names unknown fields: shoe_size",)


def test_explicit_mapping_may_not_use_one_column_twice() -> None:
    data = basic_csv(["1", "Hans", "Kok", "01-01-2012"])
    mapping = {"given_name": "Roepnaam", "family_name": "Roepnaam"}
    parsed = parse_pupil_csv(data, mapping=mapping)
    assert parsed.file_errors == (
        "column_mapped_twice: The column mapping uses a column for more than one field: Roepnaam",
    )


# --- row values -----------------------------------------------------------------------------


def test_tussenvoegsel_is_put_before_the_family_name() -> None:
    header = ["Leerlingnummer", "Roepnaam", "Tussenvoegsel", "Achternaam", "Geboortedatum"]
    data = make_csv(
        [
            header,
            ["1", "Eva", "van der", "Berg", "01-01-2012"],
            ["2", "Tom", "", "Berg", "01-01-2012"],
            ["3", "Bo", "van", "", "01-01-2012"],
        ]
    )
    parsed = parse_pupil_csv(data)
    assert [p.family_name for p in parsed.pupils] == ["van der Berg", "Berg"]
    # A prefix alone is no family name.
    assert [(e.row_number, e.field, e.code) for e in parsed.errors] == [
        (4, "family_name", "required")
    ]


def test_cells_are_trimmed() -> None:
    data = basic_csv(["  1001 ", " Sanne\u00a0", "  Bakker", " 05-03-2012 "])
    pupil = only_pupil(parse_pupil_csv(data))
    assert (pupil.external_id, pupil.given_name, pupil.family_name) == ("1001", "Sanne", "Bakker")
    assert pupil.birth_date == date(2012, 3, 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("05-03-2012", date(2012, 3, 5)),
        ("5-3-2012", date(2012, 3, 5)),
        ("05/03/2012", date(2012, 3, 5)),
        ("05.03.2012", date(2012, 3, 5)),
        ("2012-03-05", date(2012, 3, 5)),
        ("29-02-2012", date(2012, 2, 29)),
    ],
)
def test_birth_date_formats(text: str, expected: date) -> None:
    assert only_pupil(parse_pupil_csv(basic_csv(["1", "A", "B", text]))).birth_date == expected


FUTURE = (date.today() + timedelta(days=400)).strftime("%d-%m-%Y")


@pytest.mark.parametrize(
    ("text", "code", "message_part"),
    [
        ("31-02-2010", "invalid_date", "does not exist"),
        ("00-01-2010", "invalid_date", "does not exist"),
        ("29-02-2011", "invalid_date", "does not exist"),
        ("05-13-2010", "invalid_date", "does not exist"),
        ("05-03-12", "invalid_date", "four-digit year"),
        ("05-03/2012", "invalid_date", "dd-mm-yyyy"),
        ("5 maart 2012", "invalid_date", "dd-mm-yyyy"),
        ("40972", "invalid_date", "dd-mm-yyyy"),
        (FUTURE, "invalid_date", "future"),
        ("01-01-1850", "invalid_date", "1900"),
        ("", "required", "required"),
    ],
)
def test_bad_birth_dates_are_row_errors(text: str, code: str, message_part: str) -> None:
    parsed = parse_pupil_csv(basic_csv(["1", "A", "B", text]))
    assert parsed.pupils == ()
    [error] = parsed.errors
    assert (error.row_number, error.external_id, error.field, error.code) == (
        2,
        "1",
        "birth_date",
        code,
    )
    assert message_part in error.message


def test_pupil_email_is_normalised_and_optional() -> None:
    header = [*BASIC_HEADER, "E-mail", "Klas"]
    data = make_csv(
        [
            header,
            ["1", "A", "B", "01-01-2012", " Sanne.Bakker@School.NL ", "3A"],
            ["2", "C", "D", "01-01-2012", "", ""],
        ]
    )
    first, second = parse_pupil_csv(data).pupils
    assert (first.email, first.group) == ("sanne.bakker@school.nl", "3A")
    assert (second.email, second.group) == (None, None)


PUPIL_EMAIL_HEADERS = [
    # Magister
    "E-mail", "E-mailadres", "E-mail leerling", "Leerling e-mail",
    # Somtoday
    "E-mailadres leerling", "Emailadres leerling", "E-mailadres school", "School e-mailadres",
    # ParnasSys
    "Emailadres", "E-mail school", "Schoolmail",
]


@pytest.mark.parametrize("header", PUPIL_EMAIL_HEADERS)
def test_pupil_email_columns_of_the_usual_exports_fill_the_pupils_own_address(header: str) -> None:
    """A pupil of 16 decides themselves: their address must come in with the usual headers."""
    data = make_csv([[*BASIC_HEADER, header, "E-mail ouder 1", "Naam ouder 1"],
                     ["1", "Ada", "Smit", "01-02-2008", "Ada.Smit@Leerling.School.nl",
                      "ouder@example.nl", "Eva Smit"]])
    parsed = parse_pupil_csv(data)
    assert parsed.columns["email"] == header
    pupil = only_pupil(parsed)
    assert pupil.email == "ada.smit@leerling.school.nl"
    assert [g.email for g in pupil.guardians] == ["ouder@example.nl"]


def test_the_pupils_own_address_wins_over_the_school_address_and_a_plain_email() -> None:
    header = [*BASIC_HEADER, "E-mail", "E-mailadres school", "E-mail leerling"]
    data = make_csv([header, ["1", "Ada", "Smit", "01-02-2008", "a@x.nl", "b@x.nl", "c@x.nl"]])
    parsed = parse_pupil_csv(data)
    assert parsed.columns["email"] == "E-mail leerling"
    assert only_pupil(parsed).email == "c@x.nl"
    school = make_csv([header[:-1], ["1", "Ada", "Smit", "01-02-2008", "a@x.nl", "b@x.nl"]])
    assert only_pupil(parse_pupil_csv(school)).email == "b@x.nl"


@pytest.mark.parametrize("address", ["sanne@", "sanne.school.nl", "sanne@@school.nl", "a b@c.nl"])
def test_broken_pupil_email_is_a_row_error(address: str) -> None:
    data = make_csv([[*BASIC_HEADER, "E-mail"], ["1", "A", "B", "01-01-2012", address]])
    parsed = parse_pupil_csv(data)
    assert parsed.pupils == ()
    [error] = parsed.errors
    assert (error.field, error.code) == ("email", "invalid_email")
    assert error.message == "E-mail address is not a valid e-mail address"


def test_overlong_group_is_a_row_error() -> None:
    data = make_csv([[*BASIC_HEADER, "Klas"], ["1", "A", "B", "01-01-2012", "x" * 41]])
    [error] = parse_pupil_csv(data).errors
    assert (error.field, error.code) == ("group", "too_long")
    assert "40" in error.message


GUARDIAN_HEADER = [
    *BASIC_HEADER,
    "Naam ouder 1",
    "E-mail ouder 1",
    "Relatie ouder 1",
    "Naam ouder 2",
    "E-mail ouder 2",
    "Relatie ouder 2",
]


def guardian_csv(*guardian_cells: list[str]) -> bytes:
    """A file with one row per list of six guardian cells (two guardians)."""
    rows = [
        [str(n), "Kind", "Jansen", "01-01-2012", *cells]
        for n, cells in enumerate(guardian_cells, 1)
    ]
    return make_csv([GUARDIAN_HEADER, *rows])


def test_two_numbered_guardians_are_read() -> None:
    data = guardian_csv(
        ["An Jansen", "AN@example.org", "Moeder", "Bas Jansen", "bas@example.org", ""]
    )
    pupil = only_pupil(parse_pupil_csv(data))
    assert pupil.guardians == (
        ImportedGuardian("An Jansen", "an@example.org", "Moeder"),
        ImportedGuardian("Bas Jansen", "bas@example.org", None),
    )


def test_only_the_second_guardian_filled_in() -> None:
    data = guardian_csv(["", "", "", "Bas Jansen", "bas@example.org", "Vader"])
    pupil = only_pupil(parse_pupil_csv(data))
    assert pupil.guardians == (ImportedGuardian("Bas Jansen", "bas@example.org", "Vader"),)


def test_guardian_without_email_is_a_row_error() -> None:
    data = guardian_csv(["An Jansen", "an@example.org", "", "Bas Jansen", "", "Vader"])
    parsed = parse_pupil_csv(data)
    assert parsed.pupils == ()
    [error] = parsed.errors
    assert (error.field, error.code) == ("guardian2_email", "guardian_without_email")
    assert error.message == "Guardian 2 has no e-mail address"


def test_guardian_with_an_address_but_no_name_is_imported_without_an_invented_name() -> None:
    data = guardian_csv(["", "an@example.org", "Moeder", "", "", ""])
    pupil = only_pupil(parse_pupil_csv(data))
    assert pupil.guardians == (ImportedGuardian(None, "an@example.org", "Moeder"),)


def test_guardian_without_name_and_with_broken_email_is_an_email_error() -> None:
    data = guardian_csv(["", "an@", "", "", "", ""])
    [error] = parse_pupil_csv(data).errors
    assert (error.field, error.code) == ("guardian1_email", "invalid_email")


@pytest.mark.parametrize(
    "header",
    ["E-mail ouder/verzorger 1", "E-mailadres verzorger 1", "Verzorger 1 e-mail", "Email ouder 1"],
)
def test_guardian_email_columns_without_any_name_column_are_imported(header: str) -> None:
    """An export with only the guardians' addresses: every row is imported, nobody is refused."""
    data = make_csv([
        [*BASIC_HEADER, header],
        ["1", "Ada", "Smit", "01-02-2012", "Sanne@Example.nl"],
        ["2", "Bas", "Kok", "03-04-2013", ""],
    ])
    parsed = parse_pupil_csv(data)
    assert (parsed.file_errors, parsed.errors) == ((), ())
    assert parsed.columns["guardian1_email"] == header
    assert [p.guardians for p in parsed.pupils] == [
        (ImportedGuardian(None, "sanne@example.nl", None),), ()]


def test_a_nameless_guardian_takes_the_name_a_sibling_row_gives() -> None:
    data = (
        b"Leerlingnummer;Roepnaam;Achternaam;Geboortedatum;E-mail ouder 1;Naam ouder 1\n"
        b"1;Ada;Smit;01-02-2012;sanne@example.nl;\n"
        b"2;Bas;Smit;03-04-2014;sanne@example.nl;Sanne Smit\n"
    )
    parsed = parse_pupil_csv(data)
    assert [p.guardians[0].name for p in parsed.pupils] == ["Sanne Smit", "Sanne Smit"]


def test_a_file_without_guardian_names_keeps_the_names_the_register_has() -> None:
    """Importing addresses only is no change for a guardian the school named by hand."""
    data = make_csv([[*BASIC_HEADER, "E-mail ouder 1"],
                     ["1", "Ada", "Smit", "01-02-2012", "sanne@example.nl"]])
    pupil = only_pupil(parse_pupil_csv(data))
    named = existing_from(pupil, guardians=frozenset({("sanne@example.nl", "Sanne Smit", None)}))
    assert plan_import(parse_pupil_csv(data), {"1": named}).unchanged == (pupil,)
    other = existing_from(pupil, guardians=frozenset({("piet@example.nl", "Piet Smit", None)}))
    [update] = plan_import(parse_pupil_csv(data), {"1": other}).update
    assert update.fields == ("guardians",)


def test_broken_guardian_email_names_the_guardian_field() -> None:
    data = guardian_csv(["An Jansen", "an@example.org", "", "Bas Jansen", "bas@", ""])
    [error] = parse_pupil_csv(data).errors
    assert (error.field, error.code) == ("guardian2_email", "invalid_email")
    assert error.message == "Guardian 2 e-mail address is not a valid e-mail address"


def test_the_same_guardian_twice_in_a_row_is_kept_once() -> None:
    data = guardian_csv(
        ["An Jansen", "an@example.org", "Moeder", "A. Jansen", "AN@Example.org", ""]
    )
    pupil = only_pupil(parse_pupil_csv(data))
    assert pupil.guardians == (ImportedGuardian("An Jansen", "an@example.org", "Moeder"),)


def test_a_row_reports_all_its_problems_and_later_rows_are_still_read() -> None:
    header = [*BASIC_HEADER, "E-mail", "Naam ouder 1", "E-mail ouder 1"]
    data = make_csv(
        [
            header,
            ["", "", "Bakker", "31-02-2010", "kapot", "Ouder", ""],
            ["2", "Joris", "Smit", "01-01-2012", "", "", ""],
        ]
    )
    parsed = parse_pupil_csv(data)
    assert [(e.row_number, e.external_id, e.field, e.code) for e in parsed.errors] == [
        (2, None, "external_id", "required"),
        (2, None, "given_name", "required"),
        (2, None, "birth_date", "invalid_date"),
        (2, None, "email", "invalid_email"),
        (2, None, "guardian1_email", "guardian_without_email"),
    ]
    assert all(e.message for e in parsed.errors)
    assert [p.external_id for p in parsed.pupils] == ["2"]


def test_duplicate_external_ids_reject_every_later_row() -> None:
    data = basic_csv(
        ["1001", "Sanne", "Bakker", "01-01-2012"],
        ["1002", "Joris", "Smit", "01-01-2012"],
        ["1001", "Sanne", "Bakker", "01-01-2012"],
        ["1001", "Iemand", "Anders", "bad"],
    )
    parsed = parse_pupil_csv(data)
    assert [(p.external_id, p.row_number) for p in parsed.pupils] == [("1001", 2), ("1002", 3)]
    assert [(e.row_number, e.external_id, e.field, e.code) for e in parsed.errors] == [
        (4, "1001", "external_id", "duplicate_external_id"),
        (5, "1001", "external_id", "duplicate_external_id"),
        (5, "1001", "birth_date", "invalid_date"),
    ]


def test_empty_rows_are_skipped_and_row_numbers_stay_true() -> None:
    data = basic_csv(
        ["1", "Sanne", "Bakker", "01-01-2012"],
        [],
        ["", " ", "", ""],
        ["2", "Joris", "Smit", "01-01-2012"],
    )
    parsed = parse_pupil_csv(data)
    assert parsed.errors == ()
    assert [(p.external_id, p.row_number) for p in parsed.pupils] == [("1", 2), ("2", 5)]


def test_blank_lines_before_the_header_count_as_rows() -> None:
    data = b"\n\n" + basic_csv(["1", "Sanne", "Bakker", "01-01-2012"])
    assert only_pupil(parse_pupil_csv(data)).row_number == 4


def test_a_row_with_more_cells_than_the_header_is_rejected() -> None:
    data = basic_csv(
        ["1", "Sanne", "Bakker", "van", "01-01-2012"],
        ["2", "Joris", "Smit", "01-01-2012"],
    )
    parsed = parse_pupil_csv(data)
    assert [p.external_id for p in parsed.pupils] == ["2"]
    [error] = parsed.errors
    assert (error.row_number, error.external_id, error.field, error.code) == (
        2,
        "1",
        None,
        "too_many_cells",
    )
    assert "5" in error.message and "4" in error.message


def test_a_short_row_is_read_with_the_missing_cells_blank() -> None:
    data = make_csv([[*BASIC_HEADER, "Klas"], ["1", "Sanne", "Bakker", "01-01-2012"], ["2", "Jo"]])
    parsed = parse_pupil_csv(data)
    assert pupil_numbered(parsed, "1").group is None
    assert {(e.row_number, e.field, e.code) for e in parsed.errors} == {
        (3, "family_name", "required"),
        (3, "birth_date", "required"),
    }


def test_a_large_file_parses_completely() -> None:
    header = [*BASIC_HEADER, "Klas", "E-mail", "Naam ouder 1", "E-mail ouder 1"]
    rows = [
        [str(100000 + n), f"Kind{n}", "Jansen", "01-02-2012", "7A", f"k{n}@school.nl",
         f"Ouder {n}", f"ouder{n}@example.org"]
        for n in range(5000)
    ]  # fmt: skip
    parsed = parse_pupil_csv(make_csv([header, *rows]))
    assert parsed.errors == ()
    assert len(parsed.pupils) == 5000
    assert parsed.pupils[-1].row_number == 5001


# --- planning -------------------------------------------------------------------------------


def planning_file() -> ParsedFile:
    """Three good pupils with guardians, used by the planning tests."""
    data = guardian_csv(
        ["An Jansen", "an@example.org", "Moeder", "", "", ""],
        ["Bas Smit", "bas@example.org", "Vader", "Cor Smit", "cor@example.org", ""],
        ["Dirk de Wit", "dirk@example.org", "", "", "", ""],
    )
    parsed = parse_pupil_csv(data)
    assert parsed.errors == () and len(parsed.pupils) == 3
    return parsed


def test_plan_against_an_empty_register_creates_everyone() -> None:
    parsed = planning_file()
    plan = plan_import(parsed, {})
    assert plan.create == parsed.pupils
    assert (plan.update, plan.unchanged, plan.rejected, plan.missing) == ((), (), (), ())
    assert plan.applicable


def test_replanning_a_file_against_a_matching_register_changes_nothing() -> None:
    parsed = planning_file()
    register = {p.external_id: existing_from(p) for p in plan_import(parsed, {}).create}
    plan = plan_import(parsed, register)
    assert plan.unchanged == parsed.pupils
    assert (plan.create, plan.update, plan.rejected, plan.missing) == ((), (), (), ())
    assert plan.applicable


def test_plan_lists_the_changed_fields_sorted() -> None:
    parsed = planning_file()
    first, second, third = parsed.pupils
    register = {
        "1": existing_from(first, group="8B", given_name="Anna"),
        "2": existing_from(second, guardians=frozenset({("bas@example.org", "Bas Smit", None)})),
        "3": existing_from(third, status="left", family_name="Wit", birth_date=date(2012, 1, 2)),
    }
    plan = plan_import(parsed, register)
    assert plan.update == (
        PlannedUpdate(first, ("given_name", "group")),
        PlannedUpdate(second, ("guardians",)),
        PlannedUpdate(third, ("birth_date", "family_name", "status")),
    )
    assert plan.create == () and plan.unchanged == ()
    assert plan.applicable


def test_a_changed_guardian_relation_is_an_update() -> None:
    parsed = planning_file()
    first = parsed.pupils[0]
    changed = frozenset({("an@example.org", "An Jansen", "Voogd")})
    plan = plan_import(parsed, {"1": existing_from(first, guardians=changed)})
    assert plan.update == (PlannedUpdate(first, ("guardians",)),)


def test_plan_reports_missing_active_pupils_but_never_staff_or_leavers() -> None:
    parsed = planning_file()
    register = {
        "1": existing_from(parsed.pupils[0]),
        "900": register_pupil("900"),
        "050": register_pupil("050"),
        "901": register_pupil("901", status="left"),
        "902": register_pupil("902", role="staff"),
    }
    plan = plan_import(parsed, register)
    assert plan.missing == ("050", "900")
    assert [p.external_id for p in plan.create] == ["2", "3"]
    assert plan.applicable


def test_a_number_that_belongs_to_staff_is_rejected() -> None:
    parsed = planning_file()
    register = {"2": register_pupil("2", role="staff", given_name="Meester", guardians=frozenset())}
    plan = plan_import(parsed, register)
    assert [p.external_id for p in plan.create] == ["1", "3"]
    [error] = plan.rejected
    assert (error.row_number, error.external_id, error.field, error.code) == (
        3,
        "2",
        "external_id",
        "external_id_is_staff",
    )
    assert plan.missing == ()
    assert not plan.applicable


def test_rejected_rows_make_the_plan_inapplicable_and_are_not_missing() -> None:
    data = basic_csv(["1", "Sanne", "Bakker", "01-01-2012"], ["2", "Joris", "Smit", "31-02-2012"])
    parsed = parse_pupil_csv(data)
    register = {"2": register_pupil("2"), "3": register_pupil("3")}
    plan = plan_import(parsed, register)
    assert [e.row_number for e in plan.rejected] == [3]
    assert plan.rejected == parsed.errors
    assert [p.external_id for p in plan.create] == ["1"]
    assert plan.missing == ("3",)
    assert not plan.applicable


def test_rejections_from_file_and_register_are_in_row_order() -> None:
    data = basic_csv(
        ["1", "Sanne", "Bakker", "01-01-2012"],
        ["2", "Joris", "Smit", "bad"],
        ["3", "Kim", "Kok", "01-01-2012"],
    )
    register = {"1": register_pupil("1", role="staff"), "3": register_pupil("3", role="staff")}
    plan = plan_import(parse_pupil_csv(data), register)
    assert [(e.row_number, e.code) for e in plan.rejected] == [
        (2, "external_id_is_staff"),
        (3, "invalid_date"),
        (4, "external_id_is_staff"),
    ]


def test_file_errors_carry_over_and_make_the_plan_inapplicable() -> None:
    parsed = parse_pupil_csv(make_csv([["Leerlingnummer"], ["1"]]))
    plan = plan_import(parsed, {"1": register_pupil("1"), "2": register_pupil("2")})
    assert plan.file_errors == parsed.file_errors
    assert plan.file_errors[0].startswith("missing_columns")
    # An unreadable file says nothing about who left the school.
    assert plan.missing == ()
    assert not plan.applicable


def test_applicable_is_all_or_nothing() -> None:
    empty = ImportPlan(create=(), update=(), unchanged=(), rejected=(), file_errors=(), missing=())
    assert empty.applicable
    error = RowError(2, "1", "email", "invalid_email", "E-mail address is not valid")
    assert not ImportPlan((), (), (), (error,), (), ()).applicable
    assert not ImportPlan((), (), (), (), ("empty_file",), ()).applicable
    assert ImportPlan((), (), (), (), (), ("1", "2")).applicable


def test_a_shared_guardian_keeps_the_name_of_their_first_row() -> None:
    """Siblings' rows that spell a guardian differently give one name, so re-imports are stable."""
    data = (
        b"Leerlingnummer;Roepnaam;Achternaam;Geboortedatum;E-mail ouder 1;Naam ouder 1\n"
        b"1;Ada;Smit;01-02-2012;sanne@example.nl;Sanne Smit\n"
        b"2;Bas;Smit;03-04-2014;sanne@example.nl;S. Smit\n"
    )
    parsed = parse_pupil_csv(data)
    assert [p.guardians[0].name for p in parsed.pupils] == ["Sanne Smit", "Sanne Smit"]
    existing = {
        p.external_id: ExistingPupil(
            external_id=p.external_id, role="pupil", given_name=p.given_name,
            family_name=p.family_name, birth_date=p.birth_date, email=p.email, group=p.group,
            status="active", guardians=guardian_set(p))
        for p in parsed.pupils
    }
    assert len(plan_import(parse_pupil_csv(data), existing).unchanged) == 2
