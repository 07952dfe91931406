"""
Grading a class: `grade` finds the submissions (normgrade.grade.submissions; an LMS
archive is read into a class folder by normgrade.platforms.intake), grades each
exactly once (normgrade.grade.grading), `workers` at a time in forked children or
on a Dask cluster (normgrade.grade.parallel), and returns the document `normgrade
grade --json` prints:

    {"sandbox", "gradebook", "due", "notes", "skipped": [{"path", "why"}],
     "submissions": [grading's result, ...], "interrupted": [PATH...] (after Ctrl-C)}

Ctrl-C stops the run cleanly and keeps what was graded; a run killed any
other way is resumed by running the same command again.
"""
import shutil
import sys
import uuid
from pathlib import Path

import nbformat
from tqdm import tqdm

from normgrade.score import checks
from normgrade import files
from normgrade.platforms import intake
from normgrade.grade import late, ledger, parallel
from normgrade.course import DEFAULT_COURSE, STAFF_FOLDER, db_url, is_course, load_config, paths
from normgrade.grade.grading import Task, forget_submission, grade_submission
from normgrade.language import LANGUAGES, translations
from normgrade.grade.preprocessors import prepare_markup
from normgrade.run.sandbox import Sandbox, kill_orphans
from normgrade.score.scorer import load_current_expected
from normgrade.grade.submissions import discover, listed, refuse_overlaps, through_link


def warm_up(course, diagnosis=False):
    """
    Do here, once, the first-use work that every forked grading process would
    otherwise repeat (about 0.3 s each, measured): nbgrader's ORM mappers,
    nbformat's compiled schema, the markdown renderer of prepare_markup, the
    compiled catalogs (normgrade.language.translations), and the expected
    values scored_code reads; with `diagnosis`, the hypotheses
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
        for language in LANGUAGES:  # the catalogs the messages, and the stubs' words the scorer knows, come from
            translations(language)
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
    an LMS's bulk-download archive, read with the `roster` (normgrade.platforms.intake).
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
        raise ValueError("nothing to grade:" + listed(skipped[-20:]))
    # On a case-insensitive file system (macOS, a Windows share) Ann's and ann's staging folders are one.
    found, duplicates, found_skipped = discover(folders, fold_case=is_course(course) and files.case_insensitive(course))
    skipped += found_skipped
    # A class entry reached through a link is never followed by staging (it is graded from nothing, with a
    # note): only the rest is where a PATH's own folders could lie inside the course (an archive's are ours).
    refuse_overlaps(course, [folder for _, folder, _, root, _ in found
                             if not through_link(folder, root) and intake_root not in Path(folder).absolute().parents])
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
                # What a run killed outright left there goes now (a run that ends or is stopped leaves nothing:
                # parallel.run_local is its children's subreaper).
                scratch = course / STAFF_FOLDER / "scratch"
                kill_orphans(scratch)
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                parallel.run_local(tasks, grade_submission, workers, on_result, str(scratch),
                                   task_seconds or (EXECUTE_TASK_SECONDS if execute else TASK_SECONDS))
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
