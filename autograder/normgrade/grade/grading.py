"""
Grading one submission, exactly once (normgrade.grade.ledger): what a local child
process or a Dask worker runs for each Task.

grade_submission stages the submission (normgrade.grade.staging), claims it in the
ledger (one graded before from the same content is not graded again, unless
regrade), scores its normlab/layers.py with the trusted scorer from the raw
values a sandboxed worker returned (normgrade.score.scorer), autograds it into the
gradebook and autograded/ (normgrade.grade.autograded; nbgrader's own converter for
a course configured with a preprocessor of its own), and records the
outcome. No student code runs in its process. Its result:

    {"path", "student", "status", "raw_score", "penalty", "score", "max_score", "submitted_at",
     "late_seconds", "seconds", "tests": [{"name", "score", "max_score", "message"}], "notes": [...],
     "mistakes": [{"function", "check", "mistake"}] (the diagnosis's keys), "error" (when failed)}

status is graded, unchanged (graded by an earlier run from the same content:
its stored result) or failed (error says why). score and max_score count the
auto-graded points only; manually graded answers are left to the instructor
(formgrader).
"""
import datetime
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from normgrade.grade import autograded, gradebooks, ledger
from normgrade.course import ASSIGNMENT_ID, COURSE_ID, db_url, load_config, paths
from normgrade.language import course_language, speaking
from normgrade.score.notebooks import source_notebooks
from normgrade.grade.preprocessors import SandboxedExecute, take_reports
from normgrade.run.sandbox import Sandbox
from normgrade.score.scorer import scored_code
from normgrade.grade.staging import stage
from normgrade.grade.submissions import id_note


@dataclass(frozen=True)
class Task:
    """One submission to grade: all a process needs, here or on a Dask worker (paths as that machine sees them)."""
    course: str
    url: str  # the gradebook
    student: str
    folder: str
    given: str  # the path as the user gave it, for the report
    run_id: str
    regrade: bool = False
    execute: bool = False
    unsandboxed: bool = False
    root: str = ""  # the folder the instructor named above the submission (discover); default: its parent
    due: str = ""  # the assignment's due date (ISO, naive UTC) or ""
    deadline: str = ""  # late.deadline_key: what else decides the student's lateness
    name: str = ""  # the folder name the student id comes from (discover), when it is known
    intake_notes: tuple = ()  # what reading the submission out of an LMS archive is worth saying (intake)
    lms: bool = False  # read out of an LMS archive (it has no submission time of nbgrader's)
    roster_name: str = ""  # the LMS roster's "Last, First" of the student, where there is one


def grade_submission(task):
    """
    Grade one submission exactly once (normgrade.grade.ledger): stage it, claim it in
    the ledger, score its code in the sandbox, run nbgrader's autograde into the
    gradebook, record the outcome. Return its result dict, with "status":
    graded, unchanged (graded before from the same content; the stored result)
    or failed (with "error").
    """
    start = time.perf_counter()
    with gradebooks.shared_engines():
        return _grade_reporting_errors(task, start)


def _grade_reporting_errors(task, start):
    try:
        return _grade_once(task, start)
    except Exception:
        # Whatever raised (an unreadable file while staging, say), the run reports it and so does the ledger
        # (`normgrade status`, the report); no earlier grade of this student is left standing.
        result = {"path": task.given, "student": task.student, "status": "failed", "score": 0.0, "max_score": 0.0,
                  "tests": [], "notes": [], "seconds": round(time.perf_counter() - start, 2),
                  "error": "grading raised: " + traceback.format_exc(limit=-3).strip()[-2000:]}
        with ledger.gradebook_lock(task.course, task.url):
            forget_submission(task.url, task.student)
            ledger.record_failure(task.url, task.student, task.run_id, result)
        return result


