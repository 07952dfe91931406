"""
The grader's verdicts held against PyTorch's, function by function.

`judge` takes the raw values a student's layers.py returned on the hidden
inputs (normgrade.score.scorer.collect), the grader's results on them
(normgrade.score.checks.score) and PyTorch's values of every graded quantity
(torch_layers.quantities), and says, per function:
- right: every value check's quantities match PyTorch's (shape, dtype,
  values, at the grader's tolerance);
- false pass: PyTorch says wrong, the grader gave full points;
- false fail: a check whose quantities match PyTorch's lost its points (but
  dbeta, which earns only with a forward pass that normalizes, by design,
  where the forward output is wrong), or a gradient check of a backward pass
  whose forward and backward passes both match PyTorch's;
- dependent: a backward pass whose forward pass's output is wrong where one
  of its caches comes from (checks.FORWARD_OF), so it is not judged on its own;
- stated: the diagnosis keys its feedback stated (facts such as a wrong shape
  and what a backward pass is told of its forward pass aside).

Used by tests/test_diagnosis.py on the corpus, and as a script on public
student code (tests/data/public_code.csv lists it):

    python tests/judge.py FOLDER tests/data/public_labels.csv
    # FOLDER/<owner>__<repo>.py: each a public layers.py (tests/data/public_code.csv lists them)
"""
import ast
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normgrade.score import checks

# Facts straight from the comparison, not diagnoses: a wrong shape or dtype, or an exception.
FACTS = ("shape: ", "dtype: ", "raises")
# What a backward pass is told when its forward pass is wrong: a statement about the forward pass.
DEPENDENT = {checks.FORWARD_WRONG, checks.CONSISTENT}


@dataclass(frozen=True)
class Verdict:
    function: str
    right: bool  # PyTorch: every value check's quantities match
    earned: float
    total: float
    false_fails: tuple  # labels of checks that lost points PyTorch says they earned
    dependent: bool  # a backward pass whose forward pass PyTorch says is wrong
    stated: frozenset  # the diagnosis keys stated
    keys: frozenset  # every key stated, facts included
    messages: tuple

    @property
    def false_pass(self):
        return not self.right and not self.dependent and self.earned == self.total


def all_keys(results):
    return frozenset(key for r in results if r.mistake for key in r.mistake.split("; "))


def stated_keys(results):
    return frozenset(k for k in all_keys(results) if not k.startswith(FACTS) and k not in DEPENDENT)


def _matches(check, values, oracle):
    for quantity in check.quantities:
        if checks.compare(values.get(quantity, checks.Failure("was not returned")), oracle[quantity]):
            return False
    return all(isinstance(values.get(q), np.ndarray) for q in check.finishes)


def judge(values, results, oracle):
    """{function: Verdict} from raw values, the grader's {function: [Result]} and PyTorch's quantities."""
    value_ok = {id(c): _matches(c, values, oracle) for c in checks.CHECKS if not c.gradient}
    right = {f: all(value_ok[id(c)] for c in checks.checks_for(f) if not c.gradient) for f in checks.FUNCTIONS}
    verdicts = {}
    for function, function_results in results.items():
        # Its caches' forward outputs (checks.FORWARD_OF: the main inputs' and each edge case's), one wrong is enough.
        cached = {checks.FORWARD_OF[q] for c in checks.checks_for(function) for q in c.quantities if q in checks.FORWARD_OF}
        dependent = any(checks.compare(values.get(q), oracle[q]) is not None for q in cached)
        false_fails = []
        for r in function_results:
            if not r.message:
                continue
            if r.check.gradient:
                earns = not dependent and right[function]
            else:  # dbeta (gated) earns only with a forward pass that normalizes, by design: not judged when dependent
                earns = value_ok[id(r.check)] and not (r.check.gated and dependent)
            if earns:
                false_fails.append(r.check.label)
        verdicts[function] = Verdict(function, right[function], sum(r.earned for r in function_results),
                                     checks.total_points(function), tuple(false_fails), dependent,
                                     stated_keys(function_results), all_keys(function_results),
                                     tuple(r.message for r in function_results if r.message))
    return verdicts


