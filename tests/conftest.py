import numpy as np
import pytest

from normgrade.reference import load_layers


@pytest.fixture(scope="session")
def ref():
    """The reference solution, solutions/normlab/layers.py."""
    return load_layers()


@pytest.fixture(scope="session")
def expected_file(tmp_path_factory):
    """An expected-values file of the current reference and answer keys (normgrade expected)."""
    from normgrade import expected
    from normgrade.notebooks import answer_keys

    path = tmp_path_factory.mktemp("expected") / "expected.npz"
    return expected.write(path, expected.generate(answer_keys(), seed=expected.FIXED_SEED))


@pytest.fixture(scope="session")
def data(expected_file):
    from normgrade import expected

    return expected.ExpectedValues(expected_file)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def sandbox():
    """A bubblewrap sandbox; skips where user namespaces are blocked (CI has them: there it must run)."""
    import os

    from normgrade.sandbox import Sandbox, probe_bwrap

    reason = probe_bwrap()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the sandbox tests: {reason}")
        pytest.skip(f"no bubblewrap sandbox here: {reason}")
    return Sandbox()



@pytest.fixture(scope="session")
def postgres():
    """
    A real PostgreSQL server of our own (tests/pgserver.py), listening on a
    Unix socket in a temporary folder; yields a function that creates a fresh
    database and returns its SQLAlchemy URL. Skips with the reason where there
    is no server; CI has one, so there it must run.
    """
    import os

    from pgserver import PostgresUnavailable, TemporaryPostgres

    try:
        server = TemporaryPostgres()
    except PostgresUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the PostgreSQL tests: {err}")
        pytest.skip(str(err))
    with server:
        yield server.new_database


@pytest.fixture(scope="session")
def browser():
    """
    A real headless Chromium driven by Selenium (Debian's `chromium` and
    `chromium-driver`; nothing is downloaded). Skips with the reason where
    they are missing; CI installs them, so there it must run.
    """
    import os
    import shutil

    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    reason = None
    if not binary or not driver_path:
        reason = "no Chromium and chromedriver here (apt-get install chromium chromium-driver)"
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        reason = "selenium is not installed (pip install -e '.[test]')"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1100,1400"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
