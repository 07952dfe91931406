import numpy as np
import pytest

from normgrade.reference import load_layers


@pytest.fixture(scope="session")
def ref():
    """The reference solution, solutions/normlab/layers.py."""
    return load_layers()


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
