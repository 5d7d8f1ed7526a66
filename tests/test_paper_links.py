"""The short answer links printed on paper forms: round trip, typing slips, tampering, expiry."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask

from consent_registry.consent.paper_links import (
    ALPHABET,
    EPOCH,
    PaperLinkError,
    _decode,
    paper_token,
    recipient_id_from_paper,
)

TODAY = date(2026, 12, 6)


@pytest.fixture(autouse=True)
def keyed() -> Iterator[None]:
    """An app context with a secret key (the only thing the tokens need)."""
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "a test key that is long enough to mean something"
    with app.app_context():
        yield


def read(token: str, today: date = TODAY, days: int = 14) -> int:
    """The recipient id in a token."""
    return recipient_id_from_paper(token, today=today, days=days)


@pytest.mark.parametrize("recipient_id", [1, 2, 77, 65_536, 2**31 - 1])
def test_round_trip(recipient_id: int) -> None:
    token = paper_token(recipient_id, today=TODAY)
    assert len(token) == 29 and token.count("-") == 5
    assert set(token.replace("-", "")) <= set(ALPHABET)
    assert read(token) == recipient_id


def test_typing_slips_that_cannot_be_ambiguous_are_forgiven() -> None:
    """Lower case, no dashes, spaces, and O, I and L for 0, 1 and 1 read the same token."""
    token = paper_token(4242, today=TODAY)
    plain = token.replace("-", "")
    assert read(token.lower()) == read(plain) == read(" ".join(token.split("-"))) == 4242
    slipped = plain.replace("0", "O").replace("1", "l")
    assert read(slipped) == 4242


def test_every_changed_character_is_refused() -> None:
    plain = paper_token(4242, today=TODAY).replace("-", "")
    for position, original in enumerate(plain):
        other = ALPHABET[(ALPHABET.index(original) + 1) % len(ALPHABET)]
        with pytest.raises(PaperLinkError) as caught:
            read(plain[:position] + other + plain[position + 1:])
        assert not caught.value.expired


@pytest.mark.parametrize("token", ["", "ABCD", "ABCD-EFGH-JKMN-PQRS-TVWX-YZ0", "U" * 24, "*" * 24,
                                   "0" * 25])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(PaperLinkError) as caught:
        read(token)
    assert not caught.value.expired


def test_a_token_expires_after_the_link_days() -> None:
    token = paper_token(9, today=TODAY)
    assert read(token, today=TODAY + timedelta(days=14)) == 9
    with pytest.raises(PaperLinkError) as caught:
        read(token, today=TODAY + timedelta(days=15))
    assert caught.value.expired


def test_another_secret_key_makes_the_token_worthless() -> None:
    token = paper_token(9, today=TODAY)
    app = Flask("other")
    app.config["SECRET_KEY"] = "another school's key, just as long as the first one"
    with app.app_context(), pytest.raises(PaperLinkError):
        read(token)


def test_the_token_reveals_neither_the_id_nor_the_day() -> None:
    """Without the key the bytes are noise: the plain id and day appear nowhere in them."""
    for recipient_id in (1, 2, 3, 1000):
        raw = _decode(paper_token(recipient_id, today=TODAY).replace("-", ""))
        plain = struct.pack(">IH", recipient_id, (TODAY - EPOCH).days)
        assert plain not in raw and plain[:4] not in raw
    tokens = {paper_token(i, today=TODAY) for i in range(1, 2001)}
    assert len(tokens) == 2000
