"""Whole flow: `make run` on a fresh instance prints an admin password that logs in over real HTTP."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Let the test see redirects instead of following them."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """Never follow."""
        return None


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """`make run` on its own database, instance and uploads; yields (base URL, e-mail, password)."""
    port = _free_port()
    env = {**os.environ,
           "CONSENT_REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "CONSENT_REGISTRY_INSTANCE_PATH": str(tmp_path / "instance"),
           "CONSENT_REGISTRY_UPLOAD_DIR": str(tmp_path / "uploads"),
           "CONSENT_REGISTRY_ADMIN_EMAIL": "beheer@school.test"}
    env.pop("CONSENT_REGISTRY_ENV", None)
    process = subprocess.Popen(["make", "-s", "run", f"PORT={port}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, password = [], None
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        while password is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if match := re.search(r"one-time password: +(\S+)", line):
                password = match.group(1)
        assert password, "".join(output)
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        yield base, "beheer@school.test", password
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def _csrf(opener: urllib.request.OpenerDirector, url: str) -> str:
    """The CSRF token from a page's form."""
    html = opener.open(url).read().decode()
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _post(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str]) -> tuple[int, str]:
    """POST a form; the status and the redirect target."""
    body = urllib.parse.urlencode(data).encode()
    try:
        response = opener.open(url, data=body)
        return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_printed_admin_password_logs_in(served: tuple[str, str, str]) -> None:
    """Log in with the printed one-time password, choose a new one, reach the register."""
    base, email, password = served
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    login_page = opener.open(f"{base}/login").read().decode()
    assert "Inloggen" in login_page
    status, location = _post(opener, f"{base}/login", {
        "email": email, "password": password, "csrf_token": _csrf(opener, f"{base}/login")})
    assert (status, location) == (302, "/account/password")
    status, location = _post(opener, f"{base}/account/password", {
        "current_password": password, "new_password": "een lang nieuw wachtwoord",
        "confirm_password": "een lang nieuw wachtwoord",
        "csrf_token": _csrf(opener, f"{base}/account/password")})
    assert status == 302
    people = opener.open(f"{base}/people/")
    assert people.status == 200 and "Personen" in people.read().decode()
