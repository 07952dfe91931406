"""
`normgrade grade PATH...`: grade submissions through nbgrader autograde.

A PATH is one submission (a folder shaped like release/normalization: the
notebooks and normlab/) or a class folder holding one such folder per student
(named by student id; `<id>/normalization/` works too). Each submission is
autograded by its own `nbgrader autograde` process in its own scratch course
(see grade_one), then copied into the course's submitted/ and autograded/
folders with its grades recorded in the course gradebook, so one broken or
hostile submission cannot stop or change the grading of another. The result:

    {"submissions": [{"path", "student", "score", "max_score", "seconds",
                      "tests": [{"name", "score", "max_score", "message"}]}]}

score and max_score count the auto-graded points only; manually graded
answers are left to the instructor (formgrader).
"""
import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from .course import ASSIGNMENT_ID, CONFIG_NAME, COURSE_ID, NbgraderError, db_url, is_course, paths, run_nbgrader
from .expected import EXPECTED_NAME

DEFAULT_COURSE = Path("course")
_IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.pyc", EXPECTED_NAME)


def _is_submission(folder):
    return folder.is_dir() and any(folder.glob("*.ipynb"))


def discover(paths_given):
    """[(student_id, submission folder, path as given)] for the PATHs, in order."""
    found = []
    for given in paths_given:
        folder = Path(given)
        if not folder.is_dir():
            raise FileNotFoundError(f"{given}: no such folder")
        if _is_submission(folder):
            found.append((folder.resolve().name, folder, str(given)))
            continue
        students = []
        for child in sorted(p for p in folder.iterdir() if p.is_dir()):
            inner = child / ASSIGNMENT_ID
            if _is_submission(inner):
                students.append((child.name, inner, str(child)))
            elif _is_submission(child):
                students.append((child.name, child, str(child)))
        if not students:
            raise ValueError(
                f"{given}: neither a submission (a folder with the notebooks and normlab/) nor a class "
                "folder of submissions"
            )
        found.extend(students)
    return _unique_ids(found)


def _unique_ids(found):
    seen, result = {}, []
    for student, folder, given in found:
        student = re.sub(r"[^A-Za-z0-9_-]", "_", student) or "student"
        seen[student] = seen.get(student, 0) + 1
        if seen[student] > 1:
            student = f"{student}_{seen[student]}"
        result.append((student, folder, given))
    return result


