# Two commands do all the set-up on a fresh machine:
#   make demo   - venv, generated sample, split, train + evaluate the scratch CNN, predict
#   make test   - venv with dev tools, Chromium for the browser tests, ruff, the whole test suite
#   make fuzz   - atheris on the image, CSV and model-sidecar readers for FUZZ_SECONDS (default 10 minutes)
# The demo writes only under demo/, so it never touches your real data/ or models/.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEMO := demo
DEMO_EPOCHS ?= 8
FUZZ_SECONDS ?= 600

.PHONY: demo test lint fuzz chromium libgl clean-demo

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python libgl
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python libgl
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime-installed $@

demo: $(VENV)/.runtime-installed
	$(PY) -m facemask.sample --out $(DEMO)/sample --photos 80 --seed 0
	$(PY) split.py $(DEMO)/sample/images $(DEMO)/sample/train.csv 70 15 15 --out $(DEMO)/data --force
	$(PY) -m facemask.train --model scratch --data $(DEMO)/data --epochs $(DEMO_EPOCHS) \
		--out $(DEMO)/models --reports $(DEMO)/reports
	$(PY) -m facemask.predict $(DEMO)/models/scratch.keras \
		$$(ls $(DEMO)/data/test/mask/* | head -n 2) $$(ls $(DEMO)/data/test/no-mask/* | head -n 2)
	@echo "Reports (metrics, curves, confusion matrix, misclassified crops) are in $(DEMO)/reports/"

chromium:
	bash scripts/install_chromium.sh

# opencv-python's cv2 (the CenterFace detector runs on cv2.dnn) loads the system libGL.so.1.
libgl:
	bash scripts/install_libgl.sh

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

test: $(VENV)/.dev-installed chromium lint
	$(PY) -m pytest

# Shared between the three targets; corpus, crashes and logs in fuzz-out/. Exit status 1 on a crash.
fuzz: $(VENV)/.dev-installed
	$(PY) bench/fuzz.py --seconds $(FUZZ_SECONDS) --workdir fuzz-out

clean-demo:
	rm -rf $(DEMO)
