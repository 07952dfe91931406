"""The grading checks, in process: reference, stubs, mutants, a CS231n drop-in, broken and hostile code."""
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from normgrade import checks, expected
from normgrade.kernel import grade, grade_answer, grade_results
from normgrade.mutants import MUTANTS, mutate
from normgrade.notebooks import answer_keys, nbgrader_cells, source_notebooks
from normgrade.paths import REPO, SOLUTION_LAYERS
from normgrade.submission import assemble_reference, assemble_stubs

CS231N_LAYERS = Path(__file__).parent / "data" / "cs231n_layers.py"


@pytest.fixture(scope="module")
def expected_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("expected") / expected.EXPECTED_NAME
    return expected.write(path, expected.generate(answer_keys()))


def _package(folder, layers_source=None):
    assemble_reference(folder)
    if layers_source is not None:
        (folder / "normlab" / "layers.py").write_text(layers_source)
    return folder


def _scores(folder, expected_file):
    return {f: grade_results(f, folder, expected_file) for f in expected.FUNCTIONS}


def _earned(results):
    return sum(r.earned for r in results)


def test_reference_earns_every_point(tmp_path, expected_file):
    for function, results in _scores(_package(tmp_path), expected_file).items():
        assert _earned(results) == checks.total_points(function), [r.message for r in results if r.message]


def test_stubs_earn_nothing_and_say_why(tmp_path, expected_file):
    assemble_stubs(tmp_path)
    for function, results in _scores(tmp_path, expected_file).items():
        assert _earned(results) == 0
        assert all("NotImplementedError" in r.message for r in results), function


def test_a_cs231n_style_layers_file_drops_in(tmp_path, expected_file):
    folder = _package(tmp_path, CS231N_LAYERS.read_text())
    for function, results in _scores(folder, expected_file).items():
        assert _earned(results) == checks.total_points(function), [r.message for r in results if r.message]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_loses_points_on_its_checks_with_its_message(tmp_path, expected_file, mutant):
    folder = _package(tmp_path, mutate(SOLUTION_LAYERS.read_text(), mutant))
    scores = _scores(folder, expected_file)
    for function in mutant.affects:
        lost = [r for r in scores[function] if r.message]
        assert lost, f"{mutant.name} lost no points on {function}"
        assert any(mutant.message in r.message for r in lost), (
            f"{mutant.name}: no message on {function} names the mistake: {[r.message for r in lost]}")
    # Functions the mistake cannot reach keep all their points.
    untouched = {"layernorm_forward", "layernorm_backward"} | (
        {"spatial_groupnorm_forward", "spatial_groupnorm_backward"} if "groupnorm" not in mutant.name
        and mutant.name != "interleaved_groups" else set())
    for function in untouched - set(mutant.affects):
        assert _earned(scores[function]) == checks.total_points(function), (mutant.name, function)


def test_at_least_eight_distinct_mistakes_are_recognised():
    assert len({m.message for m in MUTANTS}) >= 8


def test_messages_name_shapes_and_dtypes_exactly(expected_file):
    data = expected.ExpectedValues(expected_file)
    want = data.expected("batchnorm_backward_dgamma")
    assert "has shape (1, 6), expected (6,)" in checks.compare(want[None], want)
    assert "has dtype float32, expected float64" in checks.compare(want.astype(np.float32), want)
    assert "is missing" in checks.compare(None, want)
    assert "contains NaN" in checks.compare(want * np.nan, want)
    assert checks.compare(want.copy(), want) is None


