"""
Diagnosis by probes (normgrade.diagnosis), and the corpus of realistic student code (tests/corpus.py).

- Each probe's right hypothesis reproduces the reference's expected value, so
  the probes and the recipes cannot drift apart.
- On the hidden inputs, every single mistake a probe models is named exactly
  when a value is exactly that mistake: the inputs separate the hypotheses.
- The corpus is graded through the real sandboxed scorer: correct code earns
  every point, every wrong function loses points, no diagnosis is wrong, at
  least 9 in 10 wrong functions are named, and unimplemented functions
  (raising, returning None, returning their inputs) earn nothing at all.
"""
import numpy as np
import pytest

from corpus import CORRECT, UNIMPLEMENTED, UNMODELLED, WRONG, layers_source
from normgrade import checks, diagnosis
from normgrade.scorer import score_code
from test_grading import FAST

QUANTITIES = sorted(checks.CALL_OF)
# Facts straight from the comparison, not diagnoses: a wrong shape or dtype, or an exception.
FACTS = ("shape: ", "dtype: ", "raises")
# What a backward pass is told when its forward pass is wrong: a statement about the forward pass.
DEPENDENT = {"forward: wrong", "backward: consistent with it"}
# What an unimplemented function may be told (a forward pass that returns x writes nothing back either).
UNIMPLEMENTED_KEYS = {"not implemented", "output: x", "dx: dout", "running statistics: unchanged", "write back: missing"}


def _check_of(quantity):
    return next(c for c in checks.CHECKS if quantity in c.quantities)


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_each_probe_reproduces_the_reference(data, quantity):
    probed = diagnosis.probe(quantity, data.inputs, checks.CALL_OF[quantity])
    if probed is None:
        pytest.skip(f"{quantity} has no probe")
    right = [h for h in probed[0] if h.parts == ()]
    assert right, f"{quantity}: no right hypothesis"
    rtol, atol = _check_of(quantity).tolerance
    assert diagnosis.matches(data.expected(quantity), right[0].value, rtol, atol), quantity


def test_every_graded_value_has_a_probe(data):
    unprobed = [q for q in QUANTITIES if diagnosis.probe(q, data.inputs, checks.CALL_OF[q]) is None]
    assert unprobed == []


MAIN = ("bn_train_out", "bn_test_out", "bn_steps_running_mean", "bn_steps_running_var", "ln_out",
        "sbn_train_out", "sbn_test_out", "gn_G2_out", "batchnorm_backward_dx",
        "batchnorm_backward_alt_dx", "ln_dx", "sbn_dx", "gn_G2_dx", "batchnorm_backward_dgamma", "gn_G2_dbeta")


@pytest.mark.parametrize("quantity", MAIN)
def test_the_hidden_inputs_separate_every_single_mistake(data, quantity):
    """A value that is exactly one modelled mistake is named as exactly that mistake, by these inputs."""
    hypotheses, _ = diagnosis.probe(quantity, data.inputs, checks.CALL_OF[quantity])
    rtol, atol = _check_of(quantity).tolerance
    singles = [h for h in hypotheses if len(h.parts) == 1]
    assert singles
    for h in singles:
        assert not diagnosis.matches(h.value, data.expected(quantity), rtol, atol), (quantity, h.parts)
        assert diagnosis.confirmed(h.value, hypotheses, rtol, atol) == h.parts, (quantity, h.parts)


def test_nothing_is_stated_when_two_explanations_fit(data):
    """An entry-wise mix of two single mistakes matches neither: what differs is said, nothing is guessed."""
    hypotheses, _ = diagnosis.probe("bn_train_out", data.inputs, checks.CALL_OF["bn_train_out"])
    one, two = (next(h for h in hypotheses if h.parts == parts)
                for parts in ((("eps", "missing"),), (("variance", "unbiased"),)))
    mixed = one.value.copy()
    mixed[:, 3:] = two.value[:, 3:]
    assert diagnosis.confirmed(mixed, hypotheses, 1e-6, 1e-8) is None
    text = diagnosis.describe_difference(mixed, data.expected("bn_train_out"), 1e-6, 1e-8)
    assert "entries differ" in text and "largest difference is at" in text


def test_describe_difference_says_where_and_what():
    expected = np.arange(1.0, 13.0).reshape(4, 3)
    value = expected.copy()
    value[:, 1] += 0.5
    text = diagnosis.describe_difference(value, expected, 1e-6, 1e-8)
    assert "4 of 12 entries differ" in text and "only in feature (column) 1 of 3" in text
    assert "times 2" in diagnosis.describe_difference(expected * 2, expected, 1e-6, 1e-8)
    assert "plus 0.25" in diagnosis.describe_difference(expected + 0.25, expected, 1e-6, 1e-8)
    assert "all zeros" in diagnosis.describe_difference(expected * 0, expected, 1e-6, 1e-8)


# ---- the corpus, through the real sandbox -----------------------------------------------------


def _grade(tmp_path, entry, data, sandbox):
    path = tmp_path / "layers.py"
    path.write_text(layers_source(entry.sources))
    return score_code(path, checks.FUNCTIONS, data, sandbox, FAST)


def _stated(results):
    return {key for r in results if r.mistake for key in r.mistake.split("; ")}


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory, data, sandbox):
    results = {}
    for entry in CORRECT + WRONG + UNMODELLED + UNIMPLEMENTED:
        results[entry.name] = _grade(tmp_path_factory.mktemp("entry"), entry, data, sandbox)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("entry", CORRECT, ids=[e.name for e in CORRECT])
