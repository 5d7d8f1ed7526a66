"""Staff see the version that will be published: `GET /media/<id>/rendition`.

Photos come back as a JPEG shown in the browser, videos as an MP4 (played inline, or saved),
sound recordings as an M4A re-encoded without tags. The rendition is made (or reused) by
`publishable_rendition`; making a video's takes about a third of its length on this machine,
so the first look at a long video waits for it (later looks reuse the stored file).
"""

from __future__ import annotations

import logging

from flask import abort, render_template, request
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from ..auth.access import allow
from ..media.views import ORIGINAL_VIEWERS, bp, media_or_404
from ..storage import StorageKeyError, get_storage
from .renditions import EXTENSIONS, RenditionError, publishable_rendition

log = logging.getLogger(__name__)
RENDITION_VIEWERS = ORIGINAL_VIEWERS  # admin, communications (they publish), dpo (reads all)


@bp.get("/<int:media_id>/rendition")
@allow(*RENDITION_VIEWERS)
def rendition(media_id: int) -> Response | tuple[str, int]:
    """The cleared rendition: blurred where staff chose `blur`, no metadata, re-encoded."""
    media = media_or_404(media_id)
    extension = EXTENSIONS.get(media.kind, "bin")  # read now: the rendition ends the transaction
    try:
        made = publishable_rendition(media)
    except RenditionError as exc:
        log.warning("no rendition for media %s: %s", media_id, exc)
        return render_template("publishing/no_rendition.html", media_id=media_id), 409
    except StorageKeyError:
        log.error("media %s has no stored file", media_id)
        abort(404)
    try:
        handle = get_storage().open(made.key)
    except StorageKeyError:
        abort(404)
    try:
        response = Response(wrap_file(request.environ, handle), mimetype=made.content_type,
                            direct_passthrough=True)
        response.content_length = made.size
        filename = f"media-{media_id}-published.{extension}"
        disposition = "inline" if request.args.get("download") is None else "attachment"
        response.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
        response.headers["Cache-Control"] = "private, no-cache"
        response.set_etag(made.sha256)
        return response.make_conditional(request.environ, accept_ranges=True,
                                         complete_length=made.size)
    except BaseException:
        handle.close()
        raise
