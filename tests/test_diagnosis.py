"""
Diagnosis by probes (normgrade.score.diagnosis), and the corpus of realistic student code (tests/corpus.py).

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
from judge import all_keys, judge, stated_keys
from normgrade.score import checks, diagnosis, expected
from normgrade.score.scorer import collect
from test_grading import FAST

# one pytest-xdist worker runs them all: module-scoped corpus graded through the sandbox
pytestmark = pytest.mark.xdist_group("diagnosis")

QUANTITIES = sorted(checks.CALL_OF)
# What an unimplemented function may be told (a forward pass that returns x writes nothing back either).
UNIMPLEMENTED_KEYS = {"not implemented", "output: x", "dx: dout", "running statistics: unchanged", "write back: missing"}


# Each course draws its own hidden inputs (normgrade release): what the probes rely on must hold for any seed.
SEEDS = (expected.FIXED_SEED, 7, 31337, 2 ** 62 + 11)


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed {s}" for s in SEEDS])
def seeded(request, tmp_path_factory):
    """The expected values of the reference on the hidden inputs drawn from each of SEEDS."""
    path = tmp_path_factory.mktemp("seeded") / "expected.npz"
    return expected.ExpectedValues(expected.write(path, expected.generate({}, seed=request.param)))


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_each_probe_reproduces_the_reference(seeded, quantity):
    data = seeded
    probed = diagnosis.probe(quantity, data.inputs, checks.CALL_OF[quantity])
    if probed is None:
        pytest.skip(f"{quantity} has no probe")
    right = [h for h in probed[0] if h.parts == ()]
    assert right, f"{quantity}: no right hypothesis"
    rtol, atol = checks.tolerance(data.expected(quantity))
    assert diagnosis.matches(data.expected(quantity), right[0].value, rtol, atol), quantity


def test_every_graded_value_has_a_probe(data):
    unprobed = [q for q in QUANTITIES if diagnosis.probe(q, data.inputs, checks.CALL_OF[q]) is None]
    assert unprobed == []


MAIN = ("bn_train_out", "bn_test_out", "bn_steps_running_mean", "bn_steps_running_var", "ln_out",
        "sbn_train_out", "sbn_test_out", "gn_G2_out", "batchnorm_backward_dx",
        "batchnorm_backward_alt_dx", "ln_dx", "sbn_dx", "gn_G2_dx", "batchnorm_backward_dgamma", "gn_G2_dbeta",
        "bn_square_out", "ln_square_out", "sbn_square_out")


@pytest.mark.parametrize("quantity", MAIN)
def test_the_hidden_inputs_separate_every_single_mistake(seeded, quantity):
    """
    A value that is exactly one modelled mistake is named as exactly that
    mistake, by these inputs, whatever the seed; but for two mistakes that are
    one computation at these sizes (SAME_HERE), of which neither is named.
    """
    data = seeded
    hypotheses, _ = diagnosis.probe(quantity, data.inputs, checks.CALL_OF[quantity])
    rtol, atol = checks.tolerance(data.expected(quantity))
    singles = [h for h in hypotheses if len(h.parts) == 1]
    assert singles
    for h in singles:
        assert not diagnosis.matches(h.value, data.expected(quantity), rtol, atol), (quantity, h.parts)
        same = {p for pair in SAME_HERE.get(quantity, ()) if h.parts[0] in pair for p in pair}
        assert diagnosis.confirmed(h.value, hypotheses, rtol, atol) == (None if same else h.parts), (quantity, h.parts)


# Where sizes coincide, some mistakes are one computation: with N == C, the rows of x.reshape(C, -1) are the
# examples (x centred by their means, then divided by each channel's spread, is one computation).
SAME_HERE = {"sbn_square_out": ((("mean", "channel rows"), ("mean", "layer")),)}


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
    """(raw values, {function: [Result]}) of an entry, through the real sandbox."""
    path = tmp_path / "layers.py"
    path.write_text(layers_source(entry.sources))
    calls = [call for function in checks.FUNCTIONS for call in checks.calls_for(function)]
    values = collect(path, calls, data.all_inputs, sandbox, FAST)
    return values, {function: checks.score(function, values, data) for function in checks.FUNCTIONS}


def _stated(results):
    return set(all_keys(results))


@pytest.fixture(scope="module")
def corpus_graded(tmp_path_factory, data, sandbox):
    return {entry.name: _grade(tmp_path_factory.mktemp("entry"), entry, data, sandbox)
            for entry in CORRECT + WRONG + UNMODELLED + UNIMPLEMENTED}


@pytest.fixture(scope="module")
def corpus_results(corpus_graded):
    return {name: results for name, (_, results) in corpus_graded.items()}


@pytest.mark.slow
def test_pytorch_agrees_with_every_verdict_on_the_corpus(corpus_graded, data):
    """
    Each function of each entry judged against PyTorch float64 (tests/judge.py):
    no false pass, no false fail, and the functions PyTorch finds wrong are
    exactly those the entry lists (a backward pass whose cache comes from a
    wrong forward output aside).
    """
    pytest.importorskip("torch")
    import torch_layers

    oracle = torch_layers.quantities(data.inputs)
    disagree = []
    for entry in CORRECT + WRONG + UNMODELLED:
        values, results = corpus_graded[entry.name]
        for function, v in judge(values, results, oracle).items():
            listed = function in entry.wrong
            if v.false_pass or v.false_fails or (not v.dependent and listed == v.right):
                disagree.append((entry.name, function, "listed wrong" if listed else "not listed",
                                 "PyTorch: right" if v.right else "PyTorch: wrong", v.false_fails, v.messages[:2]))
    assert disagree == []


@pytest.mark.slow
def test_a_forward_pass_of_the_wrong_shape_costs_its_backward_pass_nothing(corpus_results):
    """Group norm's output 7-D (gamma indexed as if of shape (C,)), its backward right: the backward keeps every point."""
    scores = corpus_results["group norm indexes gamma as (C,): a 7-D output, its backward right"]
    assert sum(r.earned for r in scores["spatial_groupnorm_forward"]) == 0
    assert "its values are right, in an array with extra axes of size 1" in scores["spatial_groupnorm_forward"][0].message
    assert [r.message for r in scores["spatial_groupnorm_backward"] if r.message] == []


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
            stated, diagnoses = _stated(results), stated_keys(results)
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


