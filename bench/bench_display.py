"""Benchmark: a photo as the pages show it, from the stored display copy against remaking it per view.

Before issue 12 every `GET /media/<id>/display` decoded and shrank the original inside a database
transaction; now the copy is made once (at the end of the analysis) and every later view reads it.
The baseline, measured in the same run, is what each view used to cost: decode, shrink and encode
the 12-megapixel original. Also reported: making the copy once (JPEG decoded at a reduced scale).
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import best_of, report
from consent_registry import create_app
from consent_registry.db import db
from consent_registry.media.display import DISPLAY_MAX_SIDE, _shrink, ensure_display
from consent_registry.media.models import Media
from consent_registry.storage import get_storage

VIEWS = 20


def _photo(width: int = 4000, height: int = 3000) -> bytes:
    """A 12 MP JPEG with texture (noise over gradients), like a phone photo in size and entropy."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    pixels = np.clip(ramp * 0.6 + rng.normal(80, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _before(data: bytes) -> None:
    """What one view cost before: the whole original decoded, shrunk and encoded again."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        small = _shrink(img, DISPLAY_MAX_SIDE)
        small.save(io.BytesIO(), format="JPEG", quality=85)


def run() -> None:
    """Print the ratios."""
    data = _photo()
    with tempfile.TemporaryDirectory(prefix="bench-display-") as folder_name:
        folder = Path(folder_name)
        app = create_app({"DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
                          "UPLOAD_DIR": str(folder / "uploads")},
                         environ={"CONSENT_REGISTRY_INSTANCE_PATH": str(folder / "instance")})
        with app.app_context():
            from flask_migrate import upgrade

            upgrade()
            storage = get_storage()
            media = Media(kind="photo", status="ready", sha256=hashlib.sha256(data).hexdigest(),
                          storage_key=storage.put(data, prefix="media"), content_type="image/jpeg",
                          size_bytes=len(data), width=4000, height=3000)
            db.session.add(media)
            db.session.commit()
            media_id = media.id

            made = best_of(lambda: _make_once(media_id), repeat=3)
            before = best_of(lambda: _before(data), repeat=3)
            key = ensure_display(media_id)
            cached = best_of(lambda: [storage.get(ensure_display(media_id)) for _ in range(VIEWS)],
                             repeat=3) / VIEWS
            size = len(storage.get(key))
            db.engine.dispose()
    report("display before: remade on every view", before, cached,
           "a view from the stored copy (now)")
    report("display: making the copy once", made, before,
           "decode+shrink+encode the 12 MP original per view (before)")
    print(f"    seconds: view {cached:.4f}, made once {made:.3f}, before {before:.3f} per view; "
          f"copy {size // 1024} KB of {len(data) // 1024} KB")


def _make_once(media_id: int) -> None:
    """Forget the stored copy and make it again, as the first look (or the analysis) does."""
    db.session.execute(Media.__table__.update().where(Media.id == media_id)
                       .values(display_key=None))
    db.session.commit()
    ensure_display(media_id)
