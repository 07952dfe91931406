"""
One database engine per gradebook while `normgrade grade` grades a submission.

nbgrader opens a new Gradebook for each step of its autograde (about 18 for
this assignment's two notebooks), and each one creates an SQLAlchemy engine,
connects, lists the tables, checks every one of them (create_all), compiles
its SQL anew (the compiled-statement cache is the engine's) and disposes of
it all on close. On PostgreSQL each of those is a new server connection.

Within shared_engines(), every Gradebook opened in this process on the same
database URL uses one engine: the first runs nbgrader's own __init__ where
the database lacks one of its tables (which it creates), and the engine is
ours, with
pool_pre_ping (a connection the server dropped while idle, as a Dask
worker's pool may hold between tasks, is replaced, never used). Engines are
disposed of when the last shared_engines() of the process ends. That the
database has nbgrader's tables and the course's row is checked once per
process, or not at all in a process forked after ledger.prepare said so
(known_ready): grading removes neither. A Gradebook
gets its own session, as nbgrader's does; closing it ends that session and
keeps the engine. A Gradebook opened outside, or in a process forked from
one inside, is nbgrader's own. Reference-counted and locked, so threads of
one Dask worker can grade side by side. Plain `nbgrader autograde` never
enters it. tests/test_class_run.py holds the gradebooks written with and
without it to be the same, row for row.

One submission's gradebook steps share one session (SubmissionGradebook,
submission_gradebook): nbgrader's lookups once a cell are answered from rows
read in a few queries (the assignment with its notebooks and cells in four),
and nothing is committed until the end: 27 statements in 3 commits for a
first grading, the ledger's included (237 in 51 before issue 32's
redesign), 18 for a regrade (`round_trips` in benchmarks/bench_grading.py). The course's
preprocessors take their gradebook from gradebook_of: the session that
normgrade.grade.autograded holds for the submission, or (under plain `nbgrader
autograde`) one of their own, committed when they are done.
"""
import contextlib
import os
import threading

from normgrade.course import ASSIGNMENT_ID, COURSE_ID

_LOCK = threading.Lock()  # the state below
_FIRST = threading.Lock()  # one first __init__ at a time: one engine per URL, never two
_STATE = {"depth": 0, "pid": None, "engines": {}, "original": None}
# What this process, or the one it was forked from, found in a database: nbgrader's tables (by URL) and a
# course's row (by URL and course id). Grading removes neither, so each is checked once per class run
# (ledger.prepare, before the fork, says so: known_ready) or once per Dask worker process, not per submission.
_KNOWN = {"tables": set(), "courses": set()}
_INHERITED = []  # a forked child's copies of its parent's engines: kept, so that collecting them never
# closes the parent's connections


def known_ready(db_url, course_ids):
    """Say that the database at db_url has nbgrader's tables and a row for each of course_ids."""
    with _LOCK:
        _KNOWN["tables"].add(db_url)
        _KNOWN["courses"].update((db_url, course_id) for course_id in course_ids)


def _shared_init(self, db_url, course_id="default_course", authenticator=None):
    """Gradebook.__init__ on the process's engine for db_url (nbgrader's own __init__ for the first)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import scoped_session, sessionmaker

    original_init, _ = _STATE["original"]
    if _STATE["pid"] != os.getpid():  # forked from a process inside shared_engines: nbgrader's own
        original_init(self, db_url, course_id, authenticator)
        return
    with _FIRST:
        with _LOCK:
            engine = _STATE["engines"].get(db_url)
        if engine is None:
            engine = create_engine(db_url, echo=False, future=True, pool_pre_ping=True)
            if db_url not in _KNOWN["tables"] and not _has_gradebook_tables(engine):
                original_init(self, db_url, course_id, authenticator)  # creates the tables and their version
                self.db.remove()
                self.engine.dispose()
            with _LOCK:
                _STATE["engines"][db_url] = engine
                _KNOWN["tables"].add(db_url)
    self.engine = engine
    self.db = scoped_session(sessionmaker(autoflush=True, bind=engine, future=True))
    if (db_url, course_id) not in _KNOWN["courses"]:  # nbgrader's check_course queries and commits each time
        self.check_course(course_id=course_id)
        with _LOCK:
            _KNOWN["courses"].add((db_url, course_id))
    self.course_id = course_id
    self.authenticator = authenticator
    self._normgrade_shared = True


def _has_gradebook_tables(engine):
    """Whether every table of nbgrader's gradebook is in the database (one query; create_all checks each)."""
    from nbgrader.api import Base
    from sqlalchemy import inspect

    return set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def _shared_close(self):
    """Gradebook.close without disposing of a shared engine (nbgrader's own close for any other)."""
    if getattr(self, "_normgrade_shared", False):
        self.db.remove()
    else:
        _STATE["original"][1](self)


