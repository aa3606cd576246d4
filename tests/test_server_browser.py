"""`t2i serve` as a person meets it: the real command on its default (loopback) bind, the page in headless
Chromium (Debian's, driven by Playwright; no browser is downloaded)."""

import os
import queue
import re
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import pytest
from PIL import Image

# Subprocesses run the code under test, also where it is not the installed copy (PYTHONPATH=src).
PYTHONPATH = {"PYTHONPATH": os.pathsep.join(map(os.path.abspath, os.environ["PYTHONPATH"].split(os.pathsep)))} \
    if os.environ.get("PYTHONPATH") else {}

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def served(pipeline_dir):
    """`t2i serve --model DIR --port 0` in a subprocess, with no --host: yields the URL it prints."""
    proc = subprocess.Popen([sys.executable, "-m", "t2i.cli", "serve", "--model", str(pipeline_dir), "--port", "0",
                             "--quiet", "--max-steps", "200"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **PYTHONPATH})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=180)
            if match := re.search(r"t2i serve: .* on (http://\S+)", line):
                break
        yield match.group(1)
    finally:
        proc.terminate()
        proc.wait(30)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in list(f)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_the_default_bind_is_loopback_only(served):
    url = urlsplit(served)
    assert url.hostname == "127.0.0.1"
    assert _listening_addresses(url.port) == {"0100007F"}  # 127.0.0.1, little-endian hex; not 0.0.0.0 or ::


def test_a_non_loopback_bind_without_token_is_refused(capsys, tmp_path):
    from t2i.cli import main

    assert main(["serve", "--model", "/nonexistent", "--host", "0.0.0.0"]) == 1
    assert "t2i: error: --host 0.0.0.0 exposes the server beyond this machine; give --token too" in capsys.readouterr().err
    (tmp_path / "token").write_text("short\n")
    assert main(["serve", "--model", "/nonexistent", "--host", "0.0.0.0", "--token-file", str(tmp_path / "token")]) == 1
    assert "--token must be at least 16 characters, got 5" in capsys.readouterr().err


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: Debian's chromium package (make setup installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# Records every preview frame and whether the button was ever disabled; installed before submitting.
WATCH = """() => {
  window.previewSources = []; window.buttonWasDisabled = false;
  new MutationObserver((changes) => {
    for (const c of changes) {
      if (c.attributeName === 'src' && c.target.closest('#preview')) window.previewSources.push(c.target.src);
      if (c.target.id === 'generate' && c.target.disabled) window.buttonWasDisabled = true;
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['src', 'disabled']});
}"""


@pytest.mark.slow
@pytest.mark.system_package("chromium")
def test_the_page_previews_every_step_then_shows_the_result(served, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))  # CSP violations land here
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(served)
    page.wait_for_selector("#sampler option", state="attached")  # the model's settings arrived
    page.evaluate(WATCH)
    page.fill("#steps", "40")
    page.locator("#prompt").press_sequentially("a red circle")
    page.press("#prompt", "Enter")
    result = page.wait_for_selector("#gallery figure img", timeout=60_000)  # (wait_for_function would need eval,
    page.wait_for_selector("#status:text-matches('^Done in')")             # which the page's CSP forbids)
    for _ in range(100):  # the blob may still be decoding
        if result.evaluate("img => img.complete && img.naturalWidth") == 16:
            break
        page.wait_for_timeout(50)
    assert result.evaluate("img => img.naturalWidth") == 16

    sources = page.evaluate("window.previewSources")
    assert len(set(sources)) >= 3, f"the preview changed {len(set(sources)) - 1} times"
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert page.evaluate("window.buttonWasDisabled") and page.is_enabled("#generate")
    assert page.is_hidden("#error") and problems == []

    with page.expect_download() as download:
        page.click("#gallery figure a[download]")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert re.fullmatch(r"t2i-\d+\.png", path.name)
    parameters = Image.open(path).text["parameters"]
    assert parameters.startswith("a red circle\nSteps: 40, Sampler: dpmpp_2m") and f"Seed: {path.stem[4:]}," in parameters

    page.fill("#steps", "100000")  # over --max-steps: the server's reason shows in the page
    page.press("#prompt", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "steps must be between 1 and 200, got 100000"
    assert page.is_enabled("#generate") and len(page.query_selector_all("#gallery figure")) == 1
    page.close()


@pytest.mark.slow
@pytest.mark.system_package("chromium")
def test_the_page_asks_for_the_token_of_a_guarded_server(pipe, browser):
    from test_server import live_server

    token = "page-token-0123456789"
    with live_server(pipe, token=token) as (url, _):
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#token-box:not([hidden])")
        assert page.query_selector_all("#sampler option") == []  # nothing works without it
        page.fill("#token", token)
        page.click("#token-save")
        page.wait_for_selector("#sampler option", state="attached")
        assert page.is_hidden("#token-box")
        page.fill("#prompt", "a blue square")
        page.fill("#steps", "2")
        page.press("#prompt", "Enter")
        page.wait_for_selector("#gallery figure img")  # submitted, followed and fetched with the token
        page.close()
