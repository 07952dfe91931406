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
