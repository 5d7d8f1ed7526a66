"""WSGI entry point: `app = create_app()`, configured from CONSENT_REGISTRY_* variables."""

from consent_registry import create_app

app = create_app()
