"""
`normgrade release` is all or nothing: a rebuild that fails at any step
(here the leak check, after nbgrader's generate_assignment ran) leaves the
course byte for byte as it was, and one that succeeds keeps the gradebook's
grades.
"""
import hashlib
import shutil
from pathlib import Path

import nbformat
import pytest

from normgrade.course import COURSE_ID, db_url, paths
from normgrade.paths import NOTEBOOKS
from normgrade.build.release import LeakError, build_course
from normgrade.build.samples import make_submission, reference_layers

pytestmark = pytest.mark.slow


def _tree(folder):
    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "run.lock"}


def test_a_failed_rebuild_leaves_the_course_as_it_was_and_a_rebuild_keeps_the_grades(sandbox, tmp_path):
    from nbgrader.api import Gradebook

    from normgrade.grade.class_run import grade

    course = tmp_path / "course"
    build_course(course, prove=False)
    grade([make_submission(paths(course)["release"], tmp_path / "ann", reference_layers())], course)
    before = _tree(course)

    broken = tmp_path / "notebooks"  # a TA's edit that puts grader code into the release
    shutil.copytree(NOTEBOOKS, broken)
    nb = nbformat.read(broken / "SpatialNormalization.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("The grader reads normgrade/expected.npz."))
    nbformat.write(nb, broken / "SpatialNormalization.ipynb")
    with pytest.raises(LeakError, match="contains 'normgrade'"):
        build_course(course, notebooks=broken, prove=False)
    assert _tree(course) == before, "a failed release changed the course"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann", "course", "notebooks"], "no scratch left behind"

    build_course(course, prove=False)
    after = _tree(course)
    assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} <= {
        "normgrade/expected.npz", "gradebook.db"}
    with Gradebook(db_url(course), COURSE_ID) as gb:
        assert gb.find_submission("normalization", "ann").code_score > 0, "the rebuild lost a grade"


def test_each_course_draws_its_own_hidden_inputs_proves_itself_and_keeps_them(sandbox, tmp_path, capsys):
    """
    Two courses get different hidden inputs (a fresh seed each, or the one
    given), a course built from a given seed proves itself as the end-to-end
    test's randomly seeded one does, a rebuild keeps the course's seed unless
    told to draw a new one, and a seed that is not a whole number is refused.
    """
    import numpy as np

    from normgrade import cli
    from normgrade.score import expected

    given, fresh = tmp_path / "given", tmp_path / "fresh"
    reference, stubs = build_course(given, seed=12345)  # raises unless the proof holds
    assert reference["score"] == reference["max_score"] and stubs["score"] == 0
    build_course(fresh, prove=False)
    a, b = (expected.ExpectedValues(paths(c)["expected"]) for c in (given, fresh))
    assert a.seed == 12345 and b.seed != 12345
    assert not np.array_equal(a.inputs["bn_x"], b.inputs["bn_x"])
    assert not np.array_equal(a.expected("gn_G2_out"), b.expected("gn_G2_out"))

    assert cli.main(["release", "--course", str(given), "--no-proof"]) == 0
    assert expected.ExpectedValues(paths(given)["expected"]).seed == 12345
    assert "hidden inputs: kept from the previous build" in capsys.readouterr().out
    assert cli.main(["release", "--course", str(given), "--no-proof", "--new-seed"]) == 0
    assert expected.ExpectedValues(paths(given)["expected"]).seed != 12345
    assert "hidden inputs: drawn afresh" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        cli.main(["release", "--course", str(given), "--seed", "twelve"])
    assert stopped.value.code == 2 and "'twelve' is not a seed" in capsys.readouterr().err


def test_a_release_whose_notebooks_raise_is_refused_naming_each_cell_and_the_course_stays(sandbox, tmp_path):
    """
    Two errors a TA can make that grading never runs into: a NameError in an
    experiment and a SyntaxError in a graded test cell. The proof runs every
    cell in the sandbox, with the reference and with the stubs, and refuses.
    """
    course = tmp_path / "course"
    build_course(course, prove=False)
    before = _tree(course)
    broken = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, broken)
    path = broken / "BatchNormalization.ipynb"
    nb = nbformat.read(path, as_version=4)
    experiment = next(i for i, c in enumerate(nb.cells) if c.source.startswith("batch_sizes = "))
    test_cell = next(i for i, c in enumerate(nb.cells)
                     if c.metadata.get("nbgrader", {}).get("grade_id") == "test_batchnorm_forward")
    nb.cells[experiment].source += "\nprint(batch_sizez)\n"
    nb.cells[test_cell].source += "\ncheck(\n"
    nbformat.write(nb, path)
    with pytest.raises(RuntimeError) as refused:
        build_course(course, notebooks=broken)
    said = str(refused.value)
    assert f"with the reference, BatchNormalization.ipynb cell {experiment + 1} ('batch_sizes = " in said
    assert "raised NameError: name 'batch_sizez' is not defined" in said
    assert f"with the reference, BatchNormalization.ipynb cell {test_cell + 1} (" in said and "raised SyntaxError" in said
    assert f"with the stubs, BatchNormalization.ipynb cell {test_cell + 1} (" in said and "before any" in said
    assert _tree(course) == before, "a refused release changed the course"


def test_a_rebuild_reports_what_students_see_and_says_what_to_run_when_grades_exist(sandbox, tmp_path, capsys):
    """
    Reworded prose students read is reported; a staff-only rubric edit inside
    a solution region (students still see "YOUR ANSWER HERE") is not; a
    change of points changes the total, said once; with grades in the course
    the rebuild says they stand until regraded, and what to run.
    """
    from normgrade import cli
    from normgrade.grade.class_run import grade

    course = tmp_path / "course"
    assert cli.main(["release", "--course", str(course), "--no-proof"]) == 0
    assert "changes since" not in capsys.readouterr().out, "a first build has nothing to compare"
    grade([make_submission(paths(course)["release"], tmp_path / "ann", reference_layers())], course)

    edited = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, edited)
    path = edited / "BatchNormalization.ipynb"
    nb = nbformat.read(path, as_version=4)
    prompt = next(i for i, c in enumerate(nb.cells) if c.source.startswith("### Inline question 1"))
    nb.cells[prompt].source = nb.cells[prompt].source.replace("Describe the results", "Describe what you see in the results")
    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    by_id["inline_weight_scale"].source = by_id["inline_weight_scale"].source.replace("narrow band", "small band")
    by_id["test_inline_batch_size"].metadata["nbgrader"]["points"] = 2
    nbformat.write(nb, path)
    assert cli.main(["release", "--course", str(course), "--no-proof", "--notebooks", str(edited)]) == 0
    said = capsys.readouterr().out
    assert f"BatchNormalization.ipynb cell {prompt + 1} ('### Inline question 1 (manually graded)'): its text changed" in said
    assert "inline_weight_scale" not in said and "Your answer" not in said, "the rubric is not what students see"
    assert "test_inline_batch_size: 1 -> 2 points" in said and "the assignment is worth 43 -> 44 points" in said
    assert "test_inline_batch_size" in said.split("changes since")[1]
    assert "this course has 1 graded submission: their grades stand as they were until graded again" in said
    assert "normgrade grade PATH --course .   on what you graded before" in said
    assert "nbgrader release_assignment normalization --force" in said

    # The next grading run regrades against the new release (the ledger covers the source notebooks).
    result = grade([tmp_path / "ann"], course)["submissions"][0]
    assert result["status"] == "graded" and result["max_score"] == 37, result
