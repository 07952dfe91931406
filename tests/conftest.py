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
