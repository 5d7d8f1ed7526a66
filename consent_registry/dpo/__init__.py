"""The data protection officer's pages and the GDPR duties: audit, files, proof, exports, erasure."""

from flask import Blueprint

bp = Blueprint("dpo", __name__, url_prefix="/dpo")

# The pages register on import (they need `bp` above).
from . import (  # noqa: E402,F401
    audit_views,  # audit browser, exports, verification
    erasure_views,  # erasure page, retention job
    export_views,  # subject-access exports
    file_views,  # a person's file and a publication's proof
    processing_views,  # record of processing, index
)
