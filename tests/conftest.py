import os

# Two busy processes make PyTorch's OpenMP threads stall on a 2-core machine; tests run with one thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One tiny end-to-end run (data → autoencoder → generator → pipeline), shared by the tests that need
    trained components. Real components at tiny sizes, 10 training steps each: fast, not good."""
    from t2i.demo import DEMO_PRESETS, run_demo

    out = tmp_path_factory.mktemp("demo")
    summary = run_demo(DEMO_PRESETS["quick"](out))
    return out, summary


@pytest.fixture(scope="session")
def pipeline_dir(demo_run):
    return demo_run[0] / "pipeline"


@pytest.fixture(scope="session")
def pipe(pipeline_dir):
    import t2i

    return t2i.load(pipeline_dir)


# -- tests that need a Debian package ------------------------------------------------------------------------
# `@pytest.mark.system_package("chromium")`: the test skips, with its reason, when the package is missing. Under
# T2I_REQUIRE_SYSTEM_PACKAGES=1 (what .ci/run sets) such a skip fails the run instead: CI must run them all.

REQUIRE_SYSTEM_PACKAGES = "T2I_REQUIRE_SYSTEM_PACKAGES"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("system_package")
    if report.skipped and marker is not None and os.environ.get(REQUIRE_SYSTEM_PACKAGES) == "1":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = (f"{REQUIRE_SYSTEM_PACKAGES}=1, but this test needs Debian's {marker.args[0]} and was "
                           f"skipped: {reason}")
