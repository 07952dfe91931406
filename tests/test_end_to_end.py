"""
End to end through real nbgrader and real Jupyter kernels: release, autograde, feedback, export.

One course is built for the module (`normgrade release`'s core, with its proof),
then a class of submissions is graded through the `normgrade grade` command.
"""
import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from normgrade.grade.class_run import grade
from normgrade.course import paths
from normgrade.results.export import write_csv
from normgrade.results.feedback import EXCHANGE_FILES, HIDDEN_MARKERS, generate_feedback
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.build.release import build_course, find_leaks
from normgrade.build.samples import TYPICAL_MISTAKES, make_submission, mutant_layers, reference_layers
from normgrade.paths import NOTEBOOKS, STUB_LAYERS
from test_markup import added, render_pages

# one pytest-xdist worker runs them all: module-scoped course and graded class
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("end_to_end")]
CS231N_LAYERS = Path(__file__).parent / "data" / "cs231n_layers.py"

HOSTILE = reference_layers() + """
# Vandalism and snooping at import time, by relative and absolute paths.
import os as _os
for _target in ("normgrade_expected.npz", "../../../source/normalization/normlab/layers.py",
                "../../../gradebook.db", "../../../nbgrader_config.py", "{course}/gradebook.db",
                "{course}/nbgrader_config.py", "{course}/normgrade/expected.npz"):
    try:
        open(_target, "ab").write(b"vandalised")
    except OSError:
        pass
print("hostile import", file=__import__("sys").stderr)
"""

KILLER = """
import os as _os

def layernorm_forward(x, gamma, beta, ln_param):
    _os._exit(1)  # the worker dies in the middle of grading
"""

CHEATER = STUB_LAYERS.read_text() + """
# Cheating: run the reference solution, or read the expected values, wherever they are.
import os as _os
for _folder, _dirs, _files in _os.walk("/"):
    if _folder.startswith(("/proc", "/sys")):
        continue
    for _name in _files:
        _path = _os.path.join(_folder, _name)
        if _name == "layers.py" and "BEGIN SOLUTION" in open(_path, errors="ignore").read():
            exec(open(_path).read().replace("from .backend", "from normlab.backend"))
"""

# Every function raises with the hidden inputs it was given, compressed, in its message.
LEAKY = STUB_LAYERS.read_text() + """
import base64 as _b64, zlib as _zlib, numpy as _np
def _leak(*args, **kwargs):
    raise ValueError("LEAK" + _b64.b85encode(_zlib.compress(b"".join(
        a.tobytes() for a in args if isinstance(a, _np.ndarray)))).decode())
batchnorm_forward = layernorm_forward = spatial_batchnorm_forward = spatial_groupnorm_forward = _leak
batchnorm_backward = batchnorm_backward_alt = layernorm_backward = _leak
spatial_batchnorm_backward = spatial_groupnorm_backward = _leak
"""

# Notebook cells a student adds, run by the kernel when notebooks are executed.
# Each link would run script on a staff click in formgrader or the feedback page if rendered live.
HOSTILE_LINKS = """[solution](javascript:fetch('/formgrader/api/...')) [my plots](files/javascript:alert(document.domain))

<javascript:alert(1)> [ref][r] ![pic](data:text/html;base64,PHNjcmlwdD4=)

[r]: jav&#x61;script:alert(2)
"""
# Bleach passes it (one allowed <a title="...">); markdown cuts the raw HTML block at the blank line inside the
# title, and the link's URL becomes attributes of the outer <a>: script on focus, without a click.
HOSTILE_ATTRIBUTES = '<ul>\n<li><a href="http://a" title="\n\n[x](x/autofocus/onfocus=document.title=1337//)\n\n">z</a></li></ul>'

HOSTILE_CELLS = """
get_ipython().ast_node_interactivity = "none"   # nbgrader gives full credit to a graded cell without output
import os, sqlite3
for path in ("{course}/gradebook.db", "../../../gradebook.db"):
    try:
        sqlite3.connect(path).execute("update grade set auto_score = 0")
    except Exception:
        pass
try:
    open("{course}/nbgrader_config.py", "a").write("\\nraise SystemExit")
except OSError:
    pass
"""


