"""
`normgrade grade PATH...`: grade submissions through nbgrader, with trusted scores.

A PATH is one submission (a folder shaped like release/normalization: the
notebooks and normlab/) or a class folder holding one such folder per student
(named by student id; `<id>/normalization/` works too). For each submission:

1. Only what grading needs is copied into the course's submitted/ folder:
   each notebook of the assignment (at most 16 MiB, valid JSON, else the
   blank release copy, so its code is still graded) and normlab/layers.py
   (a regular file, at most 1 MiB). Nothing else, whatever the submission
   holds; each file is read once from one descriptor and no link is followed
   (normgrade.files). The notebooks' text cells are prepared for rendering
   here, outside the gradebook lock (preprocessors.prepare_markup).
2. The submission is claimed in the ledger (normgrade.ledger): one graded
   before from the same content is not graded again (unless --regrade).
3. Its layers.py is scored by the trusted scorer from raw values a sandboxed
   worker returned, then nbgrader's own autograde converter runs with the
   course's configuration: its sanitizing (graded cells restored from the
   gradebook, deleted ones added back), TrustedScores (which writes the graded
   cells' outputs from those scores) and SaveAutoGrades into the gradebook.
   Notebooks are not executed unless --execute (then in the sandbox too).
4. The outcome goes into the ledger.

Submissions are graded --workers at a time, each in its own child process
(normgrade.parallel), or on a Dask cluster (--dask). Ctrl-C stops the run
cleanly and keeps what was graded; a run killed any other way is resumed by
running the same command again. No student code runs in these processes.
The result:

    {"sandbox": "...", "gradebook": URL, "submissions": [{"path", "student", "status", "score",
                      "max_score", "seconds", "tests": [{"name", "score", "max_score", "message"}],
                      "notes": [...], "mistakes": [{"function", "check", "mistake"}] (known
                      mistakes the wrong values matched: normgrade.mutants), "error" (when
                      failed)}], "interrupted": [PATH...] (after Ctrl-C)}

status is graded, unchanged (graded by an earlier run from the same content:
its stored result) or failed (error says why). score and max_score count
the auto-graded points only; manually graded answers are left to the
instructor (formgrader).
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import sys
import textwrap
import time
import traceback
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
from tqdm import tqdm

from . import autograded, checks, files, gradebooks, intake, late, ledger, parallel
from .course import ASSIGNMENT_ID, COURSE_ID, PLAIN_ID, STAFF_FOLDER, db_url, is_course, load_config, paths
from .notebooks import source_notebooks
from .preprocessors import SandboxedExecute, prepare_markup, take_reports
from .sandbox import Sandbox, kill_orphans
from .scorer import MAX_LAYERS_BYTES, layers_problem, load_current_expected, parse_notebook, scored_code

DEFAULT_COURSE = Path("course")
MAX_NOTEBOOK_BYTES = 16 << 20
SUBMISSION_SECRET = "submission_secret.txt"  # written by `nbgrader submit`; release_feedback needs it
MAX_SECRET_BYTES = 1024


class Overlap(ValueError):
    """A PATH to grade lies where grading writes: nothing was graded."""


def refuse_overlaps(course, folders):
    """
    Raise Overlap if a submission folder (as it resolves, links followed) is
    a folder of the course other than its submitted/: one that grading
    writes (the staging folder and the rest of normgrade/, autograded/,
    feedback/), or the course itself, its release/ or source/ (the blank
    assignment and the answer keys are never a student's). Grading never
    writes where it reads; the course's own submitted/ (what `nbgrader
    collect` fills) is read like any class folder.
    """
    layout = paths(course)
    written = {"the staging folder (normgrade/)": layout["staged"].parent, "autograded/": layout["autograded"],
               "feedback/": layout["feedback"]}
    course_real = Path(os.path.realpath(course))
    submitted = Path(os.path.realpath(layout["submitted"]))

    def within(path, place):
        return path == place or place in path.parents

    for folder in folders:
        real = Path(os.path.realpath(folder))
        for name, place in written.items():
            place = Path(os.path.realpath(place))
            if within(real, place):
                raise Overlap(f"{folder} is inside the course's {name} ({place}), which grading writes: nothing "
                              f"was graded. Grade the submissions where they were handed in (a class folder, or "
                              f"the course's submitted/ after `nbgrader collect`)")
        if within(real, course_real) and not within(real, submitted):
            where = "the course folder" if real == course_real else \
                f"inside the course ({real.relative_to(course_real).parts[0]}/)"
            raise Overlap(f"{folder} is {where}: folders of the course are never submissions (release/ and source/ "
                          f"hold the blank assignment and the answer keys); nothing was graded. Grade a class folder, "
                          f"or the course's submitted/ after `nbgrader collect`")


def _through_link(folder, root):
    """Whether `folder` is reached from `root` (a folder above it) through a symbolic link."""
    folder, root = Path(folder).absolute(), Path(root).absolute()
    return any(part.is_symlink() for part in [folder, *folder.parents] if root in part.parents)


def _is_submission(folder):
    return folder.is_dir() and (any(folder.glob("*.ipynb")) or (folder / "normlab").is_dir())


def discover(paths_given, fold_case=False):
    """
    ([(student_id, submission folder, path as given, root, folder name)], duplicates,
    skipped) for the PATHs, in order (duplicates: see _with_ids). root is the
    folder the instructor named above the student's own (the class folder, or
    the submission's parent): staging follows no link below it. skipped lists
    [(path, why)] for each entry of a class folder that is not graded: every
    entry is either graded or skipped with its reason.
    """
    found, skipped = [], []
    for given in paths_given:
        folder = Path(given)
        if not folder.is_dir():
            raise FileNotFoundError(f"{given}: no such folder (looked for {folder.absolute()})")
        if _is_submission(folder):
            named = folder.absolute()
            if named.name == ASSIGNMENT_ID:  # <id>/normalization: the id is the parent's name
                named = named.parent
            found.append((named.name, folder, str(given), named.parent))
            continue
        if _is_submission(folder / ASSIGNMENT_ID):  # class/ann, holding ann/normalization/
            named = folder.absolute()
            found.append((named.name, folder / ASSIGNMENT_ID, str(given), named.parent))
            continue
        if _one_students_folder(folder):  # class/frank: a student's folder, whatever it holds deeper
            skipped.append((str(given), f"a student's folder of the class folder {folder.absolute().parent} "
                                        f"(which holds other submissions), not itself a submission: "
                                        f"{_not_a_submission(folder)}"))
            continue
        students = []
        for child in sorted(folder.iterdir()):
            inner = child / ASSIGNMENT_ID
            if _is_submission(inner):
                students.append((child.name, inner, str(child), folder))
            elif _is_submission(child):
                students.append((child.name, child, str(child), folder))
            else:
                skipped.append((str(child), _not_a_submission(child)))
        if not students:
            raise ValueError(
                f"{given}: neither a submission (a folder with the notebooks and normlab/) nor a class "
                "folder of submissions" + _listed(skipped[-10:])
            )
        found.extend(students)
    if not found:
        raise ValueError("nothing to grade:" + _listed(skipped[-10:]))
    return (*_with_ids(found, fold_case), skipped)


def _listed(skipped):
    """Skipped entries, a line each, for an error message (names from students: no control characters)."""
    return "".join(f"\n  {printable(path)}: {printable(why)}" for path, why in skipped)


def _one_students_folder(folder):
    """
    Whether `folder` (not a submission) is one student's entry of a class
    folder, such as class/frank holding frank/Downloads/normalization/: it
    holds one submission at most, and two other entries of its parent or
    more are submissions (<id>/ or <id>/normalization/); an nbgrader course
    (whose submitted/ sits beside release/) is no class folder. Ids come from
    the class folder's own entries, so that submission is never student
    "Downloads"; a class folder of several students, or one beside a single
    submission, is never mistaken for a student's.
    """
    def holds_submission(entry):
        return _is_submission(entry) or _is_submission(entry / ASSIGNMENT_ID)

    folder = folder.absolute()
    parent = folder.parent
    try:
        if (parent / "nbgrader_config.py").exists() or sum(map(holds_submission, folder.iterdir())) > 1:
            return False
        return sum(holds_submission(entry) for entry in parent.iterdir() if entry.name != folder.name) >= 2
    except OSError:
        return False


def _not_a_submission(entry):
    """Why an entry of a class folder is not graded (it is neither <id>/ nor <id>/normalization/ with the notebooks)."""
    if entry.is_symlink() and not entry.exists():
        return "a broken link, not graded"
    if not entry.is_dir():
        hint = " (unzip it into a folder named by the student id)" if entry.suffix.lower() in (
            ".zip", ".tar", ".gz", ".tgz", ".7z", ".rar") else ""
        return f"a file, not a submission folder{hint}; not graded"
    try:  # two levels down at most (frank/Downloads/normalization/): a student's tree is not walked
        deeper = next((p.parent for pattern in ("*/*.ipynb", "*/*/*.ipynb") for p in sorted(entry.glob(pattern))),
                      None)
    except OSError:
        deeper = None
    if deeper is not None:
        return (f"no notebooks or normlab/ at its top, but a notebook deeper, in {deeper}: move that folder's "
                f"contents up to {entry} to grade it; not graded")
    return "holds no notebooks and no normlab/: not a submission, not graded"


HASHED = "~"  # never in a plain id


def student_id(name):
    """
    The student id of a submission folder's name, the same in every run. A
    plain name (PLAIN_ID: what JupyterHub and nbgrader's exchange use, such
    as jo.doe or jo@uni.edu: letters, digits, _ . @ -, not starting with . or
    -, at most 128 characters) is the id, as nbgrader's own commands see it.
    Any other name (spaces, other scripts, a leading -, a path trick) gets
    its other characters replaced by _, then "~" and 16 hex digits of the
    SHA-256 of its NFC form (so a name spelled in NFD, as macOS writes file
    names, is the same student). No plain name has a "~", so no folder name
    spells another's hashed id, and two hashed ids differ unless 64 bits of
    SHA-256 collide.
    """
    if PLAIN_ID.fullmatch(name):
        return name
    name = unicodedata.normalize("NFC", name)
    readable = re.sub(r"[^A-Za-z0-9_.@-]", "_", name)[:40] or "student"
    return f"{readable}{HASHED}{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def id_note(name, student):
    """A note for a submission whose folder name (`name`; "" when unknown) is not its student id."""
    if name in ("", student):
        return ""
    return (f"the folder name {name!r} is not a plain student id (letters, digits, _ . @ -, not starting with . or "
            f"-): graded as {student!r}; plain nbgrader would name it otherwise, so rename the folder to grade it "
            "under a plain id")


def _with_ids(found, fold_case=False):
    """
    (submissions, duplicates) from found, with student ids (student_id):
    submissions [(student, folder, given, root, folder name)], and duplicates {student:
    [given, ...]} for ids that two submissions of this run would share (the
    same folder named twice, or <id> and <id>/normalization given
    separately; with fold_case, as on a case-insensitive file system, also
    Ann and ann). Those are left out of the run, which grades the rest of the
    class and reports them (grade() lists them failed): one is never graded
    as the other.
    """
    by_id = {}
    for name, folder, given, root in found:
        student = student_id(name)
        by_id.setdefault(student.casefold() if fold_case else student, []).append((student, folder, given, root, name))
    submissions = [entries[0] for entries in by_id.values() if len(entries) == 1]
    duplicates = {entries[0][0]: [given for _, _, given, _, _ in entries] for entries in by_id.values()
                  if len(entries) > 1}
    return submissions, duplicates


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
    for notebook in submission.notebooks:
        for grade in notebook.grades:
            if grade.cell.cell_type != "code":  # a manually graded (markdown) answer
                continue
            tests.append({
                "notebook": notebook.name, "name": f"{notebook.name}/{grade.name}",
                "cell": grade.name, "score": float(grade.auto_score), "max_score": float(grade.cell.max_score),
            })
    known = submission.timestamp is not None
    lateness = {"submitted_at": submission.timestamp.isoformat() + "Z" if known else None,
                "late_seconds": round(submission.total_seconds_late, 1) if known else None,
                "penalty": round(float(submission.late_submission_penalty or 0.0), 6)}
    return tests, lateness


def stage(course, student, folder, root=None, due=None, lms=False):
    """
    Copy what grading needs from a submission folder into the staging folder
    (normgrade/staged/<student>/); return notes on what was missing or
    refused. The submission time (timestamp.txt, nbgrader's) is staged when it
    can be believed (late.submission_time; `due`, the due date, decides whether
    a missing one is worth a note). Each file is read once, from
    one descriptor, and no link below `root` (the folder the instructor named:
    the class folder; by default the submission's parent) is followed
    (normgrade.files). Notebooks are rewritten by nbformat (so only valid
    notebooks reach nbgrader), missing or broken ones replaced by their blank
    release copy; their text cells are prepared for rendering here, outside
    the gradebook lock (preprocessors.prepare_markup).
    """
    layout = paths(course)
    target = layout["staged"] / student / ASSIGNMENT_ID
    if target.exists():
        shutil.rmtree(target)
    (target / "normlab").mkdir(parents=True)
    notes = []
    folder = Path(folder).absolute()
    root = Path(root).absolute() if root else folder.parent
    try:
        folder_fd = files.open_folder(root, folder.relative_to(root).parts)
    except files.LinkedFolder:
        notes.append("the submission folder is a link to somewhere else: not followed, nothing graded from it")
        folder_fd = files.open_folder(target / "normlab")  # an empty place: every file below is missing
    try:
        for blank in sorted(layout["release"].glob("*.ipynb")):
            data, problem = files.read_file(folder_fd, (blank.name,), MAX_NOTEBOOK_BYTES)
            nb, why = parse_notebook(data, blank.name) if data is not None else (None, {
                files.Problem.MISSING: f"{blank.name} is missing",
                files.Problem.NOT_REGULAR: f"{blank.name} is not a regular file (a link, a folder or a pipe): not read",
                files.Problem.TOO_LARGE: f"{blank.name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB"}[problem])
            if nb is None:
                notes.append(f"{blank.name}: {why}; graded from the blank release copy, so its inline answers earn "
                             "nothing")
                nb = nbformat.read(blank, as_version=4)
            prepare_markup(nb)
            nbformat.write(nb, target / blank.name)
        layers, problem = files.read_file(folder_fd, ("normlab", "layers.py"), MAX_LAYERS_BYTES)
        stamp, stamp_problem = files.read_file(folder_fd, ("timestamp.txt",), late.MAX_TIMESTAMP_BYTES)
        secret, _ = files.read_file(folder_fd, (SUBMISSION_SECRET,), MAX_SECRET_BYTES)
    finally:
        os.close(folder_fd)
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    when, note = late.submission_time(stamp, now, due, stamp_problem)
    if note and not lms:  # an LMS's download has no timestamp.txt: its own late marker is its intake note
        notes.append(note)
    if when is not None:  # as nbgrader writes it; nbgrader's autograde reads it from here
        (target / "timestamp.txt").write_text(f"{when:%Y-%m-%d %H:%M:%S.%f} UTC")
    if secret is not None:  # nbgrader's release_feedback names each student's feedback by it
        (target / SUBMISSION_SECRET).write_bytes(secret)
    if layers is None:
        notes.append(layers_problem(problem))
    else:
        (target / "normlab" / "layers.py").write_bytes(layers)
    return notes


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
    Grade one submission exactly once (normgrade.ledger): stage it, claim it in
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
        # The sandboxed scoring runs before the gradebook lock; TrustedScores then finds it done.
        scores = scored_code(staged, layout["expected"], Sandbox(unsandboxed=task.unsandboxed), submitted=staged)
        result["mistakes"] = [{"function": function, "check": r.check.label, "mistake": r.mistake}
                              for function, results in scores.items() for r in results if r.mistake]
    with ledger.gradebook_lock(course, task.url):
        if claim.action == "grade":
            result.update(_autograde(course, task))
        else:  # give_up
            forget_submission(task.url, task.student)
            result.update(status="failed", score=0.0, max_score=0.0, tests=[],
                          error=f"the grading process died in each of {claim.attempts} attempts; not tried again")
        result["seconds"] = round(time.perf_counter() - start, 2)
        ledger.finish(task.url, task.student, result)
    return result


def _autograde(course, task):
    """
    The staged submission autograded into the gradebook and autograded/
    (normgrade.autograded; nbgrader's converter for a course whose
    configuration lists a preprocessor that cannot run there):
    {status, score, max_score, tests[, error]}.
    """
    converter = autograded.converter(grading_config(course, task.unsandboxed, task.execute, task.url), course)
    take_reports(task.student)  # nothing stale from an earlier attempt in this process
    name = known_name(task.student, task.roster_name)
    recorded, error = (_converted(course, task, name) if autograded.unsupported(converter) else
                       _written(converter, task, name))
    if error:
        take_reports(task.student)
        forget_submission(task.url, task.student)
        return dict(status="failed", error=error, score=0.0, max_score=_max_auto_score(task.url), tests=[])
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


def _written(converter, task, name):
    """Autograde through normgrade.autograded: (_recorded's, None), or (None, what went wrong)."""
    try:
        return autograded.write(converter, task.student, task.url, then=lambda gb: _recorded(gb, task.student, name)), \
            None
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


def warm_up(course, diagnosis=False):
    """
    Do here, once, the first-use work that every forked grading process would
    otherwise repeat (about 0.3 s each, measured): nbgrader's ORM mappers,
    nbformat's compiled schema, the markdown renderer of prepare_markup, and
    the expected values scored_code reads; with `diagnosis`, the hypotheses
    the diagnosis of a wrong value tries (checks.prepare_diagnosis: 0.5 s
    here, 0.2 s less in each submission with a mistake, so only for a class
    larger than its workers). The children inherit it. Nothing
    here opens the gradebook, so no connection crosses a fork, and no student
    code runs in this process. It is only a saving: whatever fails here (a
    broken release notebook, missing expected values) is left for each
    submission's grading to meet and report, as it would without it.
    """
    import nbgrader.api  # noqa: F401 - its tables and models
    from sqlalchemy.orm import configure_mappers

    try:
        configure_mappers()
        layout = paths(course)
        for blank in sorted(layout["release"].glob("*.ipynb"))[:1]:
            prepare_markup(nbformat.read(blank, as_version=4))
        data = load_current_expected(layout["expected"])
        if diagnosis:
            checks.prepare_diagnosis(data)
    except Exception:  # noqa: BLE001 - see above
        pass


TASK_SECONDS = 300  # one submission, all in: its sandboxed calls have 120 s (scorer.SUBMISSION_SECONDS)
EXECUTE_TASK_SECONDS = 1800  # with --execute: each notebook may run for SandboxedExecute.timeout (300 s)


def grade(paths_given, course=DEFAULT_COURSE, unsandboxed=False, execute=False, workers=1, url=None,
          dask=None, regrade=False, progress=False, task_seconds=None, roster=None, roster_id_column="SIS Login ID",
          name_pattern=intake.CANVAS_PATTERN):
    """
    Grade every submission found in paths_given, `workers` at a time (or on the
    Dask scheduler at `dask`), exactly once in the gradebook at `url` (default:
    the course's); return the JSON document (a dict). A PATH that is a file is
    an LMS's bulk-download archive, read with the `roster` (normgrade.intake).
    Ctrl-C returns what was graded, with "interrupted": the submissions left
    for the next run. A local grading process still running after
    task_seconds (default TASK_SECONDS, or EXECUTE_TASK_SECONDS with execute)
    is stopped, and its submission recorded failed.
    """
    course = Path(course).resolve()
    refuse_overlaps(course, paths_given)
    run_id = uuid.uuid4().hex
    intake_root = course / STAFF_FOLDER / "intake" / run_id
    try:
        return _grade(paths_given, course, unsandboxed, execute, workers, url, dask, regrade, progress, task_seconds,
                      roster, roster_id_column, name_pattern, run_id, intake_root)
    finally:
        shutil.rmtree(intake_root, ignore_errors=True)


def _archives(paths_given, course, roster, roster_id_column, name_pattern, intake_root):
    """
    (folders, skipped, notes, origins): the PATHs with each archive read into
    a class folder under intake_root; origins {that folder: the archive as
    given}, for the reports (the folder is gone when the run ends).
    """
    archives = [given for given in paths_given if Path(given).is_file()]
    if not archives:
        return list(paths_given), [], {}, {}
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course: build it first with `normgrade release --course "
                                f"{course}` (nothing was graded)")
    if roster is None:
        raise ValueError(f"{archives[0]} is a file: an LMS archive is read with a roster that maps its LMS ids to "
                         "student ids (--roster, Canvas's gradebook export or a CSV of lms_id,student_id)")
    regex = intake.check_pattern(name_pattern)
    mapping = intake.read_mapping(roster, roster_id_column)
    folders, skipped, notes, origins = [], [], {}, {}
    for number, given in enumerate(paths_given):
        if given not in archives:
            folders.append(given)
            continue
        read = intake.read_archive(given, mapping, paths(course)["release"], intake_root / str(number), regex)
        skipped += read.skipped
        notes.update(read.notes)
        if read.folder.is_dir() and any(read.folder.iterdir()):
            folders.append(read.folder)
            origins[str(Path(read.folder).absolute())] = str(given)
    return folders, skipped, notes, origins


