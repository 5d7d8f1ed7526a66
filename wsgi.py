"""WSGI entry point: `app = create_app()`, configured from CONSENT_REGISTRY_* variables."""

import os

from consent_registry import create_app, jobs

app = create_app()

# `make run` asks for the embedded job consumer inside the web process, so one command serves
# everything; other `flask` commands load this file too and must not start one.
if os.environ.get("CONSENT_REGISTRY_EMBEDDED_WORKER") == "1" and app.config["JOBS"] == "embedded":
    jobs.start_embedded_worker(app)
