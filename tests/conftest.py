import os

import numpy as np
import pytest

from normgrade.score.reference import load_layers


# What `make test-fast` leaves out needs no marking by hand where a fixture says it: a test that asks for
# a PostgreSQL server, the browser or a built course is `slow` (end-to-end) by what it uses.
SLOW_FIXTURES = {"postgres", "browser", "built_course", "course_copy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """
    Under `--dist loadgroup`, a test marked xdist_group must carry its group
    in its id: a module's tests share what its module-scoped fixtures built (a
    course, a graded class), and one worker must run them all. Some pytest and
    pytest-xdist versions drop the groups without a word (pytest-xdist#1386):
    then each such test fails, saying so, before any fixture is built.
    """
    if item.config.getoption("loadgroup", default=False) and item.get_closest_marker("xdist_group") \
            and "@" not in item.nodeid:
        pytest.fail("pytest-xdist did not keep this test's xdist_group: this pytest and pytest-xdist do not work "
                    "together (pytest-xdist#1386); reinstall with `pip install -e '.[test]'` (its pins), or run "
                    "without -n", pytrace=False)


@pytest.fixture(scope="session")
def ref():
    """The reference solution, solutions/normlab/layers.py."""
    return load_layers()


@pytest.fixture(scope="session")
def expected_file(tmp_path_factory):
    """An expected-values file of the current reference and answer keys (normgrade expected)."""
    from normgrade.score import expected
    from normgrade.score.notebooks import answer_keys

    path = tmp_path_factory.mktemp("expected") / "expected.npz"
    return expected.write(path, expected.generate(answer_keys(), seed=expected.FIXED_SEED))


@pytest.fixture(scope="session")
def built_course(tmp_path_factory):
    """
    One course built by `normgrade release` (its core, without the proof:
    test_end_to_end and test_release prove theirs) for the whole test run,
    shared by every pytest-xdist worker: the first to need it builds it under
    a lock, the others wait and reuse it. Never write into it: take a copy
    with `course_copy`.
    """
    from filelock import FileLock

    from normgrade.build.release import build_course

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's own folder, above each worker's
    folder, done = shared / "built-course" / "course", shared / "built-course" / "done"
    with FileLock(str(shared / "built-course.lock")):
        if not done.exists():
            build_course(folder, prove=False)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def course_copy(built_course):
    """course_copy(dest): a copy of the shared built course at dest (its gradebook and settings included)."""
    import shutil

    def copy(dest):
        shutil.copytree(built_course, dest, symlinks=True)
        return dest

    return copy


@pytest.fixture(scope="session")
def data(expected_file):
    from normgrade.score import expected

    return expected.ExpectedValues(expected_file)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def sandbox():
    """A bubblewrap sandbox; skips where user namespaces are blocked (CI has them: there it must run)."""
    import os

    from normgrade.run.sandbox import Sandbox, probe_bwrap

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
