"""
End to end through real nbgrader and real Jupyter kernels: release, autograde, feedback, export.

One course is built for the module (`normgrade release`'s core, with its proof),
then a class of submissions is graded through the `normgrade grade` command.
"""
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from normgrade.autograde import grade
from normgrade.course import paths
from normgrade.expected import EXPECTED_NAME
from normgrade.export import write_csv
from normgrade.feedback import HIDDEN_MARKERS, generate_feedback
from normgrade.notebooks import answer_keys, source_notebooks
from normgrade.release import build_course, find_leaks
from normgrade.samples import TYPICAL_MISTAKES, make_submission, mutant_layers, reference_layers
from normgrade.paths import NOTEBOOKS, STUB_LAYERS

pytestmark = pytest.mark.slow
CS231N_LAYERS = Path(__file__).parent / "data" / "cs231n_layers.py"

HOSTILE = reference_layers() + '''
# Vandalism: everything this code can reach by a relative path, at import time.
import sys as _sys
from pathlib import Path as _Path

for _target in ("normgrade_expected.npz", "../../../source/normalization/normgrade_expected.npz",
                "../../../gradebook.db", "../../../nbgrader_config.py"):
    try:
        _Path(_target).write_bytes(b"vandalised")
    except OSError:
        pass
print("hostile import", file=_sys.stderr)
'''

KILLER = """
import os as _os

def layernorm_forward(x, gamma, beta, ln_param):
    _os._exit(1)  # the kernel dies in the middle of grading
"""

CHEATER = STUB_LAYERS.read_text() + '''
# Cheating: run the reference solution if it can be found next to the submission.
from pathlib import Path as _Path

for _candidate in ("../../../source/normalization/normlab/layers.py", "../../source/normalization/normlab/layers.py"):
    if _Path(_candidate).is_file():
        exec(_Path(_candidate).read_text().replace("from .backend", "from normlab.backend"))
'''


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    folder = tmp_path_factory.mktemp("course") / "course"
    start = time.perf_counter()
    proof = build_course(folder)  # raises unless the reference gets full marks and the stubs no code points
    print(f"\nrelease + proof: {time.perf_counter() - start:.1f} s; reference graded in {proof[0]['seconds']} s, "
          f"stubs in {proof[1]['seconds']} s")
    return folder, proof


@pytest.fixture(scope="module")
def keys(course):
    return answer_keys(source_notebooks(paths(course[0])["source"]))


def test_release_proof_reference_full_marks_stubs_none(course):
    reference, stubs = course[1]
    assert reference["score"] == reference["max_score"] == 36
    code = [t for t in stubs["tests"] if not t["name"].split("/")[1].startswith("test_inline")]
    assert len(code) == 9 and all(t["score"] == 0 for t in code)
    assert all("NotImplementedError" in t["message"] for t in code)


def test_release_holds_no_secret(course):
    release = paths(course[0])["release"]
    notebooks = source_notebooks(NOTEBOOKS)
    assert find_leaks(release, notebooks) == []
    assert sorted(p.name for p in release.iterdir()) == ["BatchNormalization.ipynb", "SpatialNormalization.ipynb", "normlab"]
    assert (release / "normlab" / "layers.py").read_text() == STUB_LAYERS.read_text()


def test_leak_check_catches_planted_secrets(course, keys, tmp_path):
    planted = tmp_path / "release"
    shutil.copytree(paths(course[0])["release"], planted)
    shutil.copy(paths(course[0])["source"] / EXPECTED_NAME, planted / EXPECTED_NAME)
    (planted / "normlab" / "layers.py").write_text(reference_layers())
    (planted / "normlab" / "helpers.py").write_text("x_hat = x_centered * inv_std\n")
    nb_path = planted / "BatchNormalization.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].source += "\n### BEGIN HIDDEN TESTS\nimport normgrade\n### END HIDDEN TESTS\n"
    nb.cells[2].source = f"inline_batch_size = {keys['inline_batch_size']!r}"
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="expected: 0.123")]
    nbformat.write(nb, nb_path)
    problems = "\n".join(find_leaks(planted, source_notebooks(NOTEBOOKS)))
    for needle in (EXPECTED_NAME, "helpers.py", "not the stub file", "solution code", "BEGIN HIDDEN TESTS",
                   "answer key of inline_batch_size", "has outputs"):
        assert needle in problems, needle


@pytest.fixture(scope="module")
def graded_class(course, keys, tmp_path_factory):
    """A class folder graded through the normgrade command, in an order that puts hostile code first."""
    folder, _ = course
    release = paths(folder)["release"]
    root = tmp_path_factory.mktemp("class")
    make_submission(release, root / "a_hostile", HOSTILE, keys)
    make_submission(release, root / "a_kills_kernel", reference_layers() + KILLER, keys)
    make_submission(release, root / "b_cheater", CHEATER, keys)
    make_submission(release, root / "c_reference", reference_layers(), keys)
    make_submission(release, root / "d_mistakes", mutant_layers(*TYPICAL_MISTAKES), keys)
    make_submission(release, root / "e_cs231n", CS231N_LAYERS.read_text(), keys)
    deleted = make_submission(release, root / "f_deleted_cells", reference_layers(), keys)
    nb_path = deleted / "BatchNormalization.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    gone = {"test_batchnorm_forward", "test_inline_batch_size"}
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in gone]
    nbformat.write(nb, nb_path)

    before = {p: _digest(p) for p in paths(folder)["source"].rglob("*") if p.is_file()}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(root), "--course", str(folder), "--json"],
                          capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    print(f"\ngraded {len(document['submissions'])} submissions in {elapsed:.1f} s: "
          + ", ".join(f"{s['student']} {s['seconds']} s" for s in document["submissions"]))
    after = {p: _digest(p) for p in paths(folder)["source"].rglob("*") if p.is_file()}
    return document, before, after, root


