"""Short answer links for printed forms: typed by hand, so short, case-blind and unambiguous.

An e-mailed answer link carries a 40-character itsdangerous token in mixed case with `-` and `_`;
nobody types that from paper without a mistake. A paper token carries the same thing (a recipient
id, signed, with the day it was made, so it expires like the e-mail's) in 24 characters of
Crockford's base32 (no I, L, O or U; read case-blind, O as 0 and I or L as 1), in groups of four.

It reveals nothing by itself, not even the id: the 6 bytes of id and day are XOR-ed with a keyed
stream derived from the 9-byte MAC over them (a synthetic-IV construction), so only the server can
read them back, and any change to any character fails the MAC (72 bits; the public pages are also
rate-limited).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from datetime import date

from flask import current_app

PAPER_SALT = b"consent-paper-answer"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUE = {ch: n for n, ch in enumerate(ALPHABET)} | {"O": 0, "I": 1, "L": 1}
EPOCH = date(2020, 1, 1)
_BODY, _MAC = 6, 9  # bytes: id (4) and day (2); the MAC
LENGTH = (_BODY + _MAC) * 8 // 5  # 24 characters
GROUP = 4


class PaperLinkError(Exception):
    """A paper token that is malformed or altered (`expired` False), or too old (True)."""

    def __init__(self, *, expired: bool) -> None:
        """Remember whether the token was only too old."""
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def _key(purpose: bytes) -> bytes:
    """A key for one purpose, derived from the secret key (as itsdangerous derives its own)."""
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, PAPER_SALT + b"/" + purpose, hashlib.sha256).digest()


def _mac(body: bytes) -> bytes:
    """The truncated MAC of the plain body."""
    return hmac.new(_key(b"mac"), body, hashlib.sha256).digest()[:_MAC]


def _stream(mac: bytes) -> bytes:
    """The keystream that hides the body, derived from its MAC."""
    return hmac.new(_key(b"hide"), mac, hashlib.sha256).digest()[:_BODY]


def _xor(left: bytes, right: bytes) -> bytes:
    """Byte-wise exclusive or of two equally long strings."""
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _encode(raw: bytes) -> str:
    """Bytes as base32 characters (the length is a multiple of 5 bits)."""
    number, bits = int.from_bytes(raw, "big"), len(raw) * 8
    return "".join(ALPHABET[(number >> shift) & 31] for shift in range(bits - 5, -1, -5))


def _decode(text: str) -> bytes:
    """Base32 characters as bytes; PaperLinkError when a character is not one."""
    number = 0
    for ch in text:
        if ch not in _VALUE:
            raise PaperLinkError(expired=False)
        number = number << 5 | _VALUE[ch]
    return number.to_bytes(len(text) * 5 // 8, "big")


def paper_token(recipient_id: int, *, today: date) -> str:
    """The short token of a recipient's answer link on a form printed today."""
    body = struct.pack(">IH", recipient_id, (today - EPOCH).days)
    mac = _mac(body)
    text = _encode(_xor(body, _stream(mac)) + mac)
    return "-".join(text[i:i + GROUP] for i in range(0, LENGTH, GROUP))


def canonical_paper_token(token: str) -> str:
    """The one spelling of a typed paper token: no dashes or spaces, upper case, O as 0, I/L as 1."""
    text = token.replace("-", "").replace(" ", "").upper()
    return text.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))


def looks_like_paper_token(token: str) -> bool:
    """Whether a token is in the paper form (an e-mail's token has dots)."""
    return "." not in token


def recipient_id_from_paper(token: str, *, today: date, days: int) -> int:
    """The recipient a paper token was made for; PaperLinkError when altered or older than `days`."""
    text = canonical_paper_token(token)
    if len(text) != LENGTH:
        raise PaperLinkError(expired=False)
    raw = _decode(text)
    hidden, mac = raw[:_BODY], raw[_BODY:]
    body = _xor(hidden, _stream(mac))
    if not hmac.compare_digest(_mac(body), mac):
        raise PaperLinkError(expired=False)
    recipient_id, day = struct.unpack(">IH", body)
    if (today - EPOCH).days - day > days:
        raise PaperLinkError(expired=True)
    return recipient_id
