"""
Canvas, the LMS: its gradebook export as the roster, and the gradebook file it imports.

The roster is the CSV that Canvas's Grades page writes (Actions, Export):
one row per student with the identifying columns `Student`, `ID` (Canvas's
user id), `SIS User ID`, `SIS Login ID`, `Section` (and, where the
institution uses it, `Integration ID`), then the assignments; a second row
whose `Student` is "Points Possible" is not a student. One of its columns
(by default `SIS Login ID`) holds the course's student ids, the names of the
submission folders nbgrader and normgrade grade.

The import file is what Canvas's Grades page takes back (Actions, Import):
the roster's identifying columns, then one column for the assignment, named
as Canvas names it ("Normalization (12345)", copied from the export, updates
that assignment; a new name makes a new one), holding each student's score
after the late penalty. Students of the roster without a graded submission
get an empty cell (Canvas leaves their grade as it is); students graded but
not in the roster are not written and are returned, so the command names
them. normgrade.results.export writes it, every cell quoted and neutralized.
"""
import csv
import re
from dataclasses import dataclass
from pathlib import Path

IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Integration ID", "Section")
REQUIRED = ("Student", "ID", "SIS Login ID", "Section")
POINTS_POSSIBLE = "Points Possible"
ASSIGNMENT_COLUMN = re.compile(r"(.+) \((\d+)\)")  # how the export names an assignment: "Normalization (4711)"
MAX_ROSTER_BYTES = 16 << 20


class RosterError(ValueError):
    """A roster file that cannot be used, with every problem found."""


@dataclass(frozen=True)
class Roster:
    columns: tuple  # the identifying columns the export has, in its order
    students: tuple  # one dict per student: identifying column -> value
    id_column: str  # the column that holds the course's student ids
    without_id: tuple = ()  # "line N (name)" of the rows with no id in id_column (left out)
    assignments: tuple = ()  # the export's assignment columns, as Canvas names them ("Normalization (4711)")

    def by_course_id(self):
        """{course student id: the student's identifying row}."""
        return {row[self.id_column]: row for row in self.students}

    def by_canvas_id(self):
        """{Canvas user id (the ID column): the student's identifying row}."""
        return {row["ID"]: row for row in self.students}


def read_roster(path, id_column="SIS Login ID"):
    """The Roster in Canvas's gradebook export at `path`; RosterError lists every problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise RosterError(f"{path}: cannot read the roster ({err.strerror})") from None
    if len(data) > MAX_ROSTER_BYTES:
        raise RosterError(f"{path}: larger than {MAX_ROSTER_BYTES >> 20} MiB; a Canvas gradebook export is far "
                          "smaller")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RosterError(f"{path}: not UTF-8 text; export the gradebook from Canvas again (it writes UTF-8)") from None
    rows = list(csv.reader(text.splitlines()))
    header = [name.strip() for name in rows[0]] if rows else []
    missing = [name for name in REQUIRED + (id_column,) if name not in header]
    if missing:
        raise RosterError(f"{path}: not a Canvas gradebook export: no column {', '.join(dict.fromkeys(missing))} "
                          f"(it needs {', '.join(REQUIRED)} and the id column {id_column!r}; found: "
                          f"{', '.join(header[:8]) or 'nothing'})")
    columns = tuple(name for name in IDENTITY if name in header)
    where = {name: header.index(name) for name in columns}
    students, without_id, problems, seen = [], [], [], {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        values = {name: (row[i].strip() if i < len(row) else "") for name, i in where.items()}
        if values["Student"] == POINTS_POSSIBLE:
            continue
        student = values[id_column]
        if not student:  # Canvas's own "Student, Test" has no SIS ids
            without_id.append(f"line {number} ({values['Student'] or 'no name'})")
        elif student in seen:
            problems.append(f"line {number}: {id_column} {student!r} is also on line {seen[student]}")
        else:
            seen[student] = number
            students.append(values)
    if problems:
        raise RosterError(f"{path}: " + "; ".join(problems[:20]) + (" ..." if len(problems) > 20 else "")
                          + ": one student id, one student")
    assignments = tuple(name for name in header if ASSIGNMENT_COLUMN.fullmatch(name))
    return Roster(columns, tuple(students), id_column, tuple(without_id), assignments)


class ColumnError(ValueError):
    """The assignment's column cannot be told from the roster: the message lists the export's."""


def assignment_column(roster, wanted=None):
    """
    The export's column to import the scores into: `wanted` as the export
    spells it, or its name without Canvas's "(id)"; without `wanted`, the one
    assignment column whose name holds "normalization". Anything else is
    refused (Canvas would make a new assignment of a name it does not know),
    naming the export's assignment columns.
    """
    def plain(name):
        return ASSIGNMENT_COLUMN.fullmatch(name).group(1).strip().lower()

    if wanted is not None:
        found = [name for name in roster.assignments if name == wanted] or \
                [name for name in roster.assignments if plain(name) == wanted.strip().lower()]
    else:
        found = [name for name in roster.assignments if "normalization" in plain(name)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(repr(name) for name in roster.assignments) or "none"
    what = f"--canvas-assignment {wanted!r} matches" if wanted is not None else 'no --canvas-assignment, and'
    raise ColumnError(f"{what} {len(found) or 'no'} assignment column{'' if len(found) == 1 else 's'} of the export "
                      f"{'(' + ', '.join(map(repr, found)) + ') ' if found else ''}(Canvas would make a new "
                      f"assignment of a name it does not know): pass --canvas-assignment with one of the export's "
                      f"assignment columns: {listed}")


def import_rows(roster, grades, assignment, max_score):
    """
    (rows, unmatched) of the import file: rows are lists (the header, the
    points possible, one per roster student); grades is {course student id:
    score after the late penalty}; unmatched lists the graded ids the
    roster lacks.
    """
    header = list(roster.columns) + [assignment]
    points = [POINTS_POSSIBLE if name == "Student" else "" for name in roster.columns] + [max_score]
    rows = [header, points]
    for student in roster.students:
        score = grades.get(student[roster.id_column], "")
        rows.append([student[name] for name in roster.columns] + [score])
    known = roster.by_course_id()
    return rows, sorted(student for student in grades if student not in known)
