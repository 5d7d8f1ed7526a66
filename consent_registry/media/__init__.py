"""Uploaded media, the people found in it, and tagging (built in the media issue)."""
