"""
The grading ledger: which submission was graded, from which content, in which run.

It lives in the gradebook's own database (nbgrader's SQLite gradebook.db, or
PostgreSQL through `--db-url postgresql+psycopg://...`), as one table beside
nbgrader's, normgrade_grading, with one row per (assignment, student):

    content_hash  sha256 of what was graded (the staged notebooks and layers.py,
                  the expected values, the grading flags)
    status        running | graded | failed
    run_id        the `normgrade grade` run that last claimed it
    attempts      how many times that run started grading it
    host, pid     the process grading it (a Dask worker, a local child)
    started, finished, score, max_score
    result        the submission's result document (JSON), as `normgrade grade` prints it

How a class run is exactly once (normgrade.grade.grading.grade_submission):

1. claim(): a row already `graded` from the same content is not graded again
   (unless regrade); otherwise the row becomes `running` in this run, and the
   attempt is counted. A row found `running` in this same run means an earlier
   attempt's process died; after MAX_ATTEMPTS such deaths the submission is
   recorded `failed` instead of being tried again.
2. nbgrader's autograde writes the grades (its tables allow one submission per
   student and assignment, so a repeated grading replaces, never duplicates).
3. finish(): the row becomes `graded` (or `failed`) with the result.

A run killed at any moment leaves at most the rows it was working on
`running`; the next run grades exactly those again, and every other one is
kept. Rows are never deleted here.

SQLite is not safe for concurrent writers (a reader that upgrades gets
"database is locked" at once), so on SQLite every gradebook write holds an
exclusive file lock (gradebook_lock); PostgreSQL's transactions need none.
"""
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, Text, create_engine, select
from sqlalchemy.pool import NullPool

from normgrade.course import ASSIGNMENT_ID, COURSE_ID, STAFF_FOLDER, paths, scripts_on_path
from normgrade.grade import gradebooks

MAX_ATTEMPTS = 2  # a submission whose grading process died twice in one run is reported, not retried again