@contextlib.contextmanager
def shared_engines():
    """Within it, nbgrader's Gradebooks in this process share one engine per database URL."""
    from nbgrader.api import Gradebook

    with _LOCK:
        if _STATE["pid"] != os.getpid():  # a forked child starts afresh; the parent's engines are its own
            _INHERITED.extend(_STATE["engines"].values())
            _STATE.update(depth=0, pid=os.getpid(), engines={})
        if _STATE["original"] is None:  # nbgrader's own, kept once: a fork may copy a patched class
            _STATE["original"] = (Gradebook.__init__, Gradebook.close)
        if _STATE["depth"] == 0:
            Gradebook.__init__, Gradebook.close = _shared_init, _shared_close
        _STATE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["depth"] -= 1
            engines = []
            if _STATE["depth"] == 0:
                Gradebook.__init__, Gradebook.close = _STATE["original"]
                engines = list(_STATE["engines"].values())
                _STATE["engines"] = {}
        for engine in engines:
            engine.dispose()


class CommitAtEnd:
    """
    A gradebook session whose commit() does nothing: the holder commits once,
    at the end. What nbgrader's methods wrote is flushed before the next
    query (the session's autoflush) or at that commit, so rows changed cell by
    cell are written together (one executemany where nbgrader's commit after
    every cell made one statement a cell).
    """

    def __init__(self, session):
        self._session = session

    def commit(self):
        pass

    def __getattr__(self, name):
        return getattr(self._session, name)


