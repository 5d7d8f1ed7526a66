"""Pages are Dutch by default, English by browser preference or the switch."""

from __future__ import annotations

from flask.testing import FlaskClient

from conftest import csrf_token


def test_dutch_by_default(client: FlaskClient) -> None:
    """Without a preference the login page is Dutch."""
    page = client.get("/login").get_data(as_text=True)
    assert '<html lang="nl">' in page and "Inloggen" in page and "Wachtwoord" in page


def test_english_by_browser_preference(client: FlaskClient) -> None:
    """A browser that prefers English gets English; an unknown language falls back to Dutch."""
    english = client.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Log in" in english and "Password" in english
    german = client.get("/login", headers={"Accept-Language": "de-DE"}).get_data(as_text=True)
    assert '<html lang="nl">' in german


def test_switch_overrides_the_browser(client: FlaskClient) -> None:
    """The language button is remembered for the session and beats Accept-Language."""
    response = client.post("/language", data={"lang": "en", "next": "/login",
                                              "csrf_token": csrf_token(client)})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    page = client.get("/login", headers={"Accept-Language": "nl"}).get_data(as_text=True)
    assert '<html lang="en">' in page
    client.post("/language", data={"lang": "nl", "csrf_token": csrf_token(client)})
    assert '<html lang="nl">' in client.get("/login").get_data(as_text=True)


def test_switch_ignores_unknown_languages_and_foreign_targets(client: FlaskClient) -> None:
    """Only offered languages are taken, and `next` never leaves the site."""
    response = client.post("/language", data={"lang": "xx", "next": "https://evil.example/",
                                              "csrf_token": csrf_token(client)})
    assert response.headers["Location"] == "/"
    assert '<html lang="nl">' in client.get("/login").get_data(as_text=True)


def test_api_errors_follow_the_preference_too(client: FlaskClient) -> None:
    """API error messages are translated as well."""
    dutch = client.get("/api/v1/people").get_json()["error"]["message"]
    english = client.get("/api/v1/people", headers={"Accept-Language": "en"}).get_json()
    assert english["error"]["message"] == "A valid bearer token is required."
    assert dutch != english["error"]["message"]