def _grade(paths_given, course, unsandboxed, execute, workers, url, dask, regrade, progress, task_seconds,
           roster, roster_id_column, name_pattern, run_id, intake_root):
    folders, skipped, intake_notes, origins = _archives(paths_given, course, roster, roster_id_column, name_pattern,
                                                        intake_root)
    roster_names = intake.roster_names(roster, roster_id_column) if roster and origins else {}
    if not folders:
        raise ValueError("nothing to grade:" + _listed(skipped[-20:]))
    # On a case-insensitive file system (macOS, a Windows share) Ann's and ann's staging folders are one.
    found, duplicates, found_skipped = discover(folders, fold_case=is_course(course) and files.case_insensitive(course))
    skipped += found_skipped
    # A class entry reached through a link is never followed by staging (it is graded from nothing, with a
    # note): only the rest is where a PATH's own folders could lie inside the course (an archive's are ours).
    refuse_overlaps(course, [folder for _, folder, _, root, _ in found
                             if not _through_link(folder, root) and intake_root not in Path(folder).absolute().parents])
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course: build it first with `normgrade release --course "
                                f"{course}` (nothing was graded)")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, not {workers}")
    sandbox = Sandbox(unsandboxed=unsandboxed)  # refuses here, before anything, where bubblewrap cannot run
    policy = late.policy(load_config(course))  # a wrong course_config.py stops the run here, with what is wrong
    url = db_url(course, url)
    results = {}
    with ledger.run_lock(course):
        ledger.prepare(course, url)
        due = late.due_date(url)
        _, gone = ledger.current_rows(url)  # graded once, since removed from the gradebook: graded again
        archive = {s: next((given for folder, given in origins.items() if Path(folder) in Path(f).absolute().parents),
                           None) for s, f, _, _, _ in found}  # the LMS archive a submission was read out of
        tasks = [Task(str(course), url, s, str(Path(f).absolute()), f"{archive[s]}: {s}" if archive[s] else g, run_id,
                      regrade or s in gone, execute, unsandboxed, str(Path(root).absolute()),
                      due.isoformat() if due else "", late.deadline_key(due, policy, s), name,
                      tuple(intake_notes.get(s, ())), archive[s] is not None, roster_names.get(s, ""))
                 for s, f, g, root, name in found]
        notes = late.unknown_extensions(policy, url, [s for s, *_ in found] + list(duplicates))
        tqdm.monitor_interval = 0  # no monitor thread: the local runner forks while the bar is open
        bar = tqdm(total=len(tasks), unit="submission", disable=not progress, file=sys.stderr,
                   desc="grading" if dask else f"grading ({workers} worker{'s' * (workers > 1)})")

        def on_result(task, result):
            if result.get("stopped"):  # killed in the middle: the ledger and gradebook say failed, not running
                result.pop("stopped")
                with ledger.gradebook_lock(task.course, task.url):
                    forget_submission(task.url, task.student)
                    ledger.record_failure(task.url, task.student, task.run_id, result)
            results[task.student] = result
            failed = sum(r.get("status") == "failed" for r in results.values())
            bar.set_postfix(failed=failed, left=len(tasks) - len(results), refresh=False)
            bar.update()

        interrupted = []
        try:
            if dask:
                parallel.run_dask(tasks, grade_submission, dask, on_result)
            else:
                warm_up(course, diagnosis=len(tasks) > workers)
                scratch = course / STAFF_FOLDER / "scratch"  # what a killed run left there goes now
                kill_orphans(scratch)
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                try:
                    parallel.run_local(tasks, grade_submission, workers, on_result, str(scratch),
                                       task_seconds or (EXECUTE_TASK_SECONDS if execute else TASK_SECONDS))
                finally:  # a child stopped while bwrap set up its sandbox leaves that bwrap waiting: not past the run
                    kill_orphans(scratch)
        except parallel.Interrupted as stop:
            interrupted = sorted(task.given for task in stop.unfinished if task.student not in results)
        finally:
            bar.close()
    refused = [dict(parallel.crash_result(Task(str(course), url, student, "", given, run_id),
                                          f"{len(givens)} submissions of this run would all be graded as student "
                                          f"{student!r} ({', '.join(givens)}): none of them was graded; grade them "
                                          "in separate runs, or rename one"), seconds=0.0)
               for student, givens in duplicates.items() for given in givens]
    document = {"sandbox": sandbox.description, "gradebook": ledger.safe_url(url),
                "due": due.isoformat() + "Z" if due else None, "notes": notes,
                "skipped": [{"path": path, "why": why} for path, why in skipped],
                "submissions": [results[t.student] for t in tasks if t.student in results] + refused}
    if interrupted:
        document["interrupted"] = interrupted
    return document


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text):
    """Text from a student (messages include what their code raised) without terminal control characters."""
    return _CONTROL.sub("?", str(text))


