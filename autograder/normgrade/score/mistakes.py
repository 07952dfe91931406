"""
The students' share of the diagnosis: assignment/normlab/mistakes.npz, derived from normgrade.score.diagnosis.

The public checks (normlab/check.py) name a mistake in the autograder's words,
on their own inputs only. The model of mistakes cannot go to the students: it
computes every layer right too. So this module evaluates the model on each
public check's inputs (normlab.check.PROBES) and writes what every modelled
mistake returns there, with the words for each part:

    <probe>/out/values, <probe>/out/parts   forward probes: one row a mistake
    <probe>/<dx|dgamma|dbeta>/values, .../parts, <probe>/right_out
                                            gradient probes; right_out is the
                                            right forward output on that x, so
                                            the check names a gradient only
                                            for a right forward pass
    <probe>/clauses                         {"part|choice": [template, fields]}:
                                            the diagnosis's words as English
                                            messages of the catalogs
                                            (diagnosis.clause), which
                                            normlab.check translates

Values are float32 (a right answer must match within 1e-6 relative, float32
keeps 6e-8), parts and clauses JSON text. A mistake these inputs cannot
tell from the right computation is left out: a right value is never named. Such values say what a mistake
returns on an input the student already has, and nothing about any other
input. `normgrade stubs` writes the file; tests/test_self_check.py checks it
is current.
"""
import io
import json

import numpy as np

from normgrade.score import diagnosis
from normgrade.paths import STUDENT_PACKAGE
from normgrade.score.reference import course_normlab

MISTAKES_FILE = STUDENT_PACKAGE / "mistakes.npz"


def _rows(hypotheses):
    """
    (values float32 [n, ...], parts as JSON text [n]) of the mistakes among
    the hypotheses that these inputs tell from the right computation (eps
    left out, say, is invisible where every variance is large).
    """
    right = next(h.value for h in hypotheses if not h.parts)
    wrong = [h for h in hypotheses if h.parts and not diagnosis.matches(h.value, right, 1e-6, 1e-8)]
    values = np.stack([np.asarray(h.value, dtype=np.float64) for h in wrong]).astype(np.float32)
    parts = np.array([json.dumps([list(p) for p in h.parts]) for h in wrong])
    return values, parts


def table():
    """{key: array} of mistakes.npz, computed from the model on the public checks' inputs."""
    course_normlab()
    from normlab.check import EPS, PROBES

    data = {}
    for probe, (layer, G, inputs) in PROBES.items():
        clauses = {}
        if probe.endswith("forward"):
            x, gamma, beta = inputs
            if np.ndim(x) == 4 and np.ndim(gamma) == 1:
                gamma, beta = gamma.reshape(1, -1, 1, 1), beta.reshape(1, -1, 1, 1)
            found = {"out": diagnosis.forward_hypotheses(layer, x, gamma, beta, EPS, G=G, eps_given=False)}
        else:
            x, gamma, beta, dout = inputs
            channels = (lambda a: np.reshape(a, (1, -1, 1, 1))) if np.ndim(x) == 4 else (lambda a: a)
            data[f"{probe}/right_out"] = (channels(gamma) * diagnosis.right_x_hat(layer, x, EPS, G)
                                          + channels(beta)).astype(np.float32)
            found = {which: diagnosis.gradient_hypotheses(layer, which, x, channels(gamma), dout, EPS, G)
                     for which in ("dx", "dgamma", "dbeta")}
        for which, hypotheses in found.items():
            data[f"{probe}/{which}/values"], data[f"{probe}/{which}/parts"] = _rows(hypotheses)
            for h in hypotheses:
                for part in h.parts:
                    clauses[f"{part[0]}|{part[1]}"] = diagnosis.clause(*part, probe, layer)
        data[f"{probe}/clauses"] = np.array(json.dumps(clauses, sort_keys=True))
    return data


def is_current(path=MISTAKES_FILE):
    """
    Whether the file at `path` holds what table() computes now: the same keys,
    parts and clauses, and values equal within two float32 roundings. Values
    that cancel to about 1e-16 were seen to differ in their last bits between
    two fresh processes on the same code, far below the 1e-6 the students'
    matching uses.
    """
    try:
        with np.load(path, allow_pickle=False) as saved:
            stored = {key: saved[key] for key in saved.files}
    except (OSError, ValueError):
        return False
    fresh = table()
    return stored.keys() == fresh.keys() and all(_same(stored[k], fresh[k]) for k in fresh)


def _same(stored, fresh):
    if stored.dtype.kind != "f" or fresh.dtype.kind != "f":
        return stored.dtype == fresh.dtype and np.array_equal(stored, fresh)
    return stored.shape == fresh.shape and np.allclose(stored, fresh, rtol=2.5e-7, atol=1e-12, equal_nan=True)


def write(path=MISTAKES_FILE):
    """Write the table to `path`; return True if it changed."""
    if is_current(path):
        return False
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **table())
    path.write_bytes(buffer.getvalue())
    return True
