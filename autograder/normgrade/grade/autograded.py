"""
One submission's autograded notebooks and gradebook rows, written in this
process as `nbgrader autograde --force` with the course's configuration writes
them, without nbgrader's converter.

nbgrader's converter runs each notebook through an nbconvert exporter twice
(sanitizing, then autograding), writes it and reads it back in between,
validates it after every preprocessor, and each of its gradebook steps opens
its own session and commits cell by cell: about two thirds of a submission's
grading, in 141 statements. Here the same preprocessors (the classes the
course's nbgrader_config.py lists in Autograde.sanitize_preprocessors and
autograde_preprocessors, configured by it) run on each notebook in memory;
the notebook is validated once and written once; and every gradebook step
shares one session (gradebooks.SubmissionGradebook), committed once when
the whole submission is done. A failure leaves the gradebook and the autograded folder
as they were: the folder is built beside its place and moved in after the
commit.

Each gradebook step runs in that session because it asks
gradebooks.gradebook_of for its gradebook. A course whose configuration lists
a preprocessor that is neither normgrade's nor known to need no gradebook
(without_gradebook) is not written here: `unsupported` names it, and
`normgrade grade` runs nbgrader's converter for that course.

tests/test_autograded.py holds what this writes to a real `nbgrader autograde`
of the same submissions: the notebooks cell for cell and the gradebook row
for row (scores, comments, manual-grade flags, checksums, timestamps, late
penalties).
"""
import contextlib
import os
import shutil
import uuid
from pathlib import Path

import nbformat
from nbconvert.exporters.exporter import ResourcesDict

from normgrade.grade import gradebooks
from normgrade.course import ASSIGNMENT_ID


def without_gradebook():
    """
    The preprocessors of nbgrader and nbconvert an autograde may list that
    read and write only the notebook (tests/test_autograded.py reads their
    code for any use of the gradebook).
    """
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbconvert.preprocessors.sanitize import SanitizeHTML
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, DeduplicateIds, IgnorePattern, LimitOutput

    return {ClearOutput, DeduplicateIds, CheckCellMetadata, IgnorePattern, LimitOutput, ClearMetadataPreprocessor,
            SanitizeHTML}


