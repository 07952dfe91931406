"""normgrade.grade.gradebooks: nbgrader's Gradebooks share one engine per URL within shared_engines(), and only there."""
import threading

import pytest
from nbgrader.api import Gradebook

from normgrade.course import scripts_on_path
from normgrade.grade.gradebooks import shared_engines


@pytest.fixture(autouse=True)
def _alembic_on_path():
    """A new gradebook asks the alembic script for its schema version."""
    with scripts_on_path():
        yield


def test_gradebooks_share_one_engine_within_and_none_outside(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    original = Gradebook.__init__, Gradebook.close
    with Gradebook(url, "course") as a, Gradebook(url, "course") as b:
        assert a.engine is not b.engine  # nbgrader's own behaviour
    with shared_engines():
        with Gradebook(url, "course") as a:
            a.add_student("ann")
            engine = a.engine
        with shared_engines(), Gradebook(url, "course") as b, Gradebook(other, "course") as c:  # nested: still shared
            assert b.engine is engine and c.engine is not engine
            assert [s.id for s in b.students] == ["ann"]  # the first one's session was committed and closed
        with Gradebook(url, "course") as d:
            assert d.engine is engine
    assert (Gradebook.__init__, Gradebook.close) == original  # nbgrader's own again
    assert engine.pool.checkedout() == 0
    with Gradebook(url, "course") as e:
        assert e.engine is not engine and [s.id for s in e.students] == ["ann"]


def test_threads_of_one_process_share_safely(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    Gradebook(url, "course").close()  # the tables exist, as ledger.prepare leaves them
    engines, errors = [], []

    def grade(student):
        try:
            with shared_engines():
                for _ in range(5):
                    with Gradebook(url, "course") as gb:
                        gb.update_or_create_student(student)
                        engines.append(gb.engine)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=grade, args=(f"s{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with Gradebook(url, "course") as gb:
        assert sorted(s.id for s in gb.students) == ["s0", "s1", "s2", "s3"]
    assert Gradebook.__init__.__module__ == "nbgrader.api"


def test_a_connection_the_server_dropped_is_replaced_not_used(postgres):
    """A red-team finding: a Dask worker's pooled connection, dropped by PostgreSQL while idle, failed a submission."""
    from sqlalchemy import text

    from normgrade.grade import ledger

    url = postgres()
    Gradebook(url, "course").close()
    with shared_engines():
        with Gradebook(url, "course") as gb:
            gb.add_student("ann")
            assert gb.engine.pool.checkedin() <= 1
        with ledger.engine(url).begin() as db:  # the server ends every other session (a restart, a timeout)
            ended = db.execute(text("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t")).scalar()
        assert ended >= 1
        with Gradebook(url, "course") as gb:
            assert [s.id for s in gb.students] == ["ann"]


def test_a_gradebook_opened_outside_keeps_nbgrader_s_own_close(tmp_path):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    outside = Gradebook(url, "course")
    with shared_engines():
        outside.close()  # nbgrader's own close: its engine is disposed of
        assert outside.engine.pool.checkedout() == 0
        with Gradebook(url, "course") as inside:
            assert inside.engine is not outside.engine


def _rows(gb, student):
    """{(notebook, cell): (auto_score, needs_manual_grade)} and {(notebook, cell): auto_comment} of a submission."""
    submission = gb.find_submission("normalization", student)
    grades = {(nb.name, g.name): (g.auto_score, g.needs_manual_grade) for nb in submission.notebooks for g in nb.grades}
    comments = {(nb.name, c.name): c.auto_comment for nb in submission.notebooks for c in nb.comments}
    return grades, comments


def test_save_auto_grades_once_writes_the_rows_nbgraders_own_writes(course_copy, tmp_path):
    """
    The course's SaveAutoGradesOnce (one commit a notebook) against nbgrader's
    SaveAutoGrades (a commit a cell) on the same autograded notebooks, an
    answered submission and a blank one: the same auto scores, flags and
    comments, row for row ("No response." for the answers left blank).
    """
    import nbformat
    from nbgrader.preprocessors import SaveAutoGrades

    from normgrade.grade.class_run import grade
    from normgrade.course import COURSE_ID, db_url, paths
    from normgrade.score.notebooks import answer_keys, source_notebooks
    from normgrade.paths import STUB_LAYERS
    from normgrade.grade.preprocessors import SaveAutoGradesOnce
    from normgrade.build.samples import TYPICAL_MISTAKES, make_submission, mutant_layers

    course = course_copy(tmp_path / "course")
    release = paths(course)["release"]
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    answered = make_submission(release, tmp_path / "class" / "answered", mutant_layers(*TYPICAL_MISTAKES), keys)
    blank = make_submission(release, tmp_path / "class" / "blank", STUB_LAYERS.read_text(), {})
    document = grade([answered, blank], course)
    assert [s["status"] for s in document["submissions"]] == ["graded", "graded"]
    url = db_url(course)
    for student in ("answered", "blank"):
        twin = f"{student}_by_nbgrader"
        with Gradebook(url, COURSE_ID) as gb:
            gb.update_or_create_student(twin)
            gb.update_or_create_submission("normalization", twin)
        for path in sorted((paths(course)["autograded"] / student / "normalization").glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            resources = {"nbgrader": {"notebook": path.stem, "assignment": "normalization", "student": twin,
                                      "db_url": url}}
            SaveAutoGrades().preprocess(nb, resources)
        with Gradebook(url, COURSE_ID) as gb:
            ours, theirs = _rows(gb, student), _rows(gb, twin)
        assert ours == theirs, student
        assert ours[0] and ours[1]
    with Gradebook(url, COURSE_ID) as gb:
        assert set(_rows(gb, "blank")[1].values()) == {"No response."}
        assert None in set(_rows(gb, "answered")[1].values())  # its answered cells (its written answers are blank)
    assert issubclass(SaveAutoGradesOnce, SaveAutoGrades)


def test_overwrite_cells_prefetched_restores_what_nbgraders_own_restores(course_copy, tmp_path):
    """
    The course's OverwriteCellsPrefetched (a notebook's cells read once)
    against nbgrader's OverwriteCells, on a submitted notebook tampered with
    every way it handles: a locked cell's source changed, a graded cell's
    points and type changed, a graded cell deleted (a cell the gradebook does
    not know crashes nbgrader's own: SanitizeGradedCells takes it out first).
    The same notebook comes out of both, cell for cell, and the course's
    configuration (add_missing_cells) reaches the subclass.
    """
    import copy
    import json

    import nbformat
    from nbgrader.preprocessors import OverwriteCells
    from traitlets.config import Config

    from normgrade.course import db_url, paths
    from normgrade.grade.preprocessors import OverwriteCellsPrefetched

    course = course_copy(tmp_path / "course")
    release = paths(course)["release"] / "BatchNormalization.ipynb"
    nb = nbformat.read(release, as_version=4)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    locked = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("locked")]
    assert len(graded) >= 3 and locked
    locked[0].source = "print('tampered')"
    graded[0].metadata.nbgrader["points"] = 100.0
    graded[1].cell_type = "markdown" if graded[1].cell_type == "code" else "code"
    nb.cells.remove(graded[2])
    resources = {"nbgrader": {"notebook": "BatchNormalization", "assignment": "normalization", "db_url": db_url(course)}}
    config = Config()
    config.OverwriteCells.add_missing_cells = True
    theirs, _ = OverwriteCells(config=config).preprocess(copy.deepcopy(nb), copy.deepcopy(resources))
    ours, _ = OverwriteCellsPrefetched(config=config).preprocess(copy.deepcopy(nb), copy.deepcopy(resources))
    for out in (ours, theirs):  # a cell added back gets a new random id
        for cell in out.cells:
            cell.pop("id", None)
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    restored = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in ours.cells}
    assert restored[graded[2].metadata.nbgrader["grade_id"]].source.endswith(graded[2].source)  # added back, noted
    assert "tampered" not in nbformat.writes(ours)


def test_a_submission_gradebook_without_the_assignment_says_so_as_nbgrader_does(tmp_path):
    """A gradebook whose assignment row is missing: nbgrader's MissingEntry (grading reports it), not SQLAlchemy's."""
    from nbgrader.api import MissingEntry

    from normgrade.course import ASSIGNMENT_ID
    from normgrade.grade.gradebooks import submission_gradebook

    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    Gradebook(url).close()  # nbgrader's tables, no assignment
    with pytest.raises(MissingEntry, match="No such assignment"):
        with submission_gradebook(url, "ann") as gradebook:
            gradebook.find_notebook("BatchNormalization", ASSIGNMENT_ID)
    with pytest.raises(MissingEntry, match="No such student"):
        with submission_gradebook(url, "ann") as gradebook:
            gradebook.find_student("ann")
