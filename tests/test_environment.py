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


@pytest.mark.slow
def test_a_pip_environment_built_from_the_student_pins_runs_both_notebooks(tmp_path):
    """
    conda cannot be reached from here, so the pins of environment.yml are
    checked with pip: a fresh virtual environment gets exactly those
    packages (every pin must exist and resolve), and both notebooks, with the
    reference in normlab/layers.py, run in it top to bottom without an error
    or a line on stderr.
    """
    import json
    import os
    import shutil
    import subprocess
    import sys

    from normgrade.paths import NOTEBOOKS, SOLUTION_LAYERS, STUDENT_PACKAGE

    env = yaml.safe_load(ENVIRONMENT.read_text())
    pins = [d for d in env["dependencies"] if isinstance(d, str) and not d.startswith("python")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *pins], capture_output=True, text=True,
                          timeout=1200)
    if done.returncode != 0:
        reason = f"pip could not install the student pins {pins}: {done.stderr.strip()[-600:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    work = tmp_path / "work"
    shutil.copytree(STUDENT_PACKAGE, work / "normlab")
    shutil.copy(SOLUTION_LAYERS, work / "normlab" / "layers.py")
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
             "LANG": "C.UTF-8"}  # no kernel or setting of this machine's user
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        shutil.copy(notebook, work / notebook.name)
        done = subprocess.run([str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook", "--execute",
                               "--ExecutePreprocessor.timeout=600", "--output", f"ran_{notebook.name}", notebook.name],
                              cwd=work, env=clean, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{notebook.name} failed in the pinned environment:\n{done.stderr[-3000:]}"
        ran = json.loads((work / f"ran_{notebook.name}").read_text())
        outputs = [o for cell in ran["cells"] for o in cell.get("outputs", [])]
        assert not [o for o in outputs if o["output_type"] == "error"]
        stderr = ["".join(o["text"]) for o in outputs if o.get("name") == "stderr"]
        assert not stderr, f"{notebook.name} writes to stderr in the pinned environment: {stderr}"
        assert any("image/png" in o.get("data", {}) for o in outputs), "its plots"
