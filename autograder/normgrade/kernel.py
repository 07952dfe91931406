"""
What the hidden test cells call, inside the kernel that nbgrader runs.

    import normgrade
    normgrade.grade("batchnorm_forward")        # last expression: the points earned
    normgrade.grade_answer("inline_batch_size", inline_batch_size)

Both print a message for every lost point (on stdout: nbgrader zeroes a cell
that writes to stderr) and return the points as a float, which nbgrader takes
as partial credit. grade() imports the student's normlab afresh from the
notebook's folder, so it grades the files on disk, whatever the notebook's
state or the order its cells ran in.
"""
import contextlib
import io
import os
import warnings
from pathlib import Path

from . import checks
from .expected import EXPECTED_NAME, ExpectedValues
from .submission import imported_package

ENV_EXPECTED = "NORMGRADE_EXPECTED"


def find_expected(folder=None):
    """The expected-values file: $NORMGRADE_EXPECTED, else normgrade_expected.npz in `folder` (cwd)."""
    if os.environ.get(ENV_EXPECTED):
        return Path(os.environ[ENV_EXPECTED])
    path = Path(folder or Path.cwd()) / EXPECTED_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{EXPECTED_NAME} is not next to the notebook ({path.parent}); grade with a course built by "
            f"`normgrade release`, or point ${ENV_EXPECTED} at the file"
        )
    return path


def grade_results(function, submission_dir=None, expected_path=None):
    """Grade one function of the normlab package in submission_dir (cwd); return checks.Result list."""
    data = ExpectedValues(expected_path or find_expected(submission_dir))
    captured = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
        warnings.simplefilter("ignore")
        try:
            with imported_package(submission_dir or Path.cwd()):
                import normlab.gradient_check
                import normlab.layers

                return checks.evaluate(function, normlab.layers, normlab.gradient_check, data)
        except (Exception, SystemExit) as err:  # the package itself does not import (or exits)
            reason = f"normlab could not be imported: {type(err).__name__}: {err}"
            return [checks.Result(c, 0.0, reason) for c in checks.checks_for(function)]


def grade(function, submission_dir=None, expected_path=None):
    """Grade one student function; print the report and return the points earned."""
    results = grade_results(function, submission_dir, expected_path)
    print(checks.report(function, results))
    return float(sum(r.earned for r in results))


def grade_answer(question, answer, points=1.0, expected_path=None):
    """
    Grade an inline multiple-choice answer against its key; print the outcome
    and return the points. A key that is a dict earns points per entry.
    """
    keys = ExpectedValues(expected_path or find_expected()).answer_keys
    if question not in keys:
        raise KeyError(f"no answer key for {question!r}; keys exist for {sorted(keys)}")
    key = keys[question]
    if isinstance(key, dict):
        answer = answer if isinstance(answer, dict) else {}
        right = [k for k in key if answer.get(k) == key[k]]
        earned = points * len(right) / len(key)
        wrong = sorted(set(key) - set(right))
        print(f"{question}: {earned:g} / {points:g} points" + (f"; not right: {', '.join(wrong)}" if wrong else ""))
        return float(earned)
    earned = float(points) if answer == key else 0.0
    print(f"{question}: {earned:g} / {points:g} points" + ("" if earned else f"; {answer!r} is not the answer"))
    return earned