def test_the_judge_counts_what_it_says():
    """tests/judge.py's tally, which the public-code figures come from, on verdicts made by hand."""
    from judge import Verdict, tally

    def verdict(right=False, earned=0.0, false_fails=(), dependent=False, stated=(), facts=()):
        return Verdict("f", right, earned, 3.0, tuple(false_fails), dependent, frozenset(stated),
                       frozenset(stated) | frozenset(facts), ())

    verdicts = {
        ("a", "right"): verdict(right=True, earned=3.0),
        ("a", "false fail"): verdict(right=True, earned=1.5, false_fails=("gradients",)),
        ("a", "dependent"): verdict(dependent=True),
        ("a", "named"): verdict(stated={"eps: outside"}),
        ("a", "named by a fact"): verdict(facts={"shape: axes of size 1 added"}),
        ("a", "unnamed"): verdict(),
        ("a", "misnamed"): verdict(stated={"eps: missing"}),
        ("a", "unmodelled"): verdict(),
        ("a", "false pass"): verdict(earned=3.0),
        ("a", "unlabelled"): verdict(),
    }
    labels = {("a", "named"): {"eps: outside"}, ("a", "named by a fact"): {"shape: axes of size 1 added"},
              ("a", "unnamed"): {"eps: outside"}, ("a", "misnamed"): {"eps: outside"}, ("a", "unmodelled"): set(),
              ("a", "false pass"): {"affine: per row"}, ("a", "right"): {"eps: outside"}}
    counts, rows = tally(verdicts, labels)
    assert counts == {"right": 2, "false fail": 1, "dependent": 1, "wrong": 7, "false pass": 1, "named": 2,
                      "unnamed": 2, "misnamed": 1, "unmodelled": 1, "unlabelled": 1, "labelled but right": 1}
    assert {(function, status) for _, function, status, _ in rows} >= {
        ("misnamed", "misnamed"), ("false pass", "unnamed (false pass)"), ("right", "labelled but right")}


def test_public_code_keeps_its_functions_and_numpy_but_no_other_import():
    from judge import public_layers

    text = public_layers("import numpy as np\nfrom anyio import run\nfrom .fast_layers import *\n"
                         "from builtins import range\n\ndef batchnorm_forward(x, gamma, beta, bn_param):\n"
                         "    return x, None\n")
    tail = text.rsplit("### END SOLUTION", 1)[1]
    assert "import numpy as np" in tail and "anyio" not in tail and "fast_layers" not in tail
    assert tail.rstrip().endswith("return x, None")


def test_hypotheses_asked_again_are_remembered_by_content_never_by_place():
    """forward_hypotheses remembers a call by its arguments' content: the same answer, a list of one's own, read-only."""
    from normgrade.score.diagnosis import forward_hypotheses

    rng = np.random.default_rng(7)
    x, gamma, beta = rng.normal(size=(4, 3)), np.ones(3), np.zeros(3)
    first = forward_hypotheses("batchnorm", x, gamma, beta, 1e-5)
    again = forward_hypotheses("batchnorm", x.copy(), gamma, beta, 1e-5)
    assert again is not first and [h.parts for h in again] == [h.parts for h in first]
    assert all(a.value is b.value for a, b in zip(first, again)), "answered from memory"
    again.append("mine")
    assert "mine" not in forward_hypotheses("batchnorm", x, gamma, beta, 1e-5)
    with pytest.raises(ValueError):
        first[1].value[...] = 0  # read-only: no caller can change what another is given
    x[0, 0] += 1  # the same array, changed in place: other content, other hypotheses
    changed = forward_hypotheses("batchnorm", x, gamma, beta, 1e-5)
    assert not np.allclose(changed[1].value, first[1].value)
    right = next(h.value for h in changed if not h.parts)
    assert np.allclose(right, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5))
