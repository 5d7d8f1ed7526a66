"""The app a test's `flask --app tests/lease_worker_app.py worker` runs: settings from the
environment (CONSENT_REGISTRY_*), and a fake face engine instead of dlib.

With LEASE_TEST_HOLD set to a file path, the engine touches that file when it starts on a photo
and then never finishes (it stands for a long analysis the test kills with SIGKILL); without it,
the engine finds one face at once.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_face_engine import FakeFaceEngine

from consent_registry import create_app
from consent_registry.media import analysis
from consent_registry.media.faces import Box


class HeldFaceEngine(FakeFaceEngine):
    """Says it started, then holds its worker until the process is killed."""

    def __init__(self, started: Path) -> None:
        super().__init__([Box(10, 10, 40, 40)])
        self.started = started

    def detect(self, image):  # type: ignore[no-untyped-def]
        """Never returns: the test kills the process meanwhile."""
        self.started.touch()
        threading.Event().wait()


hold = os.environ.get("LEASE_TEST_HOLD")
engine = HeldFaceEngine(Path(hold)) if hold else FakeFaceEngine([Box(10, 10, 40, 40)])
analysis.engine = lambda: engine
app = create_app()