def _grade_once(task, start):
    course = Path(task.course)
    layout = paths(course)
    due = datetime.datetime.fromisoformat(task.due) if task.due else None
    notes = [note for note in [id_note(task.name, task.student)] if note] + list(task.intake_notes)
    notes += stage(course, task.student, task.folder, task.root or None, due, lms=task.lms)
    staged = layout["staged"] / task.student / ASSIGNMENT_ID
    digest = ledger.content_hash(staged, layout["expected"], source_notebooks(layout["source"]), execute=task.execute,
                                 unsandboxed=task.unsandboxed, deadline=task.deadline)
    with ledger.gradebook_lock(course, task.url):
        claim = ledger.claim(task.url, task.student, digest, task.run_id, task.regrade)
    if claim.action == "unchanged":
        return dict(claim.result, path=task.given, status="unchanged", seconds=round(time.perf_counter() - start, 2))
    result = {"path": task.given, "student": task.student, "attempts": claim.attempts, "notes": notes}
    if claim.action == "grade":
        # The sandboxed scoring runs before the gradebook lock; TrustedScores then finds it done. Its messages
        # are in the course's language, as TrustedScores asks for them (scored_code keeps them by language).
        with speaking(course_language(course)):
            scores = scored_code(staged, layout["expected"], Sandbox(unsandboxed=task.unsandboxed), submitted=staged)
        result["mistakes"] = [{"function": function, "check": r.check.label, "mistake": r.mistake}
                              for function, results in scores.items() for r in results if r.mistake]
        result.update(_autograde(course, task))  # it takes the gradebook lock where it writes
    with ledger.gradebook_lock(course, task.url):
        if claim.action != "grade":  # give_up
            forget_submission(task.url, task.student)
            result.update(status="failed", score=0.0, max_score=0.0, tests=[],
                          error=f"the grading process died in each of {claim.attempts} attempts; not tried again")
        result["seconds"] = round(time.perf_counter() - start, 2)
        ledger.finish(task.url, task.student, result)
    return result


def grading_config(course, unsandboxed=False, execute=False, url=None):
    """The course's nbgrader configuration for `normgrade grade`: the gradebook at `url`, the staging folder."""
    config = load_config(course)
    config.TrustedScores.unsandboxed = config.SandboxedExecute.unsandboxed = bool(unsandboxed)
    config.CourseDirectory.db_url = db_url(course, url)
    # nbgrader's submitted/ is, for these runs, the course's staging folder: the course's own submitted/
    # (what `nbgrader collect` fills) is an input like any other, never written.
    staged = str(paths(course)["staged"].relative_to(Path(course)))
    config.CourseDirectory.submitted_directory = staged
    config.TrustedScores.submitted_directory = config.SandboxedExecute.submitted_directory = staged
    if not execute:
        config.Autograde.autograde_preprocessors = [
            p for p in config.Autograde.autograde_preprocessors if p is not SandboxedExecute]
    return config


