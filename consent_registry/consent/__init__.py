"""Consent records, effective-consent rules and consent requests (built in the consent issue)."""