GRADING = Table(
    "normgrade_grading", MetaData(),
    Column("assignment", String(128), primary_key=True),
    Column("student", String(128), primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("run_id", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("started", DateTime),
    Column("finished", DateTime),
    Column("score", Float),
    Column("max_score", Float),
    Column("result", Text),
)


def engine(url):
    """An engine that holds no connection between calls (safe across fork, cheap for SQLite)."""
    return create_engine(url, poolclass=NullPool, future=True)


def safe_url(url):
    """The URL without its password, for reports."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def is_sqlite(url):
    return str(url).startswith("sqlite")


@contextlib.contextmanager
def gradebook_lock(course, url):
    """Hold the course's exclusive gradebook lock while writing to a SQLite gradebook; nothing for a server."""
    if not is_sqlite(url):
        yield
        return
    path = Path(course) / STAFF_FOLDER / "gradebook.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def run_lock(course):
    """One `normgrade grade` run at a time per course (the ledger assumes it); raises RuntimeError if taken."""
    path = Path(course) / STAFF_FOLDER / "run.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another `normgrade grade` is running on {course}; wait for it, or stop it") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(course, url):
    """
    Make the database at `url` ready for a class run: nbgrader's tables with the
    assignment's definition (copied from the course's own SQLite gradebook,
    which `normgrade release` filled, when `url` is another database), and
    the ledger table.
    """
    from nbgrader.api import Gradebook, MissingEntry

    own = paths(course)["gradebook"]
    with scripts_on_path(), Gradebook(url, COURSE_ID) as target:
        try:
            target.find_assignment(ASSIGNMENT_ID)
        except MissingEntry:
            if not own.is_file() or url == f"sqlite:///{own.resolve()}":
                raise RuntimeError(f"the gradebook at {url} has no assignment {ASSIGNMENT_ID!r}, and {course} has no "
                                   "gradebook.db to copy it from: rebuild the course with `normgrade release`") from None
            with Gradebook(f"sqlite:///{own.resolve()}", COURSE_ID) as source:
                copy_assignment(source, target)
    # nbgrader's own preprocessors open Gradebook(url) with the default course id, which creates that
    # course's row on first use: two workers doing it at once on a fresh PostgreSQL database collide
    # (UniqueViolation on course_pkey). Create it here, once, before any worker starts.
    Gradebook(url).close()
    GRADING.metadata.create_all(engine(url))
    gradebooks.known_ready(url, (COURSE_ID, "default_course"))  # the forked graders need not check again


def copy_assignment(source, target):
    """Copy the assignment's definition (notebooks, graded, solution, task and source cells) between gradebooks."""
    assignment = source.find_assignment(ASSIGNMENT_ID)
    target.update_or_create_assignment(ASSIGNMENT_ID, duedate=assignment.duedate)
    for notebook in assignment.notebooks:
        target.update_or_create_notebook(notebook.name, ASSIGNMENT_ID)
        for cell in notebook.grade_cells:
            target.update_or_create_grade_cell(cell.name, notebook.name, ASSIGNMENT_ID,
                                               max_score=cell.max_score, cell_type=cell.cell_type)
        for cell in notebook.solution_cells:
            target.update_or_create_solution_cell(cell.name, notebook.name, ASSIGNMENT_ID)
        for cell in notebook.task_cells:
            target.update_or_create_task_cell(cell.name, notebook.name, ASSIGNMENT_ID,
                                              max_score=cell.max_score, cell_type=cell.cell_type)
        for cell in notebook.source_cells:
            target.update_or_create_source_cell(cell.name, notebook.name, ASSIGNMENT_ID, cell_type=cell.cell_type,
                                                locked=cell.locked, source=cell.source, checksum=cell.checksum)


def content_hash(staged, expected_path, source_notebooks=(), **flags):
    """
    sha256 of what grading reads: the staged submission's files, the expected
    values, the course's source notebooks (their graded cells and points: a
    rebuild that changes them regrades) and the flags.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(flags, sort_keys=True).encode())
    digest.update(hashlib.sha256(Path(expected_path).read_bytes()).digest())
    for path in sorted(source_notebooks):
        digest.update(Path(path).name.encode() + b"\0" + hashlib.sha256(Path(path).read_bytes()).digest())
    for path in sorted(p for p in Path(staged).rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(str(path.relative_to(staged)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@dataclass
class Claim:
    action: str  # "grade", "unchanged" (graded before from the same content) or "give_up"
    attempts: int = 0
    result: dict = None  # the stored result, for "unchanged"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def claim(url, student, digest, run_id, regrade=False):
    """Decide whether this process grades `student` now, and record it (see the module's docstring)."""
    with engine(url).begin() as db:
        key = (GRADING.c.assignment == ASSIGNMENT_ID) & (GRADING.c.student == student)
        row = db.execute(select(GRADING).where(key).with_for_update()).mappings().first()
        if row and row["status"] == "graded" and row["content_hash"] == digest and not regrade:
            return Claim("unchanged", row["attempts"], json.loads(row["result"]))
        same_run = row is not None and row["run_id"] == run_id
        if same_run and row["status"] == "running" and row["attempts"] >= MAX_ATTEMPTS:
            return Claim("give_up", row["attempts"])
        attempts = row["attempts"] + 1 if same_run else 1
        values = dict(content_hash=digest, status="running", run_id=run_id, attempts=attempts,
                      host=socket.gethostname(), pid=os.getpid(), started=_now(), finished=None)
        if row is None:
            db.execute(GRADING.insert().values(assignment=ASSIGNMENT_ID, student=student, **values))
        else:
            db.execute(GRADING.update().where(key).values(**values))
        return Claim("grade", attempts)


def finish(url, student, result):
    """Record the outcome of grading `student`: `graded`, or `failed` when the result has an error."""
    key = (GRADING.c.assignment == ASSIGNMENT_ID) & (GRADING.c.student == student)
    with engine(url).begin() as db:
        db.execute(GRADING.update().where(key).values(
            status="failed" if result.get("error") else "graded", finished=_now(),
            score=result.get("score"), max_score=result.get("max_score"), result=json.dumps(result)))


def record_failure(url, student, run_id, result):
    """Record a grading that failed before or after its claim (the row is made if there is none)."""
    key = (GRADING.c.assignment == ASSIGNMENT_ID) & (GRADING.c.student == student)
    values = dict(status="failed", run_id=run_id, finished=_now(), score=0.0, max_score=0.0,
                  result=json.dumps(result), host=socket.gethostname(), pid=os.getpid())
    with engine(url).begin() as db:
        row = db.execute(select(GRADING.c.attempts).where(key).with_for_update()).first()
        if row is None:
            db.execute(GRADING.insert().values(assignment=ASSIGNMENT_ID, student=student, content_hash="",
                                               attempts=1, started=_now(), **values))
        else:
            db.execute(GRADING.update().where(key).values(**values))


def rows(url):
    """Every ledger row of the assignment, as dicts, by student; [] where no run has made the table yet."""
    from sqlalchemy import inspect

    db_engine = engine(url)
    if not inspect(db_engine).has_table(GRADING.name):
        return []
    with db_engine.connect() as db:
        query = select(GRADING).where(GRADING.c.assignment == ASSIGNMENT_ID).order_by(GRADING.c.student)
        return [dict(row) for row in db.execute(query).mappings()]


def current_rows(url):
    """
    (rows, gone): the ledger rows of the course as it is now, and the
    students whose rows say graded but who are no longer in nbgrader's
    gradebook (removed with `nbgrader db student remove`). Failures are
    always kept: a submission that failed before nbgrader saw it has no
    student there.
    """
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        students = {student.id for student in gb.students}
    everything = rows(url)
    gone = sorted(row["student"] for row in everything if row["status"] != "failed" and row["student"] not in students)
    return [row for row in everything if row["student"] not in gone], gone