def nbgrader_api(course, unsandboxed=False, execute=False, url=None):
    """nbgrader's API on the course, with its nbgrader_config.py and the gradebook at `url`, in this process."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = grading_config(course, unsandboxed, execute, url)
    coursedir = CourseDirectory(root=str(Path(course).resolve()), config=config)
    return NbGraderAPI(coursedir=coursedir, config=config)


def _autograde(course, task):
    """
    The staged submission autograded into the gradebook and autograded/
    (normgrade.grade.autograded; nbgrader's converter for a course whose
    configuration lists a preprocessor that cannot run there):
    {status, score, max_score, tests[, error]}. The gradebook lock is held
    only while rows are written (all of the converter's run), so a grading
    waits for no other submission's notebooks to run.
    """
    converter = autograded.converter(grading_config(course, task.unsandboxed, task.execute, task.url), course)
    take_reports(task.student)  # nothing stale from an earlier attempt in this process
    name = known_name(task.student, task.roster_name)
    lock = lambda: ledger.gradebook_lock(course, task.url)  # noqa: E731
    if autograded.unsupported(converter):
        with lock():
            recorded, error = _converted(course, task, name)
    else:
        recorded, error = _written(converter, task, name, lock)
    if error:
        take_reports(task.student)
        with lock():
            forget_submission(task.url, task.student)
            max_score = _max_auto_score(task.url)
        return dict(status="failed", error=error, score=0.0, max_score=max_score, tests=[])
    messages = take_reports(task.student)  # the scorer's own messages, as TrustedScores wrote them
    tests, lateness = recorded
    # In the notebooks' order (the gradebook keeps rows in none: PostgreSQL returns them as they were last written).
    order = {key: index for index, key in enumerate(messages)}
    tests.sort(key=lambda t: (order.get((t["notebook"], t["cell"]), len(order)), t["name"]))
    for test in tests:
        message = messages.get((test.pop("notebook"), test.pop("cell")), "")
        test["message"] = "" if test["score"] == test["max_score"] else message
    raw = round(sum(t["score"] for t in tests), 6)
    return dict(status="graded", raw_score=raw, score=round(max(0.0, raw - lateness["penalty"]), 6),
                max_score=round(sum(t["max_score"] for t in tests), 6), tests=tests, **lateness)


def _written(converter, task, name, lock):
    """Autograde through normgrade.grade.autograded: (_recorded's, None), or (None, what went wrong)."""
    try:
        return autograded.write(converter, task.student, task.url, then=lambda gb: _recorded(gb, task.student, name),
                                lock=lock), None
    except Exception:  # noqa: BLE001 - reported as the submission's failure; nothing was written
        return None, "autograding raised: " + traceback.format_exc(limit=-3).strip()[-2000:]


def _converted(course, task, name):
    """Autograde through nbgrader's converter: (_recorded's, None), or (None, what went wrong: nbgrader's log)."""
    api = nbgrader_api(course, task.unsandboxed, task.execute, task.url)
    outcome = api.autograde(ASSIGNMENT_ID, task.student, force=True, create=True)
    if outcome.get("success"):
        with gradebooks.submission_gradebook(task.url, task.student) as gb:
            return _recorded(gb, task.student, name), None
    log = "\n".join([outcome.get("log") or "", outcome.get("error") or ""]).strip().splitlines()
    errors = [line for line in log if "[ERROR]" in line][:10]  # what nbgrader says went wrong, then where
    return None, "nbgrader autograde failed: " + "\n".join(errors + log[-15:])


def _recorded(gb, student, name=None):
    """
    (tests, lateness) of the student's submission, as nbgrader recorded them
    in the open gradebooks.SubmissionGradebook `gb`: the auto-graded cells, and {submitted_at,
    late_seconds, penalty} (late.LatePenalties): the time (ISO, UTC) or None
    when unknown, the seconds past the due date with the extension (None when
    the time is unknown), and the late penalty in points. In the same
    session, the student's row gets `name` (first, last: known_name) where it
    has none (formgrader showed "None, None"), never over a name the
    instructor gave.
    """
    tests = []
    row = gb.find_student(student)
    if name and not row.first_name and not row.last_name:
        gb.update_or_create_student(student, first_name=name[0], last_name=name[1])
    submission = gb.find_submission(ASSIGNMENT_ID, student)
    gb.cells()  # the assignment's cells, read once in the session: each grade's cell, type and points are found there
    for notebook, grade in gb.grades():
        if grade.cell.cell_type != "code":  # a manually graded (markdown) answer
            continue
        tests.append({"notebook": notebook, "name": f"{notebook}/{grade.name}", "cell": grade.name,
                      "score": float(grade.auto_score), "max_score": float(grade.cell.max_score)})
    known = submission.timestamp is not None
    lateness = {"submitted_at": submission.timestamp.isoformat() + "Z" if known else None,
                "late_seconds": round(submission.total_seconds_late, 1) if known else None,
                "penalty": round(float(submission.late_submission_penalty or 0.0), 6)}
    return tests, lateness


def known_name(student, roster_name=""):
    """
    (first name, last name) of a student, from where the course has them: the
    LMS roster's "Last, First", else the Unix account of that name (a hub's
    student is one) with a full name in its GECOS field; None when neither.
    """
    import pwd

    if roster_name:
        last, _, first = roster_name.partition(",")
        return first.strip(), last.strip()
    try:
        full = pwd.getpwnam(student).pw_gecos.split(",")[0].strip()
    except (KeyError, UnicodeDecodeError):
        return None
    if not full:
        return None
    first, _, last = full.rpartition(" ")
    return (first, last) if first else ("", last)


def forget_submission(url, student):
    """Remove the student's submission from nbgrader's gradebook: a failed grading leaves no earlier grade behind."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(url, COURSE_ID) as gb:
        try:
            gb.remove_submission(ASSIGNMENT_ID, student)
        except MissingEntry:
            pass


def _max_auto_score(url):
    from nbgrader.api import Gradebook

    with Gradebook(url, COURSE_ID) as gb:
        assignment = gb.find_assignment(ASSIGNMENT_ID)
        return float(sum(nb.max_code_score for nb in assignment.notebooks))
