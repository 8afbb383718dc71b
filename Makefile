# Two commands do all the set-up on a fresh machine:
#   make demo   - venv, split the real sample/ photos, train + evaluate the default (compact) CNN briefly, box the
#                 faces of a test photo (one it never trained on) and say how to open the web app
#   make test   - venv with dev tools, Chromium for the browser tests, ruff, the whole test suite (as CI runs it),
#                 which installs the package afresh on every supported Python it finds (tests/test_pythons.py)
#   make test-fast - the same without the tests marked slow (training, processes, servers, browsers, wheels):
#                 every module still imported and tested in-process, side by side on the cores (about 1 minute on 2)
#   make fuzz   - atheris on the image, CSV and model-sidecar readers for FUZZ_SECONDS (default 10 minutes)
# The demo writes only under demo/, so it never touches your real data/ or models/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FACEMASK := $(VENV)/bin/facemask
# The supported Python minor versions: pyproject's [tool.facemask] pythons.
PYTHONS := $(shell sed -n 's/^pythons = \[\(.*\)\]/\1/p' pyproject.toml | tr -d '",')
DEMO := demo
DEMO_EPOCHS ?= 20
# The model file of `facemask train`'s default network.
DEMO_MODEL := compact.keras
FUZZ_SECONDS ?= 600

.PHONY: demo test test-fast lint fuzz chromium libgl pythons rtsp-server clean-demo

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The project itself goes in editable (no dependencies: requirements.txt pins them), for the `facemask`
# command, $(FACEMASK): the checkout's own files run, as `python -m facemask.X` from here runs them.
$(VENV)/.runtime-installed: requirements.txt pyproject.toml | $(VENV)/bin/python libgl
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt pyproject.toml | $(VENV)/bin/python libgl
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(VENV)/.runtime-installed $@

# About a minute on 2 cores once the venv is installed (DEMO_EPOCHS epochs on the 164 training crops).
# DEMO_EPOCHS=60 trains longer; early stopping ends it when validation loss stops improving.
demo: $(VENV)/.runtime-installed
	$(FACEMASK) split sample/images sample/train.csv 70 15 15 --out $(DEMO)/data --force
	$(FACEMASK) train --data $(DEMO)/data --epochs $(DEMO_EPOCHS) \
		--out $(DEMO)/models --reports $(DEMO)/reports
	$(FACEMASK) evaluate crops --model $(DEMO)/models/$(DEMO_MODEL) $(DEMO)/data/test \
		--reports $(DEMO)/reports --name test-crops
	$(PY) scripts/demo_photo.py $(DEMO)/data/manifest.csv sample/images > $(DEMO)/photo.txt
	rm -rf $(DEMO)/out
	$(FACEMASK) detect --model $(DEMO)/models/$(DEMO_MODEL) $$(cat $(DEMO)/photo.txt) --out $(DEMO)/out
	@echo
	@echo "Reports (metrics, curves, confusion matrix, misclassified crops): $(DEMO)/reports/"
	@echo "Annotated photo (a test photo, never trained on): $$(ls $(DEMO)/out/*_annotated.*)"
	@echo "Web app (then open http://127.0.0.1:7860): $(FACEMASK) app --model $(DEMO)/models/$(DEMO_MODEL)"

chromium:
	bash scripts/apt_install.sh chromium 'command -v chromium' 'the browser tests skip without /usr/bin/chromium'

# A real RTSP server for tests/test_watch.py (ffmpeg publishes a clip to it, the watch reads it). Debian's
# package also installs a system service listening on port 554 of every interface: when this target is what
# installs it, that service is disabled at once (the tests start their own server on 127.0.0.1).
rtsp-server:
	@if ! command -v rtsp-server-perl >/dev/null 2>&1; then \
		bash scripts/apt_install.sh rtsp-server-perl 'command -v rtsp-server-perl' \
			'the RTSP stream test skips without it'; \
		if command -v systemctl >/dev/null 2>&1; then \
			systemctl disable --now rtsp-server-perl.service >/dev/null 2>&1 || true; \
		fi; \
	fi

# opencv-python's cv2 (the CenterFace detector runs on cv2.dnn) loads the system libGL.so.1.
libgl:
	bash scripts/apt_install.sh libgl1 "/sbin/ldconfig -p | grep -q 'libGL\.so\.1 '" "without libGL.so.1, 'import cv2' fails"

# tests/test_pythons.py makes a venv with each supported Python it finds; Debian's own pythons need their
# python3.X-venv for that (pyenv's and python.org's builds bring ensurepip).
pythons:
	for v in $(PYTHONS); do bash scripts/apt_install.sh python$$v-venv \
		"test ! -x /usr/bin/python$$v || /usr/bin/python$$v -c 'import ensurepip'" \
		"without it tests/test_pythons.py skips Python $$v" || exit 1; done

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

test: $(VENV)/.dev-installed chromium pythons rtsp-server lint
	$(PY) -m pytest

# The fast tests side by side on up to 4 cores (pytest-xdist); `make test` runs everything in one process.
test-fast: $(VENV)/.dev-installed lint
	$(PY) -m pytest -m "not slow" -n auto --maxprocesses 4

# Shared between the three targets; corpus, crashes and logs in fuzz-out/. Exit status 1 on a crash.
fuzz: $(VENV)/.dev-installed
	$(PY) bench/fuzz.py --seconds $(FUZZ_SECONDS) --workdir fuzz-out

clean-demo:
	rm -rf $(DEMO)