BROKEN = {
    "syntax error": "def batchnorm_forward(:\n",
    "import error": "import not_a_module_anywhere\n",
    "noisy": (
        "import sys, warnings\n" + "{reference}\n"
        "_orig = batchnorm_forward\n"
        "def batchnorm_forward(*a, **k):\n"
        "    print('debug output', file=sys.stderr)\n"
        "    warnings.warn('student warning')\n"
        "    return _orig(*a, **k)\n"
    ),
    "returns None": "{reference}\ndef layernorm_forward(x, gamma, beta, ln_param):\n    return None, None\n",
    "exits": "{reference}\nimport sys\ndef layernorm_forward(x, gamma, beta, ln_param):\n    sys.exit(3)\n",
    "exits at import": "import sys\nsys.exit(2)\n",
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_submissions_get_messages_not_crashes(tmp_path, expected_file, kind, capsys):
    source = BROKEN[kind].replace("{reference}", SOLUTION_LAYERS.read_text())
    folder = _package(tmp_path, source)
    earned = grade("batchnorm_forward", folder, expected_file) + grade("layernorm_forward", folder, expected_file)
    captured = capsys.readouterr()
    assert captured.err == "", "anything on stderr would zero the nbgrader cell"
    if kind in ("syntax error", "import error", "exits at import"):
        assert earned == 0 and "normlab could not be imported" in captured.out
    elif kind == "noisy":  # student prints and warnings do not cost points
        assert earned == checks.total_points("batchnorm_forward") + checks.total_points("layernorm_forward")
    elif kind == "exits":
        assert earned == checks.total_points("batchnorm_forward") and "raised SystemExit: 3" in captured.out
    else:
        assert "ln_out is a NoneType" in captured.out or "is missing (None)" in captured.out


def test_a_hanging_function_is_stopped(tmp_path, expected_file):
    source = SOLUTION_LAYERS.read_text() + "\ndef layernorm_forward(x, gamma, beta, ln_param):\n    while True:\n        pass\n"
    folder = _package(tmp_path, source)
    from normgrade.submission import imported_package

    data = expected.ExpectedValues(expected_file)
    with imported_package(folder):
        import normlab.gradient_check
        import normlab.layers

        results = checks.evaluate("layernorm_forward", normlab.layers, normlab.gradient_check, data, seconds=0.5)
    assert _earned(results) == 0 and all("took longer than" in r.message for r in results)


def test_grading_reads_files_not_notebook_state(tmp_path, expected_file):
    """A function patched in the running process does not count; the file on disk does."""
    folder = _package(tmp_path)
    from normgrade.submission import imported_package

    with imported_package(folder) as package:
        import normlab.layers

        normlab.layers.layernorm_forward = lambda *a: (None, None)
        assert grade("layernorm_forward", folder, expected_file) == checks.total_points("layernorm_forward")


def test_grade_answer(expected_file, capsys):
    keys = json.loads(str(np.load(expected_file)["answer_keys"]))
    assert keys == answer_keys()
    assert grade_answer("inline_batch_size", keys["inline_batch_size"], 1, expected_file) == 1.0
    assert grade_answer("inline_batch_size", "a", 1, expected_file) == 0.0
    assert grade_answer("inline_preprocessing", {"batchnorm": 3, "layernorm": 1}, 2, expected_file) == 1.0
    assert grade_answer("inline_preprocessing", "3,2", 2, expected_file) == 0.0
    assert "'a' is not the answer" in capsys.readouterr().out
    with pytest.raises(KeyError, match="no answer key"):
        grade_answer("inline_unknown", "a", 1, expected_file)


def test_expected_values_are_deterministic_and_hidden_inputs_differ_from_public_ones():
    first, second = expected.generate({}), expected.generate({})
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    public = [c.source for p in source_notebooks() for c in nbformat.read(p, as_version=4).cells]
    for name, value in expected.build_inputs().items():
        assert not any(np.array2string(value.ravel()[:3], precision=4)[1:-1] in s for s in public), name


def test_notebook_points_match_the_checks():
    seen = set()
    for path in source_notebooks():
        for cell, meta in nbgrader_cells(path):
            grade_id = meta["grade_id"]
            call = re.search(r'normgrade\.grade\("(\w+)"\)', cell.source)
            if call:
                seen.add(call.group(1))
                assert grade_id == f"test_{call.group(1)}"
                assert meta["points"] == checks.total_points(call.group(1)), grade_id
            answer = re.search(r'normgrade\.grade_answer\("(\w+)", \w+, points=([\d.]+)\)', cell.source)
            if answer:
                assert float(answer.group(2)) == meta["points"], grade_id
                assert answer.group(1) in answer_keys(), grade_id
    assert seen == set(expected.FUNCTIONS), "every student function has exactly one hidden test cell"


def test_every_answer_key_lives_in_exactly_one_place():
    keys = answer_keys()
    assert len(keys) >= 4
    texts = [p.read_text() for p in REPO.rglob("*") if p.is_file() and p.suffix in (".py", ".ipynb", ".md", ".toml")
             and ".venv" not in p.parts and "demo" not in p.parts]
    for variable, key in keys.items():
        literal = json.dumps(f"{variable} = {key!r}")[1:-1]  # as it appears inside notebook JSON
        assert sum(t.count(literal) for t in texts) == 1, variable


def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "normgrade.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_expected_writes_a_loadable_file(tmp_path):
    done = _cli("expected", "--out", str(tmp_path / "e.npz"))
    assert done.returncode == 0, done.stderr
    data = expected.ExpectedValues(tmp_path / "e.npz")
    assert data.answer_keys == answer_keys() and "bn_x" in data.inputs
    assert set(data.signatures("bn_train_out")) >= {"unbiased_variance", "missing_eps"}


def test_cli_errors_are_clear(tmp_path):
    try:
        import cupy  # noqa: F401
    except ImportError:
        done = _cli("expected", "--backend", "cupy", "--out", str(tmp_path / "e.npz"))
        assert done.returncode == 2 and "backend 'cupy' needs CuPy" in done.stderr
    done = _cli("grade", str(tmp_path / "missing"), "--course", str(tmp_path / "course"))
    assert done.returncode == 2 and "no such folder" in done.stderr
    (tmp_path / "empty").mkdir()
    done = _cli("grade", str(tmp_path / "empty"), "--course", str(tmp_path / "course"))
    assert done.returncode == 2 and "neither a submission" in done.stderr
    assert not (tmp_path / "course").exists(), "no course is built for bad paths"
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    done = _cli("release", "--course", str(tmp_path / "occupied"))
    assert done.returncode == 2 and "not a normgrade course" in done.stderr
    assert (tmp_path / "occupied" / "notes.txt").read_text() == "mine", "nothing is lost"