def test_correct_code_written_differently_earns_every_point(corpus_results, entry):
    lost = {f: [r.message for r in rs if r.message] for f, rs in corpus_results[entry.name].items()}
    assert {f: m for f, m in lost.items() if m} == {}


@pytest.mark.slow
@pytest.mark.parametrize("entry", UNIMPLEMENTED, ids=[e.name for e in UNIMPLEMENTED])
def test_an_unimplemented_function_earns_nothing_not_even_its_invariants(corpus_results, entry):
    function = entry.name.split()[0]
    results = corpus_results[entry.name][function]
    assert [r.earned for r in results] == [0.0] * len(results)
    assert all(r.message for r in results)


def corpus_tally(corpus_results):
    """
    Over every wrong function of WRONG and UNIMPLEMENTED: (named, unnamed,
    wrongly diagnosed, rows). Named: every expected key is stated. Wrong: a key
    is stated that the entry does not have (facts and what a backward pass is
    told about a wrong forward pass aside).
    """
    named, unnamed, wrong, rows = 0, 0, 0, []
    for entry in WRONG + UNMODELLED + UNIMPLEMENTED:
        scores = corpus_results[entry.name]
        expected = dict(entry.wrong)
        if entry in UNIMPLEMENTED:
            function, how = entry.name.split(" ", 1)
            expected = {function: set()}
        for function, results in scores.items():
            stated = _stated(results)
            diagnoses = {k for k in stated if not k.startswith(FACTS) and k not in DEPENDENT}
            allowed = expected.get(function, set()) | (UNIMPLEMENTED_KEYS if entry in UNIMPLEMENTED else set())
            extra = diagnoses - allowed
            if extra:
                wrong += 1
                rows.append(("WRONG", entry.name, function, sorted(stated), [r.message for r in results if r.message]))
            if function not in expected:
                continue
            if entry in UNIMPLEMENTED:
                ok = bool(stated & (UNIMPLEMENTED_KEYS | {"raises"}))
            else:
                ok = bool(expected[function]) and expected[function] <= stated
            named += ok
            unnamed += not ok
            rows.append(("named" if ok else "unnamed", entry.name, function, sorted(stated), ""))
    return named, unnamed, wrong, rows


@pytest.mark.slow
def test_the_corpus_no_wrong_diagnosis_and_nine_in_ten_named(corpus_results):
    named, unnamed, wrong, rows = corpus_tally(corpus_results)
    for row in rows:
        if row[0] != "named":
            print(*row[:4], *(row[4:] and row[4][:3]), sep=" | ")
    print(f"corpus: {named} named, {unnamed} unnamed, {wrong} wrongly diagnosed, of {named + unnamed} wrong functions")
    assert wrong == 0
    assert named >= 0.9 * (named + unnamed)


@pytest.mark.slow
def test_the_self_check_names_only_what_the_grader_names(corpus_results, tmp_path):
    """
    The students' public checks (normlab.check, on the published examples) and
    the grader (on the hidden inputs) use one model of mistakes: whatever the
    self-check names for a corpus entry, the grader names too.
    """
    from test_self_check import corpus_public_mistakes

    public = corpus_public_mistakes(tmp_path, WRONG + UNMODELLED)
    differ = {(entry.name, function): (keys, _stated(corpus_results[entry.name][function]))
              for entry in WRONG + UNMODELLED for function, (_, keys) in public[entry.name].items()
              if keys - _stated(corpus_results[entry.name][function])}
    assert differ == {}
    assert sum(bool(keys) for by in public.values() for _, keys in by.values()) >= 40


@pytest.mark.slow
@pytest.mark.parametrize("entry", WRONG + UNMODELLED, ids=[e.name for e in WRONG + UNMODELLED])
def test_every_wrong_function_loses_points_and_nothing_else_does(corpus_results, entry):
    scores = corpus_results[entry.name]
    for function, results in scores.items():
        earned = sum(r.earned for r in results)
        if function in entry.wrong:
            assert earned < checks.total_points(function), f"{function} kept full points"
        elif earned < checks.total_points(function):
            # Only a backward pass whose forward pass is wrong may lose points it did not earn wrong itself.
            forward = checks.GRADIENTS.get(function, ("",))[0]
            assert forward in entry.wrong, (function, [r.message for r in results if r.message])


@pytest.mark.slow
@pytest.mark.parametrize("entry, functions", [
    ("eps missing in the forward pass, with a backward exact for it",
     ("batchnorm_backward", "batchnorm_backward_alt", "spatial_batchnorm_backward")),
    ("unbiased variance in the forward pass, with a step-by-step backward exact for it", ("batchnorm_backward",)),
])
def test_a_backward_exact_for_a_wrong_forward_keeps_its_gradient_points(corpus_results, entry, functions):
    scores = corpus_results[entry]
    for function in functions:
        gradient = next(r for r in scores[function] if r.check.gradient)
        assert gradient.earned == gradient.check.points, gradient.message
        dx = next(r for r in scores[function] if r.check.label == "dx")
        assert dx.earned == 0 and "fix the forward pass first" in dx.message and "does match" in dx.message


@pytest.mark.slow
def test_a_cs231n_stub_with_its_write_back_lines_earns_nothing_and_is_called_not_implemented(corpus_results):
    """It once earned 0.5 for leaving the running statistics alone in test mode, and was told they are not written back."""
    results = corpus_results["CS231n stub left as it was (pass, write-back kept)"]["batchnorm_forward"]
    assert [r.earned for r in results] == [0.0] * len(results)
    assert _stated(results) == {"not implemented"}
