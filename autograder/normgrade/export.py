"""
`normgrade export --course DIR --csv FILE`: one row per student, one column per question.

nbgrader's own `export` gives one score per assignment; this reads the
gradebook cell by cell: every graded cell (auto-graded tests and manually
graded answers, named notebook/grade_id; an answer not graded yet is left
empty, not 0), then the auto-graded total, the
manual total (empty while any answer is ungraded), the late penalty
(recomputed first on the scores as they are, manual grades included:
normgrade.late.refresh_penalties), the
total after it (as nbgrader's own export: never below 0), the submission
time (UTC; empty when unknown) and the seconds past the due date.
"""
import argparse
import csv
from pathlib import Path

from . import late
from .course import ASSIGNMENT_ID, COURSE_ID, gradebook_url, load_config


def per_question(course):
    """(columns, rows): rows are dicts keyed by the columns, one per student with a submission."""
    from nbgrader.api import Gradebook, MissingEntry

    columns, rows = ["student"], []
    url = gradebook_url(course)
    late.refresh_penalties(url, late.policy(load_config(course)))  # on the scores as they are now
    with Gradebook(url, COURSE_ID) as gb:
        assignment = gb.find_assignment(ASSIGNMENT_ID)
        cells = [(nb.name, cell.name, cell.cell_type) for nb in assignment.notebooks for cell in nb.grade_cells]
        columns += [f"{nb}/{name}" for nb, name, _ in cells] + [
            "auto_score", "manual_score", "late_penalty", "score", "max_score", "submitted_at", "late_seconds"]
        for student in gb.students:
            try:
                submission = gb.find_submission(ASSIGNMENT_ID, student.id)
            except MissingEntry:
                continue
            row = {"student": student.id}
            auto, manual, complete = 0.0, 0.0, True
            for nb, name, cell_type in cells:
                grade = gb.find_grade(name, nb, ASSIGNMENT_ID, student.id)
                waiting = grade.needs_manual_grade and grade.manual_score is None  # not graded yet: left empty
                row[f"{nb}/{name}"] = "" if grade.score is None or waiting else grade.score
                if cell_type == "code":
                    auto += grade.score or 0.0
                elif grade.manual_score is None:
                    complete = False
                else:
                    manual += grade.manual_score
            penalty = submission.late_submission_penalty or 0.0
            known = submission.timestamp is not None
            row.update(auto_score=auto, manual_score=manual if complete else "", late_penalty=penalty,
                       score=max(0.0, submission.score - penalty), max_score=submission.max_score,
                       submitted_at=submission.timestamp.isoformat() + "Z" if known else "",
                       late_seconds=submission.total_seconds_late if known else "")
            rows.append(row)
    return columns, rows


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")  # OWASP's list, and DDE's "|"; "%" (LibreOffice)


def neutral_cell(value):
    """
    A CSV cell a spreadsheet shows as text, never runs: a string that
    starts like a formula (OWASP's CSV-injection guidance: =, +, -, @, tab,
    carriage return; also a line break, | and %) gets a leading ' . Numbers
    stay numbers. Quoting (RFC 4180) is the writer's: every cell is quoted.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(course, path):
    """Write the per-question grades to `path` (every cell quoted, text neutralized: neutral_cell); the row count."""
    columns, rows = per_question(course)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerow([neutral_cell(c) for c in columns])
        writer.writerows([[neutral_cell(row[c]) for c in columns] for row in rows])
    return len(rows)


def add_parser(subparsers):
    parser = subparsers.add_parser("export", help="per-question grades as CSV", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path("course"))
    parser.add_argument("--csv", type=Path, required=True, help="the CSV file to write")
    parser.set_defaults(run=run)


def run(args):
    count = write_csv(args.course, args.csv)
    print(f"wrote {args.csv}: {count} students")
    return 0
