"""environment.yml (for students, conda) and pyproject.toml (pip) declare the same runtime dependencies."""
import tomllib

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from normgrade.paths import ENVIRONMENT, REPO


def _by_name(specs, source):
    parsed = {}
    for spec in specs:
        try:
            req = Requirement(spec)
        except InvalidRequirement as err:
            pytest.fail(f"{source}: cannot parse {spec!r}: {err}")
        parsed[canonicalize_name(req.name)] = req.specifier
    return parsed


def test_environment_yml_matches_pyproject_runtime_dependencies():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = yaml.safe_load(ENVIRONMENT.read_text())
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    conda_deps = _by_name(conda, "environment.yml")
    python = conda_deps.pop("python")
    pip_deps = _by_name(pyproject["project"]["dependencies"], "pyproject.toml")
    assert conda_deps == pip_deps
    assert str(python) == pyproject["project"]["requires-python"]
