"""
Staging: what grading needs of one submission, copied into the course's
staging folder (normgrade/staged/<student>/normalization, nbgrader's
submitted folder for `normgrade grade`'s runs).

Only each notebook of the assignment (at most 16 MiB and valid, else the
blank release copy, so its code is still graded), normlab/layers.py (a
regular file, at most 1 MiB) and what `nbgrader submit` wrote beside them
(timestamp.txt, when its time can be believed; submission_secret.txt) are
copied, each read once from one descriptor, no link followed
(normgrade.files). The notebooks' text cells are prepared for rendering here,
outside the gradebook lock (preprocessors.prepare_markup).
"""
import datetime
import os
import shutil
from pathlib import Path

import nbformat

from normgrade import files
from normgrade.grade import late
from normgrade.course import ASSIGNMENT_ID, paths
from normgrade.grade.preprocessors import prepare_markup
from normgrade.score.scorer import MAX_LAYERS_BYTES, layers_problem, parse_notebook


MAX_NOTEBOOK_BYTES = 16 << 20
SUBMISSION_SECRET = "submission_secret.txt"  # written by `nbgrader submit`; release_feedback needs it
MAX_SECRET_BYTES = 1024


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
