# napari-invrec: `make run` opens the GUI on sample data, `make test` runs the whole suite.
# Both create .venv and install the package first (CPU torch pinned in constraints.txt).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
QT     ?= pyqt6

.PHONY: run test bench lint screenshot sample-data xvfb clean venv-qt5

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt torch
	$(PY) -m pip install -q -c constraints.txt -e ".[$(QT),formats,bm3d,testing]"
	touch $(STAMP)

run: $(STAMP)
	@if [ -z "$$DISPLAY" ] && [ -z "$$WAYLAND_DISPLAY" ]; then \
	  echo "No display found. napari needs one; on a headless machine run it under Xvfb:"; \
	  echo "    xvfb-run -a make run      (Debian: apt-get install xvfb)"; \
	  echo "or take a screenshot instead:  xvfb-run -a make screenshot"; \
	  exit 1; fi
	$(PY) -m napari_invrec

# Xvfb is needed by the GUI tests (pytest-xvfb starts it), and Qt 6 on X11 needs
# libxcb-cursor0; install them when we can.
xvfb:
	@{ command -v Xvfb >/dev/null 2>&1 && ldconfig -p | grep -q libxcb-cursor.so.0; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-randr0 \
	      libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxcb-cursor0 libxkbcommon-x11-0 \
	      libgl1 libegl1 libfontconfig1 libdbus-1-3 >/dev/null; \
	  else echo "Xvfb or libxcb-cursor0 missing: install xvfb libxcb-cursor0 libxcb-icccm4" \
	    "libxcb-keysyms1 libxcb-xinerama0"; exit 1; fi; }

test: $(STAMP) xvfb
	$(PY) -m pytest -q

bench: $(STAMP) xvfb
	$(PY) benchmarks/run.py

# a second environment with PyQt5, for `benchmarks/run.py gui` to measure both bindings
venv-qt5:
	$(MAKE) VENV=.venv-qt5 QT=pyqt5 .venv-qt5/.installed-stamp

lint: $(STAMP)
	$(PY) -m ruff check napari_invrec tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-logo

screenshot: $(STAMP)
	$(PY) scripts/screenshot.py

sample-data: $(STAMP)
	$(PY) scripts/make_sample_data.py

clean:
	rm -rf $(VENV) .venv-qt5 build dist *.egg-info .pytest_cache
