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
def test_a_student_with_only_the_release_and_the_pinned_environment_runs_every_notebook(tmp_path, course_copy):
    """
    conda cannot be reached from here, so the pins of environment.yml are
    checked with pip: a fresh virtual environment gets exactly those
    packages (every pin must exist and resolve). In it, a student's copy of
    release/normalization (what `normgrade release` hands out, with the
    reference in normlab/layers.py and the right inline answers) runs every
    notebook top to bottom without an error or a line on stderr, and each
    draws its plots.
    """
    import json
    import os
    import subprocess
    import sys

    from normgrade.course import paths
    from normgrade.score.notebooks import answer_keys, source_notebooks
    from normgrade.paths import NOTEBOOKS
    from normgrade.build.samples import make_submission, reference_layers

    env = yaml.safe_load(ENVIRONMENT.read_text())
    pins = [d for d in env["dependencies"] if isinstance(d, str) and not d.startswith("python")]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # --no-compile: no bytecode for every module of every package; Python compiles what the notebooks import.
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--no-compile", *pins],
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        reason = f"pip could not install the student pins {pins}: {done.stderr.strip()[-600:]}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    course = course_copy(tmp_path / "course")
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    work = make_submission(paths(course)["release"], tmp_path / "work", reference_layers(), keys)
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
             "LANG": "C.UTF-8"}  # no kernel or setting of this machine's user
    notebooks = sorted(work.glob("*.ipynb"))
    assert [n.name for n in notebooks] == [n.name for n in source_notebooks(NOTEBOOKS)]
    for notebook in notebooks:
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
