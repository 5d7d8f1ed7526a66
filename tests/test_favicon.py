"""The site has an icon, linked from every page and served without a login."""

from __future__ import annotations

from flask import Flask


def test_the_favicon_is_served_without_login_and_linked_from_the_pages(app: Flask, client) -> None:
    """/favicon.ico (where browsers look) and the SVG answer 200 to anyone; pages link both."""
    ico = client.get("/favicon.ico")
    assert ico.status_code == 200 and ico.data[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert ico.mimetype == "image/vnd.microsoft.icon"
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and b"<svg" in svg.data
    login = client.get("/login").get_data(as_text=True)
    assert 'rel="icon" href="/static/favicon.svg"' in login and 'href="/favicon.ico"' in login