def _by_student(document):
    return {s["student"]: s for s in document["submissions"]}


def test_json_document_shape(graded_class):
    document, _, _, root = graded_class
    for submission in document["submissions"]:
        assert set(submission) >= {"path", "score", "max_score", "tests"}
        assert Path(submission["path"]).parent == root
        assert submission["max_score"] == 36
        assert submission["score"] == sum(t["score"] for t in submission["tests"])
        for test in submission["tests"]:
            assert set(test) == {"name", "score", "max_score", "message"}
            assert (test["message"] == "") == (test["score"] == test["max_score"]), test


def test_reference_and_cs231n_drop_in_get_full_marks_after_hostile_code(graded_class):
    students = _by_student(graded_class[0])
    for name in ("c_reference", "e_cs231n"):
        assert students[name]["score"] == 36, [t for t in students[name]["tests"] if t["message"]]


def test_hostile_code_damages_nothing_outside_its_own_grading(graded_class, course):
    _, before, after, _ = graded_class
    assert before == after, "a submission changed the course's source files"
    from nbgrader.api import Gradebook
    from normgrade.course import COURSE_ID, db_url

    with Gradebook(db_url(course[0]), COURSE_ID) as gb:  # the gradebook still opens and holds every student
        assert {s.id for s in gb.students} >= {"a_hostile", "c_reference", "f_deleted_cells"}


def test_a_dying_kernel_costs_only_its_own_points(graded_class):
    students = _by_student(graded_class[0])
    killer = students["a_kills_kernel"]
    assert killer["score"] < 36 and (killer.get("error") or any(t["message"] for t in killer["tests"]))
    assert students["c_reference"]["score"] == 36


def test_the_reference_is_out_of_the_kernels_reach(graded_class):
    cheater = _by_student(graded_class[0])["b_cheater"]
    code = [t for t in cheater["tests"] if not t["name"].split("/")[1].startswith("test_inline")]
    assert all(t["score"] == 0 for t in code), "a submission could run the reference solution"


def test_deleted_test_cells_are_restored_and_graded(graded_class):
    deleted = _by_student(graded_class[0])["f_deleted_cells"]
    names = {t["name"] for t in deleted["tests"]}
    assert {"BatchNormalization/test_batchnorm_forward", "BatchNormalization/test_inline_batch_size"} <= names
    assert deleted["score"] == 36


def test_typical_mistakes_lose_points_with_named_mistakes(graded_class):
    mistakes = _by_student(graded_class[0])["d_mistakes"]
    messages = {t["name"].split("/")[1]: t["message"] for t in mistakes["tests"]}
    assert 0 < mistakes["score"] < 36
    assert "unbiased variance" in messages["test_batchnorm_forward"]
    assert "test mode drops the scale and shift" in messages["test_batchnorm_forward"]
    assert "shape (1, 6), expected (6,)" in messages["test_batchnorm_backward"]
    assert "groups are interleaved" in messages["test_spatial_groupnorm_forward"]
    assert messages["test_layernorm_forward"] == ""


def test_feedback_is_html_only_and_hides_grading_code(graded_class, course):
    pages = generate_feedback(course[0])
    assert set(pages) >= {"c_reference", "d_mistakes"}
    for student, html in pages.items():
        folder = paths(course[0])["feedback"] / student / "normalization"
        assert sorted(p.name for p in folder.rglob("*")) == sorted(p.name for p in html)
        for page in html:
            text = page.read_text()
            assert not any(marker in text for marker in HIDDEN_MARKERS)
    mistakes = (paths(course[0])["feedback"] / "d_mistakes" / "normalization" / "BatchNormalization.html").read_text()
    assert "unbiased variance" in mistakes  # the hidden tests' messages do reach the student


def test_per_question_csv(graded_class, course, tmp_path):
    count = write_csv(course[0], tmp_path / "grades.csv")
    with (tmp_path / "grades.csv").open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert count == len(rows) >= 6
    assert float(rows["c_reference"]["BatchNormalization/test_batchnorm_forward"]) == 6
    assert float(rows["c_reference"]["auto_score"]) == 36
    assert rows["c_reference"]["manual_score"] == ""  # manual answers are not graded yet
    assert "BatchNormalization/inline_weight_scale" in rows["c_reference"]


def test_a_student_can_run_the_release_notebooks(course, keys, tmp_path):
    """With only release/normalization (and the environment.yml packages), every notebook runs without errors."""
    submission = make_submission(paths(course[0])["release"], tmp_path / "student", reference_layers(), keys)
    for path in sorted(submission.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(submission)}}).execute()  # raises on error
        assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])), path.name
