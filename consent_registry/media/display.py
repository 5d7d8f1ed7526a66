"""The photo shown on the pages: made once, stored, and never made inside a transaction.

A display rendition is the photo turned upright, at most DISPLAY_MAX_SIDE pixels a side, without
its metadata (no GPS, no camera serial), as JPEG. The analysis job makes it when a photo's
analysis ends; the display route makes it on first request for items analysed before this
existed. Either way it is rendered outside any database transaction (on SQLite a transaction
holds the write lock: a 100-megapixel PNG took 17-19 s to shrink, and every writer meanwhile
failed with "database is locked"), stored under the prefix "display", and its key is saved with a
conditional update, so two makers at once keep one and delete the other's copy.

Decoding has a pixel budget. A JPEG decodes straight at a reduced scale (`draft`), so even the
largest is cheap; other formats decode whole, at about 20 bytes a pixel at the peak (decoded
RGBA, the upright copy and the thumbnail's reductions; 100 MP took 1.2-2 GB), so beyond the
budget the rendition is refused. The budget is DISPLAY_MAX_DECODE_PIXELS when set, otherwise what
a quarter of the machine's memory holds at that cost, never more than MAX_IMAGE_PIXELS. One
rendition is made at a time per process, so several large photos at once cannot add up.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import current_app
from PIL import Image, ImageOps

from ..db import db
from ..storage import StorageKeyError, get_storage
from .models import Media

log = logging.getLogger(__name__)

DISPLAY_MAX_SIDE = 1600
PREFIX = "display"
BYTES_PER_PIXEL = 20  # peak memory per decoded pixel of a non-JPEG photo (see the docstring)
MEMORY_SHARE = 4  # one rendition may use at most a quarter of the machine's memory
FALLBACK_BUDGET = 50_000_000  # pixels, when the machine's memory cannot be read

# One rendition at a time per process: memory stays within one budget however many ask.
_render_lock = threading.Lock()


class DisplayTooLarge(ValueError):
    """The photo needs more pixels decoded than the budget allows; no rendition is made."""


class DisplayUnavailable(LookupError):
    """The item is gone, is not a photo, or its stored file is missing."""


def machine_memory() -> int | None:
    """The machine's physical memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def decode_budget(config: Mapping[str, Any]) -> int:
    """The most pixels a display rendition may decode: the setting, or what fits the machine."""
    if configured := config.get("DISPLAY_MAX_DECODE_PIXELS"):
        return int(configured)
    memory = machine_memory()
    fits = memory // MEMORY_SHARE // BYTES_PER_PIXEL if memory else FALLBACK_BUDGET
    return min(fits, int(config["MAX_IMAGE_PIXELS"]))


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """The picture turned upright and made at most max_side pixels a side (the slow step)."""
    upright = ImageOps.exif_transpose(image)
    upright.thumbnail((max_side, max_side))
    return upright


def display_rendition(data: bytes, *, max_pixels: int, max_side: int = DISPLAY_MAX_SIDE) -> bytes:
    """A photo as shown on the pages: upright, at most max_side pixels, no metadata, JPEG.

    Raises DisplayTooLarge when more than max_pixels would have to be decoded.
    """
    with Image.open(io.BytesIO(data)) as img:
        scale = min(1.0, max_side / max(img.size))
        # JPEG decodes straight at the smallest scale (1/2 to 1/8) still at least the size shown.
        img.draft("RGB", (math.ceil(img.width * scale), math.ceil(img.height * scale)))
        width, height = img.size  # after draft: what will really be decoded
        if width * height > max_pixels:
            raise DisplayTooLarge(f"{width}x{height} exceeds the display budget of {max_pixels} pixels")
        upright = _shrink(img, max_side)
        if upright.mode != "RGB":
            flat = Image.new("RGB", upright.size, (255, 255, 255))
            rgba = upright.convert("RGBA")
            flat.paste(rgba, mask=rgba.getchannel("A"))
            upright = flat
        out = io.BytesIO()
        upright.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _keys(media_id: int) -> tuple[str, str | None] | None:
    """The item's original and display keys when it is a photo, read and the transaction ended."""
    row = db.session.execute(
        sa.select(Media.storage_key, Media.display_key)
        .where(Media.id == media_id, Media.kind == "photo")).one_or_none()
    db.session.commit()
    return None if row is None else (row[0], row[1])


def _render_and_store(storage_key: str) -> str:
    """Render the stored original and store the rendition; its new key. No transaction is open."""
    storage = get_storage()
    data = storage.get(storage_key)
    rendered = display_rendition(data, max_pixels=decode_budget(current_app.config))
    return storage.put(rendered, prefix=PREFIX)


def ensure_display(media_id: int) -> str:
    """The storage key of the photo's display rendition, made and stored once when missing.

    Ends the caller's transaction first and returns with none open. Raises DisplayUnavailable or
    DisplayTooLarge when there is nothing to show.
    """
    keys = _keys(media_id)
    if keys is None:
        raise DisplayUnavailable(f"media {media_id} is not a stored photo")
    if keys[1]:
        return keys[1]
    with _render_lock:
        keys = _keys(media_id)  # another thread may have made it while this one waited
        if keys is None:
            raise DisplayUnavailable(f"media {media_id} is gone")
        if keys[1]:
            return keys[1]
        try:
            made = _render_and_store(keys[0])
        except StorageKeyError:
            raise DisplayUnavailable(f"media {media_id} has no stored file") from None
    saved = db.session.execute(
        sa.update(Media).where(Media.id == media_id, Media.display_key.is_(None))
        .values(display_key=made)).rowcount
    db.session.commit()
    if saved:
        return made
    get_storage().delete(made)  # another process saved its copy first, or the item went
    keys = _keys(media_id)
    if keys is None or not keys[1]:
        raise DisplayUnavailable(f"media {media_id} is gone")
    return keys[1]


def prepare_display(media_id: int) -> None:
    """Make the display rendition ahead of the first look (the analysis job); never raises.

    The pages would make it anyway: a failure here is logged and left to them.
    """
    try:
        ensure_display(media_id)
    except Exception:  # a display copy is a convenience; the analysis' outcome stands
        db.session.rollback()
        log.warning("no display rendition made for media %s", media_id, exc_info=True)