def _tamper_graded_cells(path):
    """Rewrite a graded cell's source and points, fill its outputs, and duplicate another graded cell."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "test_batchnorm_forward":
            cell.source = "print('6 / 6')\n6"
            meta["points"] = 100
            cell.outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": "6"}, execution_count=1)]
        if meta.get("grade_id") == "test_layernorm_backward":
            meta.update(grade=False, solution=True)  # so that its output would not count
        if meta.get("grade_id") == "test_batchnorm_backward_alt":
            meta["grade_id"] = "answer_bonus"
    duplicate = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_layernorm_forward")
    nb.cells.append(nbformat.from_dict(dict(duplicate)))
    nb.cells.append(nbformat.v4.new_code_cell("1", metadata={"nbgrader": {"grade": True, "grade_id": ["x"], "points": 9}}))
    bonus = nbformat.v4.new_code_cell("100", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": False, "grade_id": "test_bonus", "points": 100}})
    nb.cells.append(bonus)
    nb.cells.insert(1, nbformat.v4.new_code_cell(HOSTILE_CELLS))
    nb.cells.insert(2, nbformat.v4.new_markdown_cell('<img src="x" onerror="alert(document.cookie)"> <script>alert(1)</script>'))
    nb.cells.insert(3, nbformat.v4.new_markdown_cell(HOSTILE_LINKS))
    nb.cells.insert(4, nbformat.v4.new_markdown_cell("[the CS231n notes](https://cs231n.github.io/)"))
    nb.cells.insert(5, nbformat.v4.new_markdown_cell(HOSTILE_ATTRIBUTES))
    nbformat.write(nb, path)


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def course(tmp_path_factory, sandbox):  # grading needs the sandbox: skipped (or, under CI, failed) without it
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


def test_the_course_keeps_secrets_out_of_source_and_release(course):
    layout = paths(course[0])
    assert layout["expected"].is_file() and layout["source"] not in layout["expected"].parents
    # nbgrader copies source/ files next to the notebooks: the only .npz there is the students' own table
    assert [p.relative_to(layout["source"]) for p in layout["source"].rglob("*.npz")] == [
        Path("normlab") / "mistakes.npz"]
    assert (layout["source"] / "normlab" / "layers.py").read_text() == STUB_LAYERS.read_text(), "no reference in the course"


def test_release_holds_no_secret(course):
    release = paths(course[0])["release"]
    notebooks = source_notebooks(NOTEBOOKS)
    assert find_leaks(release, notebooks) == []
    assert sorted(p.name for p in release.iterdir()) == ["BatchNormalization.ipynb", "SpatialNormalization.ipynb", "normlab"]
    assert (release / "normlab" / "layers.py").read_text() == STUB_LAYERS.read_text()


def test_leak_check_catches_planted_secrets(course, keys, tmp_path):
    planted = tmp_path / "release"
    shutil.copytree(paths(course[0])["release"], planted)
    shutil.copy(paths(course[0])["expected"], planted / "expected.npz")
    (planted / "normlab" / "layers.py").write_text(reference_layers())
    (planted / "normlab" / "helpers.py").write_text("x_hat = x_centered * inv_std\n")
    (planted / "normlab" / "mistakes.npz").write_bytes(paths(course[0])["expected"].read_bytes())
    nb_path = planted / "BatchNormalization.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].source += "\n### BEGIN HIDDEN TESTS\nimport normgrade\n### END HIDDEN TESTS\n"
    nb.cells[2].source = f"inline_batch_size = {keys['inline_batch_size']!r}"
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="expected: 0.123")]
    nb.cells.append(nbformat.v4.new_markdown_cell("    **Your answer:**\n\n    YOUR ANSWER HERE"))
    nbformat.write(nb, nb_path)
    problems = "\n".join(find_leaks(planted, source_notebooks(NOTEBOOKS)))
    for needle in ("expected.npz", "helpers.py", "not the stub file", "mistakes.npz is not the one", "solution code",
                   "BEGIN HIDDEN TESTS",
                   "answer key of inline_batch_size", "has outputs", "renders as a code block"):
        assert needle in problems, needle


@pytest.fixture(scope="module")
def graded_class(course, keys, tmp_path_factory):
    """A class folder graded through the normgrade command, in an order that puts hostile code first."""
    folder, _ = course
    release = paths(folder)["release"]
    root = tmp_path_factory.mktemp("class")
    absolute = str(folder.resolve())
    make_submission(release, root / "a_hostile", HOSTILE.replace("{course}", absolute), keys)
    make_submission(release, root / "a_kills_worker", reference_layers() + KILLER, keys)
    make_submission(release, root / "b_cheater", CHEATER, keys)
    tampered = make_submission(release, root / "b_tampered", STUB_LAYERS.read_text(), keys)
    _tamper_graded_cells(tampered / "BatchNormalization.ipynb")
    (tampered / "numpy.py").write_text("raise SystemExit('shadowed numpy')\n")
    (tampered / "normgrade.py").write_text("def grade(*a, **k):\n    return 100\n")
    (tampered / "junk.bin").write_bytes(bytes(20 << 20))
    broken = make_submission(release, root / "b_broken_notebooks", reference_layers(), keys)
    (broken / "BatchNormalization.ipynb").write_text("{ not json")
    (broken / "SpatialNormalization.ipynb").unlink()
    make_submission(release, root / "c_reference", reference_layers(), keys)
    borrowed = make_submission(release, root / "b_linked_package", STUB_LAYERS.read_text(), keys)
    shutil.rmtree(borrowed / "normlab")
    (borrowed / "normlab").symlink_to(root / "c_reference" / "normlab")  # a classmate's code
    (root / "b_linked_folder").symlink_to(paths(folder)["source"])  # the source notebooks hold the keys
    no_package = make_submission(release, root / "b_no_package", None, keys)
    shutil.rmtree(no_package / "normlab")
    piped = make_submission(release, root / "b_fifo", reference_layers(), keys)
    (piped / "BatchNormalization.ipynb").unlink()
    os.mkfifo(piped / "BatchNormalization.ipynb")  # reading it would wait forever
    make_submission(release, root / "b_forbidden_import", "import scipy.special\nERF = scipy.special.erf(0.5)\n"
                    + reference_layers(), keys)  # used at the top: every function (unused, it would cost nothing)
    make_submission(release, root / "b_leaky", LEAKY, keys)
    huge = make_submission(release, root / "b_huge_markdown", reference_layers(), keys)
    nb = nbformat.read(huge / "BatchNormalization.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("<a " * (5 << 20)))  # 15 MiB: hours of bleach, unbounded
    nbformat.write(nb, huge / "BatchNormalization.ipynb")
    make_submission(release, root / "d_mistakes", mutant_layers(*TYPICAL_MISTAKES), keys)
    make_submission(release, root / "e_cs231n", CS231N_LAYERS.read_text(), keys)
    deleted = make_submission(release, root / "f_deleted_cells", reference_layers(), keys)
    nb_path = deleted / "BatchNormalization.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    gone = {"test_batchnorm_forward", "test_inline_batch_size"}
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in gone]
    nbformat.write(nb, nb_path)

    staff = [p for p in folder.rglob("*") if p.is_file() and "submitted" not in p.parts and "autograded" not in p.parts
             and p.name != "gradebook.db"]
    before = {p: _digest(p) for p in staff}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(root), "--course", str(folder), "--json"],
                          capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    print(f"\ngraded {len(document['submissions'])} submissions in {elapsed:.1f} s: "
          + ", ".join(f"{s['student']} {s['seconds']} s" for s in document["submissions"]))
    after = {p: _digest(p) for p in staff}
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
    document = graded_class[0]
    assert document["sandbox"] == "bubblewrap sandbox"
    students = _by_student(document)
    for name in ("c_reference", "e_cs231n", "a_hostile"):
        assert students[name]["score"] == 36, [t for t in students[name]["tests"] if t["message"]]


def test_hostile_code_damages_nothing_outside_its_own_grading(graded_class, course):
    _, before, after, _ = graded_class
    assert before == after, "a submission changed the course's staff files (config, source, expected values)"
    from nbgrader.api import Gradebook
    from normgrade.course import COURSE_ID, db_url

    with Gradebook(db_url(course[0]), COURSE_ID) as gb:  # the gradebook still opens and holds every student
        assert {s.id for s in gb.students} >= {"a_hostile", "c_reference", "f_deleted_cells"}


def test_a_dying_worker_costs_only_the_checks_that_needed_it(graded_class):
    killer = {t["name"].split("/")[1]: t for t in _by_student(graded_class[0])["a_kills_worker"]["tests"]}
    for name, test in killer.items():
        if name in ("test_layernorm_forward", "test_layernorm_backward"):
            assert test["score"] == 0 and "exited with status 1" in test["message"], test
        else:
            assert test["score"] == test["max_score"], test


def test_tampered_notebooks_earn_only_their_answers(graded_class, course):
    tampered = _by_student(graded_class[0])["b_tampered"]
    code = {t["name"].split("/")[1]: t for t in tampered["tests"]}
    assert tampered["score"] == 5 and tampered["max_score"] == 36, code  # the five inline answers are right
    assert code["test_batchnorm_forward"]["max_score"] == 6 and "NotImplementedError" in code["test_batchnorm_forward"]["message"]
    autograded = paths(course[0])["autograded"] / "b_tampered" / "normalization"
    assert (autograded / "normlab" / "layers.py").read_text() == STUB_LAYERS.read_text()
    assert sorted(p.name for p in autograded.iterdir() if p.is_file()) == [
        "BatchNormalization.ipynb", "SpatialNormalization.ipynb"], "only what grading needs is copied"


def test_links_and_pipes_are_not_followed(graded_class):
    students = _by_student(graded_class[0])
    assert students["b_linked_package"]["score"] == 5, "only the answers: the linked classmate's code is not graded"
    assert any("not a regular file" in n for n in students["b_linked_package"]["notes"])
    assert students["b_linked_folder"]["score"] == 0
    assert any("is a link" in n for n in students["b_linked_folder"]["notes"])
    assert students["b_fifo"]["score"] == 33  # all code points and the Spatial notebook's two answers
    assert any("not a regular file" in n for n in students["b_fifo"]["notes"])


def test_libraries_students_do_not_have_earn_nothing(graded_class):
    forbidden = _by_student(graded_class[0])["b_forbidden_import"]
    assert forbidden["score"] == 5, "only the answers"
    code = [t for t in forbidden["tests"] if not t["name"].split("/")[1].startswith("test_inline")]
    assert all("scipy is not available when grading" in " ".join(t["message"].split()) for t in code)


def test_exception_text_carries_little_out(graded_class):
    from normgrade.score.scorer import MAX_STUDENT_TEXT

    leaky = _by_student(graded_class[0])["b_leaky"]
    text = " ".join(" ".join(t["message"].split()) for t in leaky["tests"])
    assert "LEAK" in text and len("".join({p.split()[0] for p in text.split("LEAK")[1:]})) <= MAX_STUDENT_TEXT


def test_a_huge_markdown_cell_is_shown_as_text_and_costs_its_owner_little(graded_class, course):
    huge = _by_student(graded_class[0])["b_huge_markdown"]
    assert huge["score"] == 36 and huge["seconds"] < 120, huge["seconds"]
    autograded = nbformat.read(paths(course[0])["autograded"] / "b_huge_markdown" / "normalization" /
                               "BatchNormalization.ipynb", as_version=4)
    assert autograded.cells[1].source.startswith("<pre>(this cell has 15728640 characters")


def test_a_submission_without_its_package_earns_its_answers(graded_class):
    missing = _by_student(graded_class[0])["b_no_package"]
    assert missing["score"] == 5
    assert "normlab/layers.py is missing from the submission" in missing["notes"]
    code = [t for t in missing["tests"] if not t["name"].split("/")[1].startswith("test_inline")]
    assert all("normlab/layers.py is missing" in t["message"] for t in code)


def test_broken_and_missing_notebooks_still_grade_the_code(graded_class):
    broken = _by_student(graded_class[0])["b_broken_notebooks"]
    assert broken["score"] == 31, broken  # all code points; the inline answers were in the lost notebooks
    assert any("could not be read as a notebook" in n for n in broken["notes"])
    assert any("SpatialNormalization.ipynb is missing" in n for n in broken["notes"])


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
    messages = {t["name"].split("/")[1]: " ".join(t["message"].split()) for t in mistakes["tests"]}  # unwrapped
    assert 0 < mistakes["score"] < 36
    assert "Diagnosis: the variance is the unbiased one" in messages["test_batchnorm_forward"]
    assert "Diagnosis: neither gamma nor beta is applied" in messages["test_batchnorm_forward"]
    assert "shape (1, 6), expected (6,)" in messages["test_batchnorm_backward"]
    assert "interleaved group (channel c in group c % G)" in messages["test_spatial_groupnorm_forward"]
    assert messages["test_layernorm_forward"] == ""


def test_feedback_is_html_only_and_hides_grading_code(graded_class, course):
    pages = generate_feedback(course[0])
    assert set(pages) >= {"c_reference", "d_mistakes"}
    for student, html in pages.items():
        folder = paths(course[0])["feedback"] / student / "normalization"
        kept = sorted(p.name for p in folder.rglob("*") if p.name not in EXCHANGE_FILES)  # those: for release_feedback
        assert kept == sorted(p.name for p in html)
        own = paths(course[0])["staged"] / student / "normalization" / "normlab" / "layers.py"
        own = own.read_text() if own.is_file() else ""  # their code is on the page: markers they wrote are theirs
        for page in html:
            text = page.read_text()
            assert not any(marker in text and marker not in own for marker in HIDDEN_MARKERS)
            assert "BEGIN HIDDEN TESTS" not in text
    tampered = (paths(course[0])["feedback"] / "b_tampered" / "normalization" / "BatchNormalization.html").read_text()
    # The tags reach the page as text (&lt;img ...), never as live HTML.
    assert "<script>alert(1)" not in tampered and '<img src="x" onerror' not in tampered, "student markdown ran"
    assert "&lt;script&gt;alert(1)" in tampered
    # Markdown links are not HTML (bleach misses them): a cell with a javascript: or data: link is shown as text.
    hrefs = re.findall(r'(?:href|src)\s*=\s*"([^"]*)"', tampered)
    assert not [h for h in hrefs if re.match(r"\s*(javascript|data:text|vbscript)", h, re.I)], hrefs
    assert "not safe to render as HTML" in tampered
    assert not re.search(r"<[a-z]+[^>]*\son[a-z]+\s*=", tampered, re.I), "an event handler reached the page"
    assert '<a href="https://cs231n.github.io/">the CS231n notes</a>' in tampered, "a safe link stays a link"
    mistakes = (paths(course[0])["feedback"] / "d_mistakes" / "normalization" / "BatchNormalization.html").read_text()
    assert "the variance is the unbiased one" in " ".join(mistakes.split())  # the hidden tests' messages reach the student


def test_per_question_csv(graded_class, course, tmp_path):
    count = write_csv(course[0], tmp_path / "grades.csv")
    with (tmp_path / "grades.csv").open() as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert count == len(rows) >= 6
    assert float(rows["c_reference"]["BatchNormalization/test_batchnorm_forward"]) == 6
    assert float(rows["c_reference"]["auto_score"]) == 36
    assert rows["c_reference"]["manual_score"] == ""  # manual answers are not graded yet
    assert "BatchNormalization/inline_weight_scale" in rows["c_reference"]


# A student's run of the release notebooks (only release/normalization and the pinned packages): see
# tests/test_environment.py, which runs them in a fresh environment of the students' pins.


def test_plain_nbgrader_autograde_gives_the_same_trusted_scores(graded_class, course):
    """`nbgrader autograde` in the course: notebooks run in the sandbox, points come from the scorer."""
    from nbgrader.api import Gradebook
    from normgrade.course import COURSE_ID, db_url, run_nbgrader

    folder = course[0]
    root = graded_class[3]
    config_before = _digest(paths(folder)["config"])
    for student, origin in (("p_tampered", "b_tampered"), ("p_hostile", "a_hostile"), ("p_forbidden", "b_forbidden_import"),
                            ("p_huge", "b_huge_markdown"), ("p_reference", "c_reference")):
        shutil.copytree(root / origin, paths(folder)["submitted"] / student / "normalization")
    # A copier's submitted/ folder of links: nbgrader's copy follows them, the scorer must not.
    copier = paths(folder)["submitted"] / "p_copier" / "normalization"
    shutil.copytree(root / "c_reference", copier)
    shutil.rmtree(copier / "normlab")
    (copier / "normlab").symlink_to(paths(folder)["submitted"] / "p_reference" / "normalization" / "normlab")
    for name in ("BatchNormalization.ipynb", "SpatialNormalization.ipynb"):
        (copier / name).unlink()
        (copier / name).symlink_to(paths(folder)["submitted"] / "p_reference" / "normalization" / name)
    students = ("p_tampered", "p_hostile", "p_forbidden", "p_huge", "p_reference", "p_copier")
    assert sorted(p.name for p in paths(folder)["submitted"].iterdir()) == sorted(students)
    run_nbgrader(folder, "autograde", "normalization", "--create", timeout=900)  # all of submitted/, as a course does
    with Gradebook(db_url(folder), COURSE_ID) as gb:
        scores = {s: gb.find_submission("normalization", s).code_score for s in students}
        assert gb.find_submission("normalization", "c_reference").code_score == 36, "another student's grade changed"
    assert scores == {"p_tampered": 5, "p_hostile": 36, "p_forbidden": 5, "p_huge": 36, "p_reference": 36,
                      "p_copier": 0}
    # The tampered notebook's links, as formgrader's page gets them (generate_feedback checks the feedback page).
    tampered = paths(folder)["autograded"] / "p_tampered" / "normalization" / "BatchNormalization.ipynb"
    assert added(render_pages(nbformat.read(tampered, as_version=4), ("formgrade",))) == {}
    assert _digest(paths(folder)["config"]) == config_before
    executed = nbformat.read(paths(folder)["autograded"] / "p_reference" / "normalization" / "BatchNormalization.ipynb",
                             as_version=4)
    assert any("image/png" in o.get("data", {}) for c in executed.cells for o in c.get("outputs", [])), \
        "the notebook ran in the sandbox and its plots are there for formgrader"


def test_without_bubblewrap_grading_refuses_unless_unsandboxed_is_chosen(graded_class, course, tmp_path):
    """No silent fallback: a clear refusal, or an explicit --unsandboxed that every report states."""
    import os

    submission = graded_class[3] / "c_reference"
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # no bwrap on PATH
    command = [sys.executable, "-m", "normgrade.cli", "grade", str(submission), "--course", str(course[0])]
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert refused.returncode == 2
    assert "bubblewrap (bwrap) is not installed" in refused.stderr and "--unsandboxed" in refused.stderr
    chosen = subprocess.run(command + ["--unsandboxed", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert chosen.returncode == 0, chosen.stderr[-2000:]
    document = json.loads(chosen.stdout)
    assert document["sandbox"].startswith("UNSANDBOXED")
    assert document["submissions"][0]["score"] == 36
    autograded = paths(course[0])["autograded"] / "c_reference" / "normalization" / "BatchNormalization.ipynb"
    outputs = [o.get("text", "") for c in nbformat.read(autograded, as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == "test_batchnorm_forward" for o in c.outputs]
    assert any("graded without a sandbox" in text for text in outputs), "the feedback says so too"


def _validate(folder, notebook):
    """`nbgrader validate` as a student's Validate button runs it, in the student's folder: its output."""
    done = subprocess.run([sys.executable, "-m", "nbgrader", "validate", notebook], cwd=folder, capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, PATH=str(Path(sys.executable).parent) + ":/usr/bin:/bin"))
    return done.stdout + done.stderr


def test_validate_fails_unimplemented_functions_with_the_public_checks_messages(course, keys, tmp_path):
    """Validate, the students' last check before they submit, names every function that fails its public checks."""
    release = paths(course[0])["release"]
    stubs = make_submission(release, tmp_path / "stubs", STUB_LAYERS.read_text(), keys)
    said = _validate(stubs, "BatchNormalization.ipynb")
    assert said.startswith("VALIDATION FAILED")
    for function in ("batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt", "layernorm_forward",
                     "layernorm_backward"):
        assert f"{function} does not pass its public checks. Fix this first:" in said, function
    assert "batchnorm_forward is not implemented yet: write it in normlab/layers.py" in " ".join(said.split())
    shown = [line for line in said.splitlines() if line.startswith("    ")]  # the cells and errors Validate shows
    assert not [line for line in shown if line.endswith("...")], "no line cut at Validate's 90 characters"
    assert not [line for line in shown if "Traceback" in line or 'File "' in line], "what to fix, no traceback"
    assert "the order its cells ran in" not in said, "each failing cell shows a short source, not a header"
    mistakes = make_submission(release, tmp_path / "mistakes", mutant_layers(*TYPICAL_MISTAKES), keys)
    said = _validate(mistakes, "BatchNormalization.ipynb")
    assert "batchnorm_forward does not pass" in said and "layernorm_forward does not pass" not in said
    assert "bn_x" not in said and "expected.npz" not in said, "only the public checks speak"
    reference = make_submission(release, tmp_path / "reference", reference_layers(), keys)
    said = _validate(reference, "SpatialNormalization.ipynb")
    assert "not implemented" not in said and "AssertionError" not in said, said[-2000:]
