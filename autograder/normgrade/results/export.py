"""
`normgrade export --course DIR --csv FILE [--canvas-roster EXPORT.csv --canvas-csv IMPORT.csv]`: grades out.

The per-question CSV: one row per student, one column per question; with a
Canvas roster (its gradebook export), also the file Canvas's gradebook
imports: the roster's identifying columns and one column for the assignment
(normgrade.platforms.canvas).

nbgrader's own `export` gives one score per assignment; this reads the
gradebook cell by cell: every graded cell (auto-graded tests and manually
graded answers, named notebook/grade_id; an answer not graded yet is left
empty, not 0), then the auto-graded total, the
manual total (empty while any answer is ungraded), the late penalty
(recomputed first on the scores as they are, manual grades included:
normgrade.grade.late.refresh_penalties), the
total after it (as nbgrader's own export: never below 0), the submission
time (UTC; empty when unknown) and the seconds past the due date.
"""
import argparse
import csv
import sys
from pathlib import Path

from normgrade.platforms import canvas
from normgrade.grade import late
from normgrade.course import ASSIGNMENT_ID, COURSE_ID, gradebook_url, load_config
from normgrade.results.feedback import ungraded_answers, waiting_text


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
        for student in sorted(gb.students, key=lambda student: student.id):  # rows in the order of the ids
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
                       late_seconds=float(submission.total_seconds_late) if known else "")
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


def write_csv(course, path, graded=None):
    """
    Write the per-question grades (`graded`, per_question(course) when not
    given) to `path`, every cell quoted, text neutralized (neutral_cell);
    return the row count.
    """
    columns, rows = graded or per_question(course)
    write_rows(path, [columns] + [[row[c] for c in columns] for row in rows])
    return len(rows)


def write_rows(path, rows):
    """Write rows (lists) as CSV: UTF-8, every cell quoted (RFC 4180, CRLF), text neutralized (neutral_cell)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
        writer.writerows([[neutral_cell(cell) for cell in row] for row in rows])


def write_canvas(roster, path, assignment, graded):
    """
    Write Canvas's gradebook import file for the per-question grades `graded`
    (per_question), one score a student (after the late penalty); return
    (students written with a score, graded ids not in the roster).
    """
    _, rows = graded
    grades = {row["student"]: row["score"] for row in rows}
    max_score = max((row["max_score"] for row in rows), default="")
    lines, unmatched = canvas.import_rows(roster, grades, assignment, max_score)
    write_rows(path, lines)
    return sum(1 for student in roster.students if student[roster.id_column] in grades), unmatched


def add_parser(subparsers):
    parser = subparsers.add_parser("export", help="per-question grades as CSV, and Canvas's import file",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path("course"))
    parser.add_argument("--csv", type=Path, required=True, help="the per-question CSV file to write")
    canvas_options = parser.add_argument_group("Canvas", "the gradebook file Canvas imports (normgrade.platforms.canvas)")
    canvas_options.add_argument("--canvas-roster", type=Path, metavar="EXPORT.csv",
                                help="Canvas's gradebook export (Grades, Actions, Export): the roster")
    canvas_options.add_argument("--canvas-csv", type=Path, metavar="IMPORT.csv",
                                help="the file to write for Canvas's Grades, Actions, Import")
    canvas_options.add_argument("--canvas-assignment", metavar="COLUMN",
                                help="the assignment's column, as in the export ('Normalization (12345)', or "
                                     "'Normalization'); default: the export's one column named like normalization")
    canvas_options.add_argument("--roster-id-column", default="SIS Login ID", metavar="COLUMN",
                                help="the roster column holding the course's student ids (default: SIS Login ID)")
    parser.set_defaults(run=run)


def run(args):
    if bool(args.canvas_roster) != bool(args.canvas_csv):
        raise ValueError("--canvas-roster and --canvas-csv go together: the roster to read, the import file to write")
    roster = canvas.read_roster(args.canvas_roster, args.roster_id_column) if args.canvas_roster else None
    column = canvas.assignment_column(roster, args.canvas_assignment) if roster else None  # before anything is written
    graded = per_question(args.course)
    count = write_csv(args.course, args.csv, graded)
    print(f"wrote {args.csv}: {count} students")
    waiting = ungraded_answers(args.course)
    if waiting:
        print(f"warning: {waiting_text(waiting)}: their manual_score is empty and their score counts those answers "
              "as 0" + (", in the Canvas file too" if roster else "") + ". Grade them in formgrader, then run "
              "`normgrade export` again", file=sys.stderr)
    if roster:
        written, unmatched = write_canvas(roster, args.canvas_csv, column, graded)
        print(f"wrote {args.canvas_csv}: {written} of the roster's {len(roster.students)} students have a score, "
              f"in the column {column!r}")
        for student in unmatched:
            print(f"not in the Canvas roster, not written: {student} (no {roster.id_column} {student!r})",
                  file=sys.stderr)
        for line in roster.without_id:
            print(f"roster {line}: no {roster.id_column}, left out", file=sys.stderr)
    return 0
