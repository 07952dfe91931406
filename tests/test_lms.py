"""
Grades out to an LMS (normgrade.platforms.canvas, normgrade export --canvas-roster): Canvas's gradebook import file.

The roster is a gradebook export as Canvas writes it (a byte-order mark, the
"Points Possible" row, the test student without SIS ids, assignment columns
after the identifying ones); the import file is read back with the csv
module and checked cell by cell, and every text cell a spreadsheet could run
is neutralized.
"""
import csv
import io

import pytest

from normgrade.platforms import canvas
from normgrade.results.export import write_rows

EXPORT = (
    "\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Normalization (4711),Quiz 1 (4712),Current Score\r\n"
    "    Points Possible,,,,,43.00,10.00,(read only)\r\n"
    '"Doe, Jane",101,S001,jdoe,CS231n 2026,,7.00,70.00\r\n'
    '"=HYPERLINK(""http://evil"",""x"")",102,S002,mallory,CS231n 2026,,,\r\n'
    '"Smith, Bo",103,S003,bsmith,CS231n 2026,,,\r\n'
    '"Student, Test",104,,,CS231n 2026,,,\r\n'
)


def _roster(tmp_path, text=EXPORT, **kwargs):
    path = tmp_path / "export.csv"
    path.write_bytes(text.encode("utf-8"))
    return canvas.read_roster(path, **kwargs)


def test_a_canvas_export_is_read_as_the_roster(tmp_path):
    roster = _roster(tmp_path)
    assert roster.columns == ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
    assert [s["SIS Login ID"] for s in roster.students] == ["jdoe", "mallory", "bsmith"]
    assert roster.by_course_id()["jdoe"]["ID"] == "101"
    assert roster.without_id == ("line 6 (Student, Test)",)
    by_user_id = _roster(tmp_path, id_column="SIS User ID")
    assert list(by_user_id.by_course_id()) == ["S001", "S002", "S003"]


@pytest.mark.parametrize("text, says", [
    ("Name,Score\r\nJane,3\r\n", "not a Canvas gradebook export: no column Student, ID, SIS Login ID, Section"),
    (EXPORT + '"Doe, John",105,S005,jdoe,CS231n 2026,,,\r\n', "SIS Login ID 'jdoe' is also on line 3"),
    ("", "not a Canvas gradebook export"),
])
def test_a_roster_that_cannot_be_used_is_refused_with_what_is_wrong(tmp_path, text, says):
    with pytest.raises(canvas.RosterError, match=says.replace("(", r"\(")):
        _roster(tmp_path, text)


def test_the_assignment_column_is_chosen_from_the_export_or_refused_naming_its_columns(tmp_path):
    roster = _roster(tmp_path)
    assert roster.assignments == ("Normalization (4711)", "Quiz 1 (4712)"), "Current Score is Canvas's own"
    assert canvas.assignment_column(roster) == "Normalization (4711)"  # the one named like the assignment
    assert canvas.assignment_column(roster, "Normalization (4711)") == "Normalization (4711)"
    assert canvas.assignment_column(roster, "normalization") == "Normalization (4711)"  # without Canvas's id
    with pytest.raises(canvas.ColumnError, match=r"--canvas-assignment 'Norm' matches no assignment columns .*"
                                                 r"'Normalization \(4711\)', 'Quiz 1 \(4712\)'"):
        canvas.assignment_column(roster, "Norm")
    two = _roster(tmp_path, EXPORT.replace("Quiz 1 (4712)", "Normalization retake (4712)"))
    with pytest.raises(canvas.ColumnError, match="no --canvas-assignment, and 2 assignment columns"):
        canvas.assignment_column(two)


def test_a_roster_not_in_utf8_is_refused(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(EXPORT.lstrip("\ufeff").replace("Doe", "D\u00f6e").encode("latin-1"))
    with pytest.raises(canvas.RosterError, match="not UTF-8 text"):
        canvas.read_roster(path)


def test_the_import_file_has_the_identity_columns_one_assignment_and_no_formula(tmp_path):
    roster = _roster(tmp_path)
    grades = {"jdoe": 28.8, "mallory": 36.0, "ghost": 12.0}
    rows, unmatched = canvas.import_rows(roster, grades, "Normalization (4711)", 43.0)
    assert unmatched == ["ghost"]
    path = tmp_path / "import.csv"
    write_rows(path, rows)
    raw = path.read_bytes().decode("utf-8")
    back = list(csv.reader(io.StringIO(raw, newline="")))
    assert back[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Normalization (4711)"]
    assert back[1] == ["Points Possible", "", "", "", "", "43.0"]
    assert back[2] == ["Doe, Jane", "101", "S001", "jdoe", "CS231n 2026", "28.8"]
    assert back[3][0] == "'=HYPERLINK(\"http://evil\",\"x\")" and back[3][5] == "36.0", "the name runs nothing"
    assert back[4] == ["Smith, Bo", "103", "S003", "bsmith", "CS231n 2026", ""], "no grade: Canvas keeps its own"
    assert len(back) == 5, "the test student and the unmatched id are not written"
    for line in raw.split("\r\n")[:-1]:  # RFC 4180: CRLF, every field quoted
        assert line.startswith('"') and line.endswith('"')
    for row in back:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
