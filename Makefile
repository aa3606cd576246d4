# The two quick-start commands: `make demo` (set up, then run t2i demo) and `make test` (set up, then test).
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of PyTorch. Installed first and on its own: a plain `torch` requirement on a machine with no
# torch pulls a multi-GB CUDA build. To use another build, install it into $(VENV) before `make setup`.
TORCH ?= torch==2.13.0

.PHONY: setup demo test fonts chromium emoji-sets clean

setup: $(VENV)/.t2i-setup

$(VENV)/.t2i-setup: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@$(MAKE) --no-print-directory fonts
	@$(MAKE) --no-print-directory chromium
	@$(MAKE) --no-print-directory emoji-sets
	touch $@

# Noto Color Emoji, for `t2i data emoji` (Debian's fonts-noto-color-emoji); optional for everything else.
fonts:
	@if ls /usr/share/fonts/truetype/noto/NotoColorEmoji*.ttf >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q fonts-noto-color-emoji >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fonts-noto-color-emoji >/dev/null 2>&1)) || \
		echo "note: could not install fonts-noto-color-emoji; t2i data emoji needs it"; \
	else echo "note: install Debian's fonts-noto-color-emoji for t2i data emoji"; fi

# Debian's Chromium, for the browser test of `t2i serve` (Playwright drives it; no browser is downloaded).
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get install -y -q chromium >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || \
		echo "note: could not install chromium; the browser test of t2i serve will be skipped"; \
	else echo "note: install Debian's chromium for the browser test of t2i serve"; fi

# The published emoji sets for `t2i data emoji-sets` (and its test on the real packages): `npm pack` into
# ~/.cache/t2i/npm, once. Installs Debian's npm where it is missing. Fails loudly: the test needs them.
emoji-sets:
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -q npm >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q npm >/dev/null 2>&1)); } || \
		{ echo "ERROR: npm is missing and could not be installed (apt-get install npm): t2i data emoji-sets needs it" >&2; exit 1; }
	@$(PY) -m t2i.cli data emoji-sets --fetch-only --sets all || \
		{ echo "ERROR: could not fetch the emoji set packages from npm (see above); t2i data emoji-sets and its test need them" >&2; exit 1; }

demo: setup
	$(VENV)/bin/t2i demo

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) outputs .pytest_cache