def duration(seconds):
    """Seconds as a short text: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def late_text(result):
    """A submission's lateness for the table: '', 'time unknown', '3 h 05 min late' with ', -3.6 points'."""
    if result.get("status") == "failed" or "late_seconds" not in result:
        return ""
    if result["late_seconds"] is None:
        return "time unknown"
    if not result["late_seconds"]:
        return ""
    penalty = f", -{result['penalty']:g} points" if result.get("penalty") else ""
    return f"{duration(result['late_seconds'])} late{penalty}"


TABLE_WIDTH = 110


def _lost_lines(test):
    """
    A test that lost points, for the table: its first lost check in full
    (the message's own words, diagnosis included, wrapped between words,
    never cut), and how many more the feedback and --json hold.
    """
    items = [" ".join(part.split()) for part in re.split(r"\n\s*- ", printable(test["message"]))[1:]]
    items = items or [" ".join(printable(test["message"]).split())]
    more = f" (and {len(items) - 1} more: see the feedback, or --json)" if len(items) > 1 else ""
    head = f"  {test['name']}: {test['score']:g} / {test['max_score']:g}  "
    wrapped = textwrap.wrap(items[0] + more, width=TABLE_WIDTH - len(head), break_long_words=False,
                            break_on_hyphens=False) or [""]
    return [head + wrapped[0]] + textwrap.wrap(" ".join(wrapped[1:]), width=TABLE_WIDTH - 6, initial_indent="      ",
                                               subsequent_indent="      ", break_long_words=False,
                                               break_on_hyphens=False)


