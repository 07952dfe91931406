"""
The students' self-check (normlab/check.py, `python -m normlab.check`): the public checks of every function.

It must pass the reference, call the stubs "not started", catch the typical
mistakes where the notebooks' published examples and properties can, and
never touch the autograder's hidden inputs or expected values.
"""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import corpus
from normgrade.paths import SOLUTION_LAYERS, STUB_LAYERS, STUDENT_PACKAGE
from normgrade.build.samples import TYPICAL_MISTAKES, mutant_layers, reference_layers
from normgrade.score import diagnosis
from normlab import check as self_check_module


def _package(tmp_path, source):
    """A student's copy of the package with `source` as layers.py; returns the folder holding normlab/."""
    root = tmp_path / "student"
    shutil.copytree(STUDENT_PACKAGE, root / "normlab", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "normlab" / "layers.py").write_text(source)
    return root


def _layers(root):
    """That copy's layers module, imported under its own name (not the installed normlab)."""
    spec = importlib.util.spec_from_file_location("student_normlab.layers", root / "normlab" / "layers.py",
                                                  submodule_search_locations=None)
    # The layers module imports `.backend`: load it as a submodule of a package rooted at the copy.
    package_spec = importlib.util.spec_from_file_location("student_normlab", root / "normlab" / "__init__.py",
                                                          submodule_search_locations=[str(root / "normlab")])
    package = importlib.util.module_from_spec(package_spec)
    sys.modules["student_normlab"] = package
    package_spec.loader.exec_module(package)
    module = importlib.util.module_from_spec(spec)
    sys.modules["student_normlab.layers"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _forget_student_modules():
    yield
    for name in [n for n in sys.modules if n.startswith("student_normlab")]:
        del sys.modules[name]


def test_reference_passes_every_public_check(tmp_path):
    rows = self_check_module.summary(_layers(_package(tmp_path, reference_layers())))
    assert [status for _, status, _ in rows] == [self_check_module.PASSES] * 9
    assert [function for function, _, _ in rows] == list(self_check_module.FUNCTIONS)


def test_stubs_are_not_started_with_the_stubs_own_message(tmp_path):
    rows = self_check_module.summary(_layers(_package(tmp_path, STUB_LAYERS.read_text())))
    assert {status for _, status, _ in rows} == {self_check_module.NOT_STARTED}
    assert all("not implemented yet" in message for _, _, message in rows)


def test_typical_mistakes_fail_here_with_what_to_fix(tmp_path):
    rows = {f: (s, m) for f, s, m in self_check_module.summary(
        _layers(_package(tmp_path, mutant_layers(*TYPICAL_MISTAKES))))}
    # Named with the grader's own probes and words (normlab.diagnosis), on the published examples.
    assert rows["batchnorm_forward"] == (self_check_module.FAILS, (
        "a small published example (gamma and beta not trivial): differs from the published output (relative error "
        "1.8e-01): the variance is the unbiased one (dividing by N - 1); normalization divides by N"))
    assert rows["spatial_groupnorm_forward"][0] == self_check_module.FAILS
    assert "the mean and variance are taken per example and interleaved group (channel c in group c % G); " \
           "spatial_groupnorm_forward takes them per example and group of C // G contiguous channels" \
           in rows["spatial_groupnorm_forward"][1]
    assert rows["layernorm_forward"][0] == self_check_module.PASSES  # untouched by these mistakes


def public_mistakes(layers):
    """{function: (whether a public check fails, the diagnosis keys the failing checks name)}."""
    found = {}
    for function, checks in self_check_module.PUBLIC_CHECKS.items():
        failed, keys = False, set()
        for check_function in checks:
            try:
                check_function(layers)
            except self_check_module.Named as err:
                failed, keys = True, keys | {diagnosis.key((part,)) for part in err.parts}
            except Exception:  # noqa: BLE001 - any failure counts as a failed check
                failed = True
        found[function] = (failed, keys)
    return found


def corpus_public_mistakes(tmp_path, entries):
    """{entry name: public_mistakes} of corpus entries, each imported as a student's copy."""
    found = {}
    for number, entry in enumerate(entries):
        source = corpus.layers_source(entry.sources)
        found[entry.name] = public_mistakes(_layers(_package(tmp_path / str(number), source)))
        for name in [n for n in sys.modules if n.startswith("student_normlab")]:
            del sys.modules[name]
    return found


def test_the_corpus_through_the_public_checks_is_never_misnamed(tmp_path):
    """
    tests/corpus.py through the self-check: correct code written differently
    passes every public check; a wrong function is named only with mistakes it
    has, a right one never; most forward mistakes are named.
    """
    found = corpus_public_mistakes(tmp_path, corpus.CORRECT + corpus.WRONG + corpus.UNMODELLED)
    assert {name: f for name, by in found.items() for f, (failed, _) in by.items()
            if failed and name in {e.name for e in corpus.CORRECT}} == {}
    named, misnamed = [], []
    for entry in corpus.WRONG + corpus.UNMODELLED:
        for function, (failed, keys) in found[entry.name].items():
            if keys - entry.wrong.get(function, set()):
                misnamed.append((entry.name, function, keys))
            elif keys:
                named.append((entry.name, function))
    assert misnamed == []
    failing = [(e.name, f) for e in corpus.WRONG for f in e.wrong if found[e.name][f][0]]
    print(f"public checks: {len(named)} of the {len(failing)} wrong functions they fail named")
    assert len(named) >= 0.5 * len(failing)


def test_a_wrong_backward_is_named_by_its_gradient_check(tmp_path):
    found = public_mistakes(_layers(_package(tmp_path, mutant_layers("alt_wrong_sign"))))
    assert found["batchnorm_backward_alt"] == (True, {"dx terms: variance term sign"})
    assert found["spatial_batchnorm_backward"] == (True, {"dx terms: variance term sign"})
    assert found["batchnorm_backward"] == (False, set())


def test_on_the_published_examples_every_single_mistake_is_named_as_itself():
    """Each one-part hypothesis of the model, returned by a layer, is named exactly so by its published example."""
    from types import SimpleNamespace

    examples = {"batchnorm_forward": self_check_module.batchnorm_published_example,
                "layernorm_forward": self_check_module.layernorm_published_example,
                "spatial_batchnorm_forward": self_check_module.spatial_batchnorm_published_example,
                "spatial_groupnorm_forward": self_check_module.spatial_groupnorm_published_example}
    unseen = []  # mistakes too small to fail a published example at all
    for function, check_function in examples.items():
        layer, G, (x, gamma, beta) = self_check_module.PROBES[function]
        if np.ndim(x) == 4 and np.ndim(gamma) == 1:
            gamma, beta = gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
        hypotheses = diagnosis.forward_hypotheses(layer, x, gamma, beta, 1e-5, G=G, eps_given=False)
        singles = [h for h in hypotheses if len(h.parts) == 1]
        assert len(singles) >= 11, (function, len(singles))
        for h in singles:
            layers = SimpleNamespace(**{function: lambda *_, value=h.value: (value, None)})
            try:
                check_function(layers)
            except self_check_module.Named as named:
                assert named.parts == h.parts
                assert diagnosis.sentence(h.parts, function, layer) in str(named)
            else:
                unseen.append((function, h.parts))
        right = SimpleNamespace(**{function: lambda *_: (diagnosis.right_value(hypotheses), None)})
        assert check_function(right).startswith("relative error")  # the model's right value is the published one
    # The spatial example's channels spread too widely for eps to matter (relative error 7e-7), and with W = 1
    # a channel's columns are the channel; the hidden inputs have a channel with a tiny spread, and W = 2.
    assert unseen == [("spatial_batchnorm_forward", (("eps", "missing"),)),
                      ("spatial_batchnorm_forward", (("statistics", "per channel and column"),)),
                      ("spatial_batchnorm_forward", (("mean", "per channel and column"),))]


# Mistakes the mutants do not cover, written as students write them (the reference with one function redone).
WRONG = {
    "layernorm_over_the_batch": """
def layernorm_forward(x, gamma, beta, ln_param):
    return batchnorm_forward(x, gamma, beta, {"mode": "train"})  # statistics per feature, not per example
""",
    "layernorm_backward_doubled": """
_layernorm_backward = layernorm_backward
def layernorm_backward(dout, cache):
    dx, dgamma, dbeta = _layernorm_backward(dout, cache)
    return 2 * dx, dgamma, dbeta
""",
    "groupnorm_always_per_channel": """
_spatial_groupnorm_forward = spatial_groupnorm_forward
def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    return _spatial_groupnorm_forward(x, gamma, beta, x.shape[1], gn_param)  # instance norm whatever G is
""",
}


def test_every_public_check_can_fail(tmp_path):
    """Each registered check fails for some known mistake (mutants.py, WRONG): none is vacuous."""
    from normgrade.score.mutants import MUTANTS

    sources = {m.name: mutant_layers(m.name) for m in MUTANTS}
    sources.update({name: reference_layers() + body for name, body in WRONG.items()})
    layers = [_layers(_package(tmp_path / name, source)) for name, source in sources.items()]
    for function, checks in self_check_module.PUBLIC_CHECKS.items():
        for check_function in checks:
            outcomes = {self_check_module._run(check_function, module)[0] for module in layers}
            assert self_check_module.FAILS in outcomes, f"{check_function.__name__} passes every mutant"


def test_check_in_a_notebook_prints_each_check_and_fails_the_cell(tmp_path, capsys):
    layers = _layers(_package(tmp_path, mutant_layers("unbiased_variance")))
    with pytest.raises(AssertionError) as failed:
        self_check_module.check("batchnorm_forward", layers)
    lines = failed.value._render_traceback_()  # what IPython, and so nbgrader's Validate, shows: no traceback
    assert lines[0] == "batchnorm_forward does not pass its public checks. Fix this first:"
    assert " ".join(" ".join(lines[1:]).split()).startswith("differs from the published output")
    assert all(len(line) <= 80 for line in lines), "Validate cuts lines at 90 characters, less its indent"
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and printed[0].startswith("FAILED: a small published example")
    self_check_module.check("layernorm_forward", layers)  # passes: prints, raises nothing
    assert capsys.readouterr().out.count("passed: ") == 2


@pytest.mark.parametrize("source, code, line", [
    (SOLUTION_LAYERS.read_text(), 0, "9 of 9 functions pass the public checks"),
    (STUB_LAYERS.read_text(), 1, "0 of 9 functions pass the public checks"),
])
def test_python_dash_m_from_the_students_folder(tmp_path, source, code, line):
    root = _package(tmp_path, source)
    done = subprocess.run([sys.executable, "-m", "normlab.check"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    assert done.returncode == code, done.stderr
    assert line in done.stdout and "does not guarantee the hidden checks" in done.stdout
    assert str(root / "normlab") in subprocess.run(
        [sys.executable, "-c", "import normlab; print(normlab.__path__[0])"], cwd=root, capture_output=True,
        text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)}).stdout, "the student's copy ran"


def test_the_self_check_reads_nothing_of_the_autograder():
    source = Path(self_check_module.__file__).read_text()
    assert "normgrade" not in source and "expected.npz" not in source and "open(" not in source


def test_the_student_package_holds_no_model_that_computes_a_layer():
    """
    The model of mistakes computes every layer right too: only its values on
    the public checks' own inputs reach the students (mistakes.npz, current
    with the model), and no module of theirs holds the model.
    """
    from normgrade.score import mistakes

    assert sorted(p.name for p in STUDENT_PACKAGE.iterdir() if p.suffix in (".py", ".npz")) == sorted(
        ["__init__.py", "backend.py", "check.py", "data.py", "fc_net.py", "gradient_check.py", "i18n.py", "layer_utils.py",
         "layers.py", "mistakes.npz", "optim.py", "setup_jupyter.py", "solver.py", "vis.py"])
    assert mistakes.is_current(), "run `make stubs` and commit the result"
    table = self_check_module.mistakes_table()
    assert all(json.loads(parts) for key in table if key.endswith("/parts") for parts in table[key]), \
        "no right computation in the table"
    assert {key.split("/")[0] for key in table} == set(self_check_module.PROBES)


def test_the_students_checks_name_exactly_what_the_graders_diagnosis_names():
    """named_parts (the students' side, float32 values) agrees with diagnosis.confirmed on every modelled value."""
    table = self_check_module.mistakes_table()
    compared = 0
    for key in (k for k in table if k.endswith("/values")):
        probe, which, _ = key.split("/")
        parts = [tuple(map(tuple, json.loads(p))) for p in table[f"{probe}/{which}/parts"]]
        hypotheses = [diagnosis.Hypothesis(p, v.astype(np.float64)) for p, v in zip(parts, table[key])]
        for value in table[key].astype(np.float64):
            assert self_check_module.named_parts(value, probe, which) == (
                diagnosis.confirmed(value, hypotheses, 1e-6, 1e-8) or ()), (probe, which)
            compared += 1
    assert compared > 2000


def test_forbidden_imports_are_named_with_their_lines_and_whether_they_are_used(tmp_path):
    source = reference_layers() + (
        "\nimport scipy.special\nfrom torch import nn\nimport os, numpy.linalg\nfrom . import backend\n"
        "from pyparsing import col as _col\n"
        "def _later():\n    import importlib\n    return importlib.import_module('sklearn.preprocessing')\n"
        "def _uses(x):\n    return nn.functional.relu(x)\n")
    path = tmp_path / "layers.py"
    path.write_text(source)
    found = self_check_module.forbidden_imports(path)
    assert [(module, used) for _, module, used in found] == [
        ("scipy", False), ("torch", True), ("pyparsing", False), ("sklearn", True)]
    assert self_check_module.forbidden_imports(SOLUTION_LAYERS) == [] == self_check_module.forbidden_imports(STUB_LAYERS)
    message, fails = self_check_module.imports_message(path)
    assert fails and "uses torch (line" in message and "only the standard library" in message
    assert "imports scipy (line" in message and "without using it" in message and "costs nothing" in message


@pytest.mark.parametrize("use", [False, True], ids=["unused", "used"])
def test_the_self_check_warns_of_an_unused_import_and_fails_a_used_one(tmp_path, use):
    """An editor's stray import costs nothing when graded: the self-check says so and passes; a use fails."""
    source = "import sklearn\n" + reference_layers() + ("\nVERSION = sklearn.__version__\n" if use else "")
    root = _package(tmp_path, source)
    done = subprocess.run([sys.executable, "-m", "normlab.check"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    said = " ".join(done.stdout.split())
    if use:
        assert done.returncode == 1, "every function passes here, but the grader does not have sklearn"
        assert "normlab/layers.py uses sklearn (line 1)" in said
        rows = [line for line in done.stdout.splitlines() if line.startswith(self_check_module.FUNCTIONS)]
        assert len(rows) == 9 and all(self_check_module.FAILS_GRADED in row for row in rows), \
            "each function's own row says it fails when graded"
        assert "0 of 9 functions pass" in said
    else:
        assert done.returncode == 0, said
        assert "9 of 9 functions pass" in said
        assert "normlab/layers.py imports sklearn (line 1) without using it" in said


def test_a_right_backward_pass_of_a_wrong_forward_pass_is_sent_to_the_forward_pass(tmp_path):
    """A wrong layernorm_forward: its right backward pass's gradient check says to fix the forward pass first."""
    source = reference_layers() + (  # a wrong output, with the right pass's cache: the backward pass is right
        "\n\n_right_layernorm_forward = layernorm_forward\n\n\n"
        "def layernorm_forward(x, gamma, beta, ln_param):\n"
        "    out, cache = _right_layernorm_forward(x, gamma, beta, ln_param)\n"
        "    return out + 0.1 * x.mean(axis=1, keepdims=True), cache\n")
    rows = {f: (status, message) for f, status, message in self_check_module.summary(_layers(_package(tmp_path, source)))}
    assert rows["layernorm_forward"][0] == self_check_module.FAILS
    status, message = rows["layernorm_backward"]
    assert status == self_check_module.FAILS and message.endswith(
        "layernorm_forward is wrong on these inputs, and this check differentiates it: fix layernorm_forward first"), message


def test_a_function_that_uses_a_library_the_grader_lacks_fails_on_its_own_row_and_so_do_its_callers(tmp_path):
    """Used inside batchnorm_forward only: it, and spatial_batchnorm_forward which calls it, fail when graded."""
    source = reference_layers().replace(
        "def batchnorm_forward(", "import scipy.special\n\n\ndef _unused_helper():\n    return 0\n\n\n"
        "def batchnorm_forward(", 1)
    source = source.replace("    mode = _check_mode(bn_param)", "    mode = _check_mode(bn_param)\n    scipy.special.erf(0.0)", 1)
    assert "scipy.special.erf" in source
    layers = _layers(_package(tmp_path, source))
    rows = {function: (status, message) for function, status, message in self_check_module.summary(layers)}
    failing = {f for f, (status, _) in rows.items() if status == self_check_module.FAILS_GRADED}
    assert failing == {"batchnorm_forward", "spatial_batchnorm_forward"}, rows
    assert rows["batchnorm_forward"][1].startswith("uses scipy (line ")
    assert rows["spatial_batchnorm_forward"][1].startswith("calls batchnorm_forward, which uses scipy (line ")
    with pytest.raises(AssertionError, match="does not pass its public checks"):
        self_check_module.check("spatial_batchnorm_forward", layers)
    self_check_module.check("layernorm_forward", layers)  # untouched: passes


def test_the_students_and_the_graders_lists_of_imports_agree():
    """One rule, told to students (normlab.check) and enforced in the sandbox (normgrade.run.worker)."""
    from normgrade.run import worker

    assert self_check_module.GRADED_IMPORTS == worker.ALLOWED_IMPORTS


def test_a_function_that_changes_its_arguments_in_place_changes_no_later_check(tmp_path):
    """
    A forward pass that centres x, gamma and beta in place (`x -= mu`) gets
    copies: the published inputs, the next check and mistakes.npz see the
    values they always had (before, such a file changed them for the rest of
    the process, and a later check in the same kernel judged other inputs).
    """
    from normgrade.score import mistakes

    pristine = {probe: [np.array(a, copy=True) for a in inputs] for probe, (_, _, inputs) in
                self_check_module.PROBES.items()}
    in_place = reference_layers() + (
        "\n\n_right_bn = batchnorm_forward\n\n"
        "def batchnorm_forward(x, gamma, beta, bn_param):\n"
        "    out, cache = _right_bn(x.copy(), gamma.copy(), beta.copy(), bn_param)\n"
        "    x -= 1.0\n    gamma *= 2.0\n    beta += 3.0\n"
        "    return out, cache\n")
    module = _layers(_package(tmp_path, in_place))
    self_check_module.summary(module)  # every check, those that call batch norm's forward pass many times included
    published, _, _ = self_check_module.results("batchnorm_forward", module)
    assert published[1] == self_check_module.PASSES, published  # it returns the right values on the published x
    for probe, inputs in pristine.items():
        for before, now in zip(inputs, self_check_module.PROBES[probe][2]):
            assert np.array_equal(before, now), probe
    assert mistakes.is_current()
    with pytest.raises(ValueError, match="read-only"):
        self_check_module.PROBES["batchnorm_forward"][2][0][0, 0] = 9.0


def test_mistakes_npz_is_stale_when_a_value_moves_and_current_for_last_bit_noise(tmp_path):
    """is_current tolerates the float noise of values that cancel to about 1e-16, nothing the matching could see."""
    from normgrade.score import mistakes

    table = mistakes.table()
    key = next(k for k in table if k.endswith("/out/values"))

    def current_with(values):
        path = tmp_path / "mistakes.npz"
        np.savez_compressed(path, **dict(table, **{key: values}))
        return mistakes.is_current(path)

    assert current_with(table[key])
    noisy = table[key].copy()
    noisy.flat[0] = np.nextafter(noisy.flat[0], np.float32(np.inf))  # one float32 rounding
    assert current_with(noisy)
    moved = table[key].copy()
    moved.flat[0] += np.float32(1e-4) * max(1.0, abs(float(moved.flat[0])))
    assert not current_with(moved)
    assert not current_with(table[key][:-1])