# ---- public code -------------------------------------------------------------------------------


def public_layers(text):
    """
    The reference layers.py with a public file's top-level functions defined
    again after it (the last definition is the one graded), and its imports of
    NumPy and math (an editor's stray imports, such as anyio, and its
    package's own are left out: the layers' maths is what is judged).
    """
    from normgrade.build.samples import reference_layers

    tree = ast.parse(text)
    kept = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            kept.append(ast.get_source_segment(text, node))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if not getattr(node, "level", 0) and all(m.split(".")[0] in ("numpy", "math") for m in modules):
                kept.append(ast.get_source_segment(text, node))
    return reference_layers() + "\n\n" + "\n\n".join(kept) + "\n"


def read_labels(path):
    """{(file, function): expected keys} from a CSV of file, function, keys ("; "-separated; empty: unmodelled)."""
    with open(path, newline="") as f:
        return {(row["file"], row["function"]): frozenset(k for k in row["keys"].split("; ") if k)
                for row in csv.DictReader(f)}


def tally(verdicts, labels):
    """
    Counts over {(file, function): Verdict} with the labels of the wrong
    functions (read_labels): right, false fails, dependent, wrong; of the
    wrong, false passes, and by label: named (every labelled key stated),
    unnamed, misnamed (a diagnosis stated that the label lacks), unmodelled
    (label empty), unlabelled; and the rows behind the counts.
    """
    counts = dict.fromkeys(("right", "false fail", "dependent", "wrong", "false pass", "named", "unnamed",
                            "misnamed", "unmodelled", "unlabelled", "labelled but right"), 0)
    rows = []
    for (file, function), v in sorted(verdicts.items()):
        label = labels.get((file, function))
        if v.right or v.dependent:
            status = "right" if v.right else "dependent"
            counts[status] += 1
            counts["false fail"] += bool(v.false_fails)
            counts["labelled but right"] += v.right and label is not None
            if v.false_fails or (v.right and label is not None):
                rows.append((file, function, "false fail" if v.false_fails else "labelled but right", v))
            continue
        counts["wrong"] += 1
        counts["false pass"] += v.false_pass
        if label is None:
            status = "unlabelled"
        elif v.stated - label:
            status = "misnamed"
        elif not label:
            status = "unmodelled"
        else:
            status = "named" if label <= v.keys else "unnamed"
        counts[status] += 1
        rows.append((file, function, status + (" (false pass)" if v.false_pass else ""), v))
    return counts, rows


def main(argv):
    """python tests/judge.py FOLDER [LABELS.csv]: every public layers.py in FOLDER judged, then the counts."""
    import tempfile

    import torch_layers
    from normgrade.score.expected import FIXED_SEED, ExpectedValues, generate, write
    from normgrade.score.notebooks import answer_keys
    from normgrade.run.sandbox import Sandbox
    from normgrade.score.scorer import collect

    folder = Path(argv[0])
    labels = read_labels(argv[1]) if len(argv) > 1 else {}
    verdicts = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = ExpectedValues(write(Path(tmp) / "expected.npz", generate(answer_keys(), seed=FIXED_SEED)))
        oracle = torch_layers.quantities(data.inputs)
        calls = [call for f in checks.FUNCTIONS for call in checks.calls_for(f)]
        for path in sorted(folder.glob("*.py")):
            layers = Path(tmp) / "layers.py"
            layers.write_text(public_layers(path.read_text()))
            values = collect(layers, calls, data.all_inputs, Sandbox())
            results = {f: checks.score(f, values, data) for f in checks.FUNCTIONS}
            for function, v in judge(values, results, oracle).items():
                verdicts[path.name, function] = v
    counts, rows = tally(verdicts, labels)
    for file, function, status, v in rows:
        print(file, function, status, f"{v.earned:g}/{v.total:g}", "; ".join(sorted(v.keys)),
              " || ".join(v.messages)[:400], sep="\t")
    print(f"{len({f for f, _ in verdicts})} files, {len(verdicts)} functions:",
          ", ".join(f"{n} {k}" for k, n in counts.items()))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1:])