def format_table(document):
    """A readable table of the results, with the messages of lost points (control characters shown as ?)."""
    lines = [f"graded in: {document.get('sandbox', '?')}"]
    if document.get("due"):
        lines.append(f"due: {document['due']}")
    lines += [f"note: {printable(note)}" for note in document.get("notes", [])]
    rows = document["submissions"]
    paths_shown = {id(r): re.sub(r"\s", " ", printable(r["path"])) for r in rows}  # students name the folders
    width = max([len(shown) for shown in paths_shown.values()] + [10])
    late_column = bool(document.get("due")) or any(r.get("penalty") for r in rows)
    lines.append(f"{'submission':<{width}}  {'score':>13}  {'seconds':>7}  {'status':<9}" + "  late" * late_column)
    for r in rows:
        lines.append(f"{paths_shown[id(r)]:<{width}}  {r['score']:>6g} / {r['max_score']:<4g}  {r.get('seconds', 0):>7.1f}"
                     f"  {r.get('status', ''):<9}" + f"  {late_text(r)}" * late_column)
    for r in rows:
        lost = [t for t in r["tests"] if t["score"] < t["max_score"]]
        if r.get("error") or lost or r.get("notes"):
            lines.append("")
            lines.append(f"{paths_shown[id(r)]} ({r['student']}):")
        if r.get("error"):
            lines.append(f"  grading failed: {printable(r['error'].splitlines()[0])}")
        for note in r.get("notes", []):
            lines.append(f"  note: {printable(note)}")
        for t in lost:
            lines += _lost_lines(t)
    for entry in document.get("skipped", []):
        lines.append(f"skipped: {printable(entry['path'])}: {printable(entry['why'])}")
    counts = {status: sum(r.get("status") == status for r in rows) for status in ("graded", "unchanged", "failed")}
    lines += ["", f"{counts['graded']} graded, {counts['unchanged']} unchanged since they were graded "
                  f"(--regrade grades them again), {counts['failed']} failed"]
    for r in rows:
        if r.get("status") == "failed":
            lines.append(f"  failed: {paths_shown[id(r)]}: {printable(r.get('error', '').splitlines()[0] if r.get('error') else '')}")
    if document.get("interrupted"):
        lines.append(f"interrupted: {len(document['interrupted'])} submissions not graded; run the same command "
                     "again to grade them (what was graded is kept)")
    return "\n".join(lines)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "grade", help="autograde submissions with nbgrader", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a submission folder, a class folder of them, or an LMS's bulk-download zip (--roster)")
    parser.add_argument("--course", type=Path, default=DEFAULT_COURSE,
                        help=f"the course directory (default ./{DEFAULT_COURSE}), built by `normgrade release`")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="submissions graded at once, each in its own process (default: the number of cores)")
    parser.add_argument("--db-url", metavar="URL",
                        help="the gradebook, e.g. postgresql+psycopg://user@host/db (default: the course config's "
                             "CourseDirectory.db_url, else the course's gradebook.db)")
    parser.add_argument("--dask", metavar="ADDRESS",
                        help="grade on this Dask scheduler (tcp://host:8786) instead of local processes; every "
                             "worker needs the course and submissions at the same paths, and a shared gradebook")
    parser.add_argument("--regrade", action="store_true",
                        help="grade again submissions already graded from the same content")
    parser.add_argument("--task-timeout", type=float, metavar="SECONDS",
                        help=f"stop a submission's grading after this long and report it failed (default "
                             f"{TASK_SECONDS} s, {EXECUTE_TASK_SECONDS} s with --execute; local workers)")
    lms = parser.add_argument_group("LMS archives", "a PATH that is a zip file: Canvas's Download Submissions, or "
                                                    "another LMS's with --name-pattern (normgrade.intake)")
    lms.add_argument("--roster", type=Path, metavar="CSV",
                     help="maps the archive's LMS ids to student ids: Canvas's gradebook export, or lms_id,student_id")
    lms.add_argument("--roster-id-column", default="SIS Login ID", metavar="COLUMN",
                     help="the Canvas export's column of student ids (default: SIS Login ID)")
    lms.add_argument("--name-pattern", default=intake.CANVAS_PATTERN, metavar="REGEX",
                     help="how the LMS names a submitted file: named groups lms_id and file, optionally late and "
                          "submission (default: Canvas's)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--execute", action="store_true",
                        help="also execute the notebooks (in the sandbox), for the plots formgrader shows")
    parser.add_argument("--unsandboxed", action="store_true",
                        help="run student code without bubblewrap where user namespaces are blocked "
                             "(unsafe: student code runs with your rights; every report says so)")
    parser.set_defaults(run=run)


def run(args):
    document = grade(args.paths, args.course, unsandboxed=args.unsandboxed, execute=args.execute,
                     workers=args.workers, url=args.db_url, dask=args.dask, regrade=args.regrade,
                     task_seconds=args.task_timeout, roster=args.roster, roster_id_column=args.roster_id_column,
                     name_pattern=args.name_pattern, progress=not args.no_progress and sys.stderr.isatty())
    print(json.dumps(document, indent=2) if args.json else format_table(document))
    return 130 if document.get("interrupted") else 0
