"""
Which folders `normgrade grade` grades, and as whom.

A PATH is one submission (a folder shaped like release/normalization: the
notebooks and normlab/) or a class folder holding one such folder per
student (named by student id; `<id>/normalization/` works too). `discover`
finds them, lists every other entry of a class folder with the reason it is
not graded, and gives each submission its student id (`student_id`: a plain
folder name is the id, any other becomes one no other name can spell).
`refuse_overlaps` keeps grading from reading a folder it writes.
"""
import hashlib
import os
import re
import unicodedata
from pathlib import Path

from normgrade.course import ASSIGNMENT_ID, PLAIN_ID, paths
from normgrade.grade.table import printable


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


def through_link(folder, root):
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
                "folder of submissions" + listed(skipped[-10:])
            )
        found.extend(students)
    if not found:
        raise ValueError("nothing to grade:" + listed(skipped[-10:]))
    return (*_with_ids(found, fold_case), skipped)


def listed(skipped):
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