def converter(course_config, course_root):
    """nbgrader's Autograde converter configured for the course: its traits say what a run of it would do."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(root=str(Path(course_root).resolve()), config=course_config)
    return Autograde(coursedir=coursedir, config=course_config)


def unsupported(autograde):
    """
    The names of the configured preprocessors `write` cannot run in the
    submission's one session ([] if none): any but nbgrader's and nbconvert's
    that need no gradebook (without_gradebook) and normgrade's own
    (each takes its gradebook from gradebooks.gradebook_of).
    """
    known = without_gradebook()
    return [getattr(cls, "__name__", str(cls)) for cls in [*autograde.sanitize_preprocessors,
                                                           *autograde.autograde_preprocessors]
            if cls not in known and not getattr(cls, "__module__", "").startswith("normgrade.")]


def write(autograde, student, url, then=None, lock=contextlib.nullcontext):
    """
    Autograde the student's submission in the course's submitted folder
    (normgrade's staging folder for `normgrade grade`) into the gradebook at
    `url` and the course's autograded/ folder, as `nbgrader autograde --force`
    with the converter `autograde` (see `converter`) would. Raise on any
    failure, with nothing written. `then(gradebook)`, if given, runs in the
    same session once every notebook is written (what it writes is committed
    with them); its value is returned.

    The notebooks go through every preprocessor up to the first that writes
    the gradebook (writes_gradebook: SaveAutoGradesOnce) before `lock()` is
    entered (the course's gradebook lock, for SQLite): executing them, where
    asked, takes minutes that no other grading waits for. The rows are
    written, and the rest run, inside it, in the same session (the course's
    cells, read before, are read once), which is committed, or rolled back,
    before the lock is given back.
    """
    from nbgrader.api import MissingEntry

    coursedir = autograde.coursedir
    submitted = Path(coursedir.format_path(coursedir.submitted_directory, student, ASSIGNMENT_ID))
    dest = Path(coursedir.format_path(coursedir.autograded_directory, student, ASSIGNMENT_ID))
    sanitizing = [cls(config=autograde.config) for cls in autograde.sanitize_preprocessors]
    autograding = [cls(config=autograde.config) for cls in autograde.autograde_preprocessors]
    first_writer = next((n for n, step in enumerate(autograding) if getattr(step, "writes_gradebook", False)),
                        len(autograding))
    _remove_partial(dest)
    building = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.partial"
    try:
        _copy_files(submitted, coursedir, building, autograde.exclude_overwriting.get(ASSIGNMENT_ID, []))
        with gradebooks.submission_gradebook(url, student) as gradebook:
            notebooks = {}
            for path in sorted(submitted.glob("*.ipynb")):
                try:
                    gradebook.find_notebook(path.stem, ASSIGNMENT_ID)
                except MissingEntry:
                    continue
                nb = nbformat.read(path, as_version=4)
                # nbgrader's two passes: the first reads the submitted folder, the second the autograded one.
                for steps, folder in ((sanitizing, submitted), (autograding[:first_writer], building)):
                    resources = _resources(student, path.stem, url, gradebook, folder)
                    for step in steps:
                        nb, resources = step(nb, resources)
                notebooks[path.stem] = nb
            if not notebooks:
                raise ValueError(f"no notebook of the assignment in {submitted}")
            # Until here the session has only read the course's cells, which no grading changes (SQLite holds
            # no lock for a read that is done); the submission's rows are read and written under the lock.
            with lock():
                try:
                    _write_rows(gradebook, student, coursedir, submitted, notebooks)
                    for name, nb in notebooks.items():
                        resources = _resources(student, name, url, gradebook, building)
                        for step in autograding[first_writer:]:
                            nb, resources = step(nb, resources)
                        nbformat.validate(nb)
                        text = nbformat.writes(nb, version=4)
                        (building / f"{name}.ipynb").write_text(text if text.endswith("\n") else text + "\n",
                                                               encoding="utf-8")
                    result = then(gradebook) if then else None
                    gradebook.save()
                except BaseException:
                    gradebook.discard()  # before the lock is given back
                    raise
                _move_in(building, dest)  # after the commit, before the lock is given back
    finally:
        shutil.rmtree(building, ignore_errors=True)
    autograde.set_permissions(ASSIGNMENT_ID, student)
    return result


def _write_rows(gradebook, student, coursedir, submitted, notebooks):
    """The student's and the submission's rows, as nbgrader's converter writes them before the notebooks."""
    gradebook.update_or_create_student(student)
    assignment = gradebook.find_assignment(ASSIGNMENT_ID)
    timestamp = coursedir.get_existing_timestamp(str(submitted))
    gradebook.update_or_create_submission(ASSIGNMENT_ID, student, **({"timestamp": timestamp} if timestamp else {}))
    for notebook in assignment.notebooks:
        if notebook.name not in notebooks:  # nbgrader's rule for a notebook not handed in: nothing earned
            for grade in gradebook.find_submission_notebook(notebook.name, ASSIGNMENT_ID, student).grades:
                grade.auto_score, grade.needs_manual_grade = 0, False


def _resources(student, notebook, url, gradebook, folder):
    """What nbgrader's converter and nbconvert's exporter give a preprocessor of the notebook."""
    resources, metadata = ResourcesDict(), ResourcesDict()
    metadata.update(name=notebook, path=str(folder))
    resources.update({
        "unique_key": notebook, "output_files_dir": f"{notebook}_files", "output_extension": ".ipynb",
        "nbgrader": {"student": student, "assignment": ASSIGNMENT_ID, "notebook": notebook, "db_url": url,
                     gradebooks.HELD: gradebook},
        "metadata": metadata,
    })
    return resources


def _copy_files(submitted, coursedir, building, excluded):
    """The files beside the notebooks, as nbgrader copies them: the submission's, then the source's over them."""
    from nbgrader.utils import find_all_files

    source = Path(coursedir.format_path(coursedir.source_directory, ".", ASSIGNMENT_ID))
    building.mkdir(parents=True)
    skip = coursedir.ignore + ["*.ipynb"]
    kept = {str(source / name) for name in excluded}
    for origin, files in [(submitted, find_all_files(str(submitted), skip)),
                          (source, [f for f in find_all_files(str(source), skip) if f not in kept])]:
        for filename in files:
            target = building / os.path.relpath(filename, origin)
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target.unlink()
            shutil.copy(filename, target)


def _move_in(building, dest):
    """Put the built folder in dest's place (the old one, if any, is removed after)."""
    old = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.old"
    if dest.exists():
        dest.rename(old)
    building.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _remove_partial(dest):
    """What an earlier run that died here left beside dest."""
    if dest.parent.is_dir():
        for left in dest.parent.glob(f".{dest.name}.*"):
            if left.name.endswith((".partial", ".old")):
                shutil.rmtree(left, ignore_errors=True)