class SubmissionGradebook:
    """
    nbgrader's Gradebook for one student's submission of the assignment, in
    one session, committed once (see submission_gradebook and CommitAtEnd).
    The lookups nbgrader's preprocessors make once a cell or a step (the
    assignment, a notebook, a source cell, a graded cell, the student, a
    grade, a comment) are answered from rows read in a few queries; any other
    lookup, or a name those rows do not hold exactly once, goes to nbgrader's
    own method (MissingEntry and all). nbgrader's update_or_create_student,
    update_or_create_submission and add_submission run on this object, so
    their own lookups are these. The submission and its notebooks are read
    afresh at each lookup, with what the session has written so far: their
    scores and lateness are computed by the database.
    """

    def __init__(self, gradebook, student, session):
        self._gradebook = gradebook
        self._student = student
        self._session = session  # the real one; gradebook.db is its CommitAtEnd
        self._assignment = None
        self._cells = None
        self._rows = None
        self._students = {}  # held here: the session's identity map would let them go

    def _course(self):
        """The assignment, its notebooks and every cell of theirs, read at the first lookup in four queries."""
        from nbgrader.api import Assignment, BaseCell, GradeCell, MissingEntry, Notebook, SolutionCell, TaskCell
        from sqlalchemy.orm import selectinload, with_polymorphic

        if self._assignment is None:
            graded = with_polymorphic(BaseCell, [GradeCell, SolutionCell, TaskCell])  # the three kinds at once
            notebooks = selectinload(Assignment.notebooks)
            found = self._gradebook.db.query(Assignment).filter(Assignment.name == ASSIGNMENT_ID).options(
                notebooks.selectinload(Notebook.source_cells),
                notebooks.selectinload(Notebook._base_cells.of_type(graded))).one_or_none()
            if found is None:
                raise MissingEntry(f"No such assignment: {ASSIGNMENT_ID}")  # nbgrader's words
            self._assignment = found
        return self._assignment

    def cells(self):
        """{(kind, notebook, name): cell} of the assignment; kind: SourceCell, GradeCell, SolutionCell or TaskCell."""
        if self._cells is None:
            found = {}
            for notebook in self._course().notebooks:
                for cell in [*notebook.source_cells, *notebook._base_cells]:
                    found.setdefault((type(cell).__name__, notebook.name, cell.name), []).append(cell)
            self._cells = {key: cells[0] for key, cells in found.items() if len(cells) == 1}
        return self._cells

    def cells_of(self, kind, notebook):
        """{name: cell} of one kind in one notebook of the assignment."""
        return {name: cell for (k, nb, name), cell in self.cells().items() if (k, nb) == (kind, notebook)}

    def _submission_rows(self):
        """{(Grade or Comment, cell kind, notebook, cell name): row} of the student's submission."""
        from nbgrader.api import BaseCell, Comment, Grade, Notebook, SubmittedNotebook

        if self._rows is None:
            submission = self.find_submission(ASSIGNMENT_ID, self._student)
            found = {}
            for model in (Grade, Comment):
                rows = self._gradebook.db.query(model, BaseCell.type, BaseCell.name, Notebook.name).join(
                    BaseCell, BaseCell.id == model.cell_id).join(
                    SubmittedNotebook, SubmittedNotebook.id == model.notebook_id).join(
                    Notebook, Notebook.id == SubmittedNotebook.notebook_id).filter(
                    SubmittedNotebook.assignment_id == submission.id)
                for row, kind, name, notebook in rows:
                    found.setdefault((model.__name__, kind, notebook, name), []).append(row)
            self._rows = {key: rows[0] for key, rows in found.items() if len(rows) == 1}
        return self._rows

    def grades(self):
        """[(notebook name, grade)] of the student's submission, as the session holds them now."""
        return [(notebook, row) for (model, _, notebook, _), row in self._submission_rows().items()
                if model == "Grade"]

    def _cell(self, kinds, name, notebook, assignment):
        cells = self.cells() if assignment == ASSIGNMENT_ID else {}
        return next((cells[(kind, notebook, name)] for kind in kinds if (kind, notebook, name) in cells), None)

    def _row(self, model, kinds, name, notebook, assignment, student):
        rows = self._submission_rows() if (assignment, student) == (ASSIGNMENT_ID, self._student) else {}
        return next((rows[(model, kind, notebook, name)] for kind in kinds if (model, kind, notebook, name) in rows),
                    None)

    def find_assignment(self, name):
        return self._course() if name == ASSIGNMENT_ID else self._gradebook.find_assignment(name)

    def find_notebook(self, name, assignment):
        found = {nb.name: nb for nb in self._course().notebooks}.get(name) if assignment == ASSIGNMENT_ID else None
        return found if found is not None else self._gradebook.find_notebook(name, assignment)

    def find_student(self, student_id):
        from nbgrader.api import MissingEntry, Student

        if student_id not in self._students:
            found = self._gradebook.db.get(Student, student_id)  # from the session if it holds the row, else read
            if found is None:
                raise MissingEntry(f"No such student: {student_id}")  # nbgrader's words
            self._students[student_id] = found
        return self._students[student_id]

    # nbgrader's own methods, run on this object: their lookups (find_assignment, find_student,
    # find_submission) are the ones above, answered from the rows this session read.
    def update_or_create_student(self, student_id, **kwargs):
        from nbgrader.api import Gradebook

        self._students[student_id] = Gradebook.update_or_create_student(self, student_id, **kwargs)
        return self._students[student_id]

    def update_or_create_submission(self, assignment, student, **kwargs):
        from nbgrader.api import Gradebook

        return Gradebook.update_or_create_submission(self, assignment, student, **kwargs)

    def add_submission(self, assignment, student, **kwargs):
        from nbgrader.api import Gradebook

        return Gradebook.add_submission(self, assignment, student, **kwargs)

    def find_source_cell(self, name, notebook, assignment):
        found = self._cell(["SourceCell"], name, notebook, assignment)
        return found if found is not None else self._gradebook.find_source_cell(name, notebook, assignment)

    def find_graded_cell(self, name, notebook, assignment):  # nbgrader's: a graded cell, else a task cell
        found = self._cell(["GradeCell", "TaskCell"], name, notebook, assignment)
        return found if found is not None else self._gradebook.find_graded_cell(name, notebook, assignment)

    def find_grade(self, grade_cell, notebook, assignment, student):
        found = self._row("Grade", ["GradeCell", "TaskCell"], grade_cell, notebook, assignment, student)
        return found if found is not None else self._gradebook.find_grade(grade_cell, notebook, assignment, student)

    def find_comment(self, solution_cell, notebook, assignment, student):
        found = self._row("Comment", ["SolutionCell", "TaskCell"], solution_cell, notebook, assignment, student)
        return found if found is not None else self._gradebook.find_comment(solution_cell, notebook, assignment,
                                                                            student)

    def find_submission(self, assignment, student):
        from nbgrader.api import Assignment, MissingEntry, Student, SubmittedAssignment
        from sqlalchemy.exc import NoResultFound

        try:
            return self._gradebook.db.query(SubmittedAssignment).join(
                Assignment, Assignment.id == SubmittedAssignment.assignment_id).join(
                Student, Student.id == SubmittedAssignment.student_id).filter(
                Assignment.name == assignment, Student.id == student).populate_existing().one()
        except NoResultFound:
            raise MissingEntry(f"No such submission: {assignment} for {student}") from None

    def find_submission_notebook(self, notebook, assignment, student):
        from nbgrader.api import Assignment, MissingEntry, Notebook, SubmittedAssignment, SubmittedNotebook
        from sqlalchemy.exc import NoResultFound

        try:
            return self._gradebook.db.query(SubmittedNotebook).join(
                Notebook, Notebook.id == SubmittedNotebook.notebook_id).join(
                SubmittedAssignment, SubmittedAssignment.id == SubmittedNotebook.assignment_id).join(
                Assignment, Assignment.id == SubmittedAssignment.assignment_id).filter(
                Notebook.name == notebook, Assignment.name == assignment,
                SubmittedAssignment.student_id == student).populate_existing().one()
        except NoResultFound:
            raise MissingEntry(f"No such submission notebook: {notebook}/{assignment} for {student}") from None

    def save(self):
        """Commit what the session wrote so far (submission_gradebook's own commit then has nothing to do)."""
        self._session.commit()

    def discard(self):
        """Roll back what the session wrote so far."""
        self._session.rollback()

    def __getattr__(self, name):
        return getattr(self._gradebook, name)


@contextlib.contextmanager
def submission_gradebook(url, student):
    """
    A SubmissionGradebook on a new session of the gradebook at `url`:
    committed once when the block ends, rolled back (nothing written) when it
    raises.
    """
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as plain:
        session = plain.db
        plain.db = CommitAtEnd(session)
        try:
            yield SubmissionGradebook(plain, student, session)
        except BaseException:
            session.rollback()
            raise
        else:
            session.commit()
        finally:
            plain.db = session


HELD = "normgrade_gradebook"  # resources["nbgrader"][HELD]: the SubmissionGradebook normgrade.grade.autograded holds


@contextlib.contextmanager
def gradebook_of(resources):
    """
    The gradebook a preprocessor of one notebook reads and writes: the
    submission's, held open by normgrade.grade.autograded (committed by it, once),
    or, under plain `nbgrader autograde`, one of its own committed when the
    block ends.
    """
    info = resources["nbgrader"]
    if info.get(HELD) is not None:
        yield info[HELD]
    else:
        with submission_gradebook(info["db_url"], info.get("student")) as gradebook:
            yield gradebook
