"""The data protection officer's pages and the GDPR duties: audit, files, proof, exports, erasure."""

from flask import Blueprint

bp = Blueprint("dpo", __name__, url_prefix="/dpo")