def _messages(autograded_dir):
    """{(notebook, grade_id): message} from the outputs of the graded cells."""
    messages = {}
    for path in sorted(autograded_dir.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if not grade_id or cell.cell_type != "code":
                continue
            parts = []
            for output in cell.get("outputs", []):
                if output.output_type == "stream":
                    parts.append(output.text.strip())
                elif output.output_type == "error":
                    parts.append(f"{output.ename}: {output.evalue}".strip())
            messages[(path.stem, grade_id)] = "\n".join(p for p in parts if p)
    return messages


def _results(course, student):
    """The auto-graded cells of a student's submission, from the gradebook."""
    from nbgrader.api import Gradebook

    tests = []
    with Gradebook(db_url(course), COURSE_ID) as gb:
        submission = gb.find_submission(ASSIGNMENT_ID, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.cell.cell_type != "code":  # a manually graded (markdown) answer
                    continue
                tests.append({
                    "notebook": notebook.name, "name": f"{notebook.name}/{grade.name}",
                    "cell": grade.name, "score": float(grade.auto_score), "max_score": float(grade.max_score),
                })
    return tests


def grade_one(course, student, folder, given, timeout=1800, template_db=None):
    """
    Autograde one submission folder as `student`; return its result dict.

    The student's code runs in a scratch course that holds only what grading
    needs: the config, the provided files and expected values (no solutions,
    no source notebooks) and a copy of the gradebook without other students,
    kept in another folder. The real course receives the submitted and
    autograded folders, and its gradebook is written from the autograded
    notebooks by nbgrader's own SaveAutoGrades, run here, outside the kernel.
    """
    course = Path(course)
    layout = paths(course)
    start = time.perf_counter()
    result = {"path": given, "student": student}
    with tempfile.TemporaryDirectory(prefix="normgrade-course-") as scratch, \
            tempfile.TemporaryDirectory(prefix="normgrade-db-") as db_folder:
        scratch = Path(scratch)
        scratch_db = Path(db_folder) / "gradebook.db"
        shutil.copy(template_db or _template_db(course, db_folder), scratch_db)
        shutil.copy(layout["config"], scratch / CONFIG_NAME)
        shutil.copytree(layout["source"], scratch / "source" / ASSIGNMENT_ID, ignore=_SOURCE_ONLY_FOR_STAFF)
        shutil.copytree(folder, scratch / "submitted" / student / ASSIGNMENT_ID, ignore=_IGNORE)
        try:
            run_nbgrader(scratch, "autograde", ASSIGNMENT_ID, "--student", student, "--create", "--force",
                         f"--CourseDirectory.db_url=sqlite:///{scratch_db}", timeout=timeout)
        except NbgraderError as err:
            result["error"] = str(err)
        else:
            _import_into(course, student, folder, scratch / "autograded" / student / ASSIGNMENT_ID)
    if "error" in result:
        result.update(score=0.0, max_score=_max_auto_score(course), tests=[])
    else:
        autograded = layout["autograded"] / student / ASSIGNMENT_ID
        messages = _messages(autograded)
        tests = _results(course, student)
        for test in tests:
            message = messages.get((test.pop("notebook"), test.pop("cell")), "")
            test["message"] = "" if test["score"] == test["max_score"] else message
        result.update(
            score=round(sum(t["score"] for t in tests), 6),
            max_score=round(sum(t["max_score"] for t in tests), 6),
            tests=tests,
        )
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


# What the student's kernel must not be able to read: the reference and the source notebooks.
_SOURCE_ONLY_FOR_STAFF = shutil.ignore_patterns("*.ipynb", "layers.py", "__pycache__", ".ipynb_checkpoints")


def _template_db(course, folder):
    """A copy of the course gradebook with the assignment and no students."""
    from nbgrader.api import Gradebook

    template = Path(folder) / "template.db"
    shutil.copy(paths(course)["gradebook"], template)
    with Gradebook(f"sqlite:///{template}", COURSE_ID) as gb:
        for student in list(gb.students):
            gb.remove_student(student.id)
    return template


def _import_into(course, student, folder, scratch_autograded):
    """Copy a graded submission into the course and record its grades in the course gradebook."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import SaveAutoGrades

    layout = paths(course)
    for target, origin in ((layout["submitted"], folder), (layout["autograded"], scratch_autograded)):
        destination = target / student / ASSIGNMENT_ID
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(origin, destination, ignore=_IGNORE)
    with Gradebook(db_url(course), COURSE_ID) as gb:
        gb.update_or_create_student(student)
        gb.update_or_create_submission(ASSIGNMENT_ID, student)
    for path in sorted((layout["autograded"] / student / ASSIGNMENT_ID).glob("*.ipynb")):
        resources = {"nbgrader": {"notebook": path.stem, "assignment": ASSIGNMENT_ID,
                                  "student": student, "db_url": db_url(course)}}
        SaveAutoGrades().preprocess(nbformat.read(path, as_version=4), resources)


def _max_auto_score(course):
    from nbgrader.api import Gradebook

    with Gradebook(db_url(course), COURSE_ID) as gb:
        assignment = gb.find_assignment(ASSIGNMENT_ID)
        return float(sum(nb.max_code_score for nb in assignment.notebooks))


def grade(paths_given, course=DEFAULT_COURSE, timeout=1800):
    """Grade every submission found in paths_given; return the JSON document (a dict)."""
    course = Path(course)
    found = discover(paths_given)
    if not is_course(course):
        raise FileNotFoundError(f"{course} is not a course built by `normgrade release --course {course}`")
    with tempfile.TemporaryDirectory(prefix="normgrade-template-") as folder:
        template = _template_db(course, folder)
        submissions = [grade_one(course, s, f, g, timeout, template) for s, f, g in found]
    return {"submissions": submissions}


def format_table(document):
    """A readable table of the results, with the messages of lost points."""
    lines = []
    rows = document["submissions"]
    width = max([len(r["path"]) for r in rows] + [10])
    lines.append(f"{'submission':<{width}}  {'score':>13}  {'seconds':>7}")
    for r in rows:
        lines.append(f"{r['path']:<{width}}  {r['score']:>6g} / {r['max_score']:<4g}  {r.get('seconds', 0):>7.1f}")
    for r in rows:
        lost = [t for t in r["tests"] if t["score"] < t["max_score"]]
        if r.get("error") or lost:
            lines.append("")
            lines.append(f"{r['path']} ({r['student']}):")
        if r.get("error"):
            lines.append(f"  grading failed: {r['error'].splitlines()[0]}")
        for t in lost:
            message = " ".join(t["message"].split())  # the report, unwrapped
            first = message.split(" - lost ")[1] if " - lost " in message else message
            lines.append(f"  {t['name']}: {t['score']:g} / {t['max_score']:g}  {'lost ' if ' - lost ' in message else ''}"
                         f"{first[:170]}")
    return "\n".join(lines)


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "grade", help="autograde submissions with nbgrader", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a submission folder or a class folder of them")
    parser.add_argument("--course", type=Path, default=DEFAULT_COURSE,
                        help=f"the course directory (default ./{DEFAULT_COURSE}; built by `normgrade release` when missing)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per submission (default 1800)")
    parser.set_defaults(run=run)


def run(args):
    discover(args.paths)  # bad paths fail before a course is built
    if not is_course(args.course):
        from .release import build_course

        print(f"no course at {args.course}: building it with `normgrade release`", file=sys.stderr, flush=True)
        build_course(args.course, prove=False)
    document = grade(args.paths, args.course, args.timeout)
    print(json.dumps(document, indent=2) if args.json else format_table(document))
    return 0
