"""
Deadlines: the course's late policy (normgrade.grade.late), the submission time as
staged from nbgrader's timestamp.txt, and the penalty everywhere the score
shows: the run's JSON and table, status, the report, the export, feedback.
"""
import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from normgrade.grade import late
from normgrade.build.release import check_due

# one pytest-xdist worker runs them all: module-scoped term
pytestmark = pytest.mark.xdist_group("deadlines")

NOW = datetime.datetime(2026, 12, 4, 17, 0, 0)
DAY = 86400


def _policy(**settings):
    config = Config()
    for name, value in settings.items():
        setattr(config.LatePolicy, name, value)
    return late.policy(config)


def test_no_policy_no_penalty():
    assert _policy().late_submission_penalty("alice", 36.0, 30 * DAY) == 0.0


def test_percent_per_day_or_part_day_with_a_cap_and_zero_after():
    policy = _policy(percent_per_day=10, max_percent=25, zero_after_days=7)
    assert policy.late_submission_penalty("a", 40.0, 0) == 0.0
    assert policy.late_submission_penalty("a", 40.0, 1) == 4.0  # one second late is a part of a day
    assert policy.late_submission_penalty("a", 40.0, DAY) == 4.0
    assert policy.late_submission_penalty("a", 40.0, DAY + 1) == 8.0
    assert policy.late_submission_penalty("a", 40.0, 5 * DAY) == 10.0  # the cap: 25 %
    assert policy.late_submission_penalty("a", 40.0, 7 * DAY) == 10.0
    assert policy.late_submission_penalty("a", 40.0, 7 * DAY + 1) == 40.0  # later than 7 days: nothing


@pytest.mark.parametrize("settings, says", [
    ({"percent_per_day": 150}, "percent from 0 to 100"),
    ({"max_percent": -1}, "percent from 0 to 100"),
    ({"zero_after_days": -2}, "zero_after_days must be 0"),
    ({"extensions": {"alice": "two days"}}, "maps a student id to hours"),
    ({"extensions": {"alice": -5}}, "maps a student id to hours"),
    ({"percent_per_dy": 10}, "sets LatePolicy.percent_per_dy, which is not a setting"),
])
def test_a_wrong_policy_is_refused_with_what_is_wrong(settings, says):
    with pytest.raises(ValueError, match=says):
        _policy(**settings)


def test_extensions_are_hours_by_student():
    policy = _policy(extensions={"alice": 48})
    assert policy.extension("alice") == datetime.timedelta(days=2) and policy.extension("bob") is None


@pytest.mark.parametrize("data, believed, note", [
    (b"2026-12-04 16:59:30.123456 UTC", datetime.datetime(2026, 12, 4, 16, 59, 30, 123456), None),
    (b"2026-12-04T18:59:30+02:00\n", datetime.datetime(2026, 12, 4, 16, 59, 30), None),
    (b"2026-12-04 17:04:00 UTC", datetime.datetime(2026, 12, 4, 17, 4), None),  # within the clock skew
    (None, None, "no timestamp.txt"),
    (b"yesterday-ish", None, "unreadable"),
    (b"\xff\xfe", None, "not UTF-8"),
    (b"2027-01-01 00:00:00 UTC", None, "after this grading"),
])
def test_the_submission_time_is_believed_only_when_it_can_be(data, believed, note):
    when, why = late.submission_time(data, NOW, due=NOW)
    assert when == believed
    assert (why is None) if note is None else (note in why and "no late penalty was applied" in why)


def test_a_missing_time_is_worth_a_note_only_with_a_due_date():
    assert late.submission_time(None, NOW, due=None) == (None, None)


def test_the_deadline_key_changes_with_what_decides_lateness():
    policy = _policy(percent_per_day=10, extensions={"alice": 24})
    keys = {late.deadline_key(NOW, policy, "alice"), late.deadline_key(NOW, policy, "bob"),
            late.deadline_key(NOW + datetime.timedelta(days=1), policy, "bob"),
            late.deadline_key(NOW, _policy(percent_per_day=5), "bob")}
    assert len(keys) == 4


def test_a_due_date_in_the_past_or_unreadable_is_refused():
    assert check_due("2026-12-04 18:00 UTC", now=NOW) == datetime.datetime(2026, 12, 4, 18)
    with pytest.raises(ValueError, match="is in the past"):
        check_due("2026-12-04 16:00 UTC", now=NOW)
    with pytest.raises(ValueError, match="is not a time"):
        check_due("next friday at five", now=NOW)
    assert check_due("2026-12-04 17:00 America/New_York", now=NOW) == datetime.datetime(2026, 12, 4, 22)
    with pytest.raises(ValueError, match="names a time zone nobody knows"):
        check_due("2026-12-05 17:00 Mars/Olympus", now=NOW)
    with pytest.raises(ValueError, match="names a time zone nobody knows"):  # dateutil took CET for UTC, warning only
        check_due("December 5 2026 5pm CET", now=NOW)
    with pytest.raises(ValueError, match="names no time zone: nothing was built. Add one, e.g. '2026-12-05 17:00 UTC'"):
        check_due("2026-12-05 17:00", now=NOW)
    assert check_due("2026-12-05T17:00Z", now=NOW) == datetime.datetime(2026, 12, 5, 17)


# ---- through grading: a class with a due date, a policy, an extension and bad times ----

HOUR = datetime.timedelta(hours=1)


@pytest.fixture(scope="module")
def term(sandbox, tmp_path_factory):
    """A course due in a day, rebuilt once without --due (which keeps it), then moved 30 h into the past."""
    from normgrade.course import db_url, paths
    from normgrade.build.release import build_course

    course = tmp_path_factory.mktemp("term") / "course"
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    build_course(course, prove=False, due=f"{now + 24 * HOUR:%Y-%m-%d %H:%M:%S} UTC")
    paths(course)["own_config"].write_text(paths(course)["own_config"].read_text().replace(
        "percent_per_day = 0", "percent_per_day = 10").replace("extensions = {}", 'extensions = {"bob": 48, "bobby": 5}'))
    build_course(course, prove=False)
    assert abs(late.due_date(db_url(course)) - (now + 24 * HOUR)) < datetime.timedelta(seconds=1), "a rebuild keeps it"
    assert "percent_per_day = 10" in paths(course)["own_config"].read_text(), "a rebuild keeps course_config.py"
    late.set_due_date(db_url(course), now - 30 * HOUR)  # as formgrader's Manage Assignments page would
    return course, now


def _class(course, root, now):
    from normgrade.course import paths
    from normgrade.score.notebooks import answer_keys, source_notebooks
    from normgrade.build.samples import make_submission, reference_layers

    keys = answer_keys(source_notebooks(paths(course)["source"]))
    stamps = {"alice": f"{now - HOUR:%Y-%m-%d %H:%M:%S.%f} UTC", "bob": f"{now - HOUR:%Y-%m-%d %H:%M:%S} UTC",
              "carol": None, "dave": "last tuesday-ish", "erin": f"{now + 72 * HOUR:%Y-%m-%d %H:%M:%S} UTC",
              "frank": "fifo"}
    for student, stamp in stamps.items():
        folder = make_submission(paths(course)["release"], root / student, reference_layers(), keys)
        if stamp == "fifo":
            os.mkfifo(folder / "timestamp.txt")
        elif stamp:
            (folder / "timestamp.txt").write_text(stamp)
    return root


@pytest.mark.slow
def test_lateness_and_penalty_show_wherever_the_score_does(term, tmp_path):
    from normgrade.grade.table import format_table
    from normgrade.grade.class_run import grade
    from normgrade.course import paths
    from normgrade.results.export import write_csv
    from normgrade.results.feedback import generate_feedback
    from normgrade.results.report import write_report
    from normgrade.results.status import class_status, format_status
    from test_exchange import tree_digest

    course, now = term
    klass = _class(course, tmp_path / "class", now)
    before = tree_digest(klass)
    document = grade([klass], course, workers=2)
    assert tree_digest(klass) == before, "grading changed a submission"
    by = {r["student"]: r for r in document["submissions"]}
    full = by["alice"]["max_score"]
    # alice: 29 h late is two days or part days, 20 % of her 36 points
    assert by["alice"]["late_seconds"] == pytest.approx(29 * 3600, abs=1) and by["alice"]["penalty"] == 0.2 * full
    assert by["alice"]["raw_score"] == full and by["alice"]["score"] == pytest.approx(0.8 * full)
    assert by["bob"]["late_seconds"] == 0 and by["bob"]["score"] == full, "bob's 48 h extension"
    for student, says in (("carol", "no timestamp.txt"), ("dave", "timestamp.txt is unreadable"),
                          ("erin", "after this grading"),
                          ("frank", "timestamp.txt is not a regular file (a link, a folder or a pipe), not read")):
        assert by[student]["late_seconds"] is None and by[student]["score"] == full, student
        assert any(says in note for note in by[student]["notes"]), (student, by[student]["notes"])
    assert any("'bobby' an extension, but no submission has that student id" in n for n in document["notes"])

    table = format_table(document)
    assert "1 d 5 h late, -7.2 points" in table and table.count("time unknown") == 4 and "'bobby'" in table
    status = class_status(course)
    assert status["late"] == [{"student": "alice", "late_seconds": by["alice"]["late_seconds"], "penalty": 7.2}]
    assert status["time_unknown"] == ["carol", "dave", "erin", "frank"]
    assert "late: alice: 1 d 5 h, -7.2 points" in format_status(status)
    row = next(s for s in status["students"] if s["student"] == "alice")
    assert row["score"] == pytest.approx(28.8) and row["penalty"] == 7.2 and len(status["students"]) == 6
    assert re.search(r"^alice +28\.8 / 36 +graded  \(late penalty 7\.2\)$", format_status(status), re.M)
    report = write_report(course, tmp_path / "report.html")
    alice = next(s for s in report["students"] if s["student"] == "alice")
    assert alice["score"] == pytest.approx(28.8) and alice["penalty"] == 7.2 and alice["late"].startswith("1 d 5 h")
    write_csv(course, tmp_path / "grades.csv")
    import csv
    rows = {row["student"]: row for row in csv.DictReader((tmp_path / "grades.csv").open())}
    assert float(rows["alice"]["late_penalty"]) == 7.2 and float(rows["alice"]["score"]) == pytest.approx(28.8)
    assert rows["carol"]["submitted_at"] == "" and rows["bob"]["submitted_at"].startswith(f"{now - HOUR:%Y-%m-%d}")
    # Grades out to Canvas: its gradebook export is the roster, the import file has the score after the penalty.
    roster = tmp_path / "canvas_export.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section,Normalization (4711)\n"
                      "    Points Possible,,,,,43\n" + "".join(
                          f'"{name}, A",{100 + n},S{n},{name},S1,\n' for n, name in enumerate(("alice", "bob", "carol"))))
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "export", "--course", str(course), "--csv",
                           str(tmp_path / "g.csv"), "--canvas-roster", str(roster), "--canvas-csv",
                           str(tmp_path / "canvas_import.csv")],  # the column: the export's one of that name
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "3 of the roster's 3 students have a score" in done.stdout
    assert "in the column 'Normalization (4711)'" in done.stdout
    assert [line.split(":")[1].split("(")[0].strip() for line in done.stderr.splitlines()
            if line.startswith("not in the Canvas roster")] == ["dave", "erin", "frank"]
    imported = list(csv.DictReader((tmp_path / "canvas_import.csv").open(newline="")))
    assert imported[0]["Student"] == "Points Possible"
    assert float(imported[0]["Normalization (4711)"]) == float(rows["bob"]["max_score"])  # written answers too
    assert {row["SIS Login ID"]: float(row["Normalization (4711)"]) for row in imported[1:]} == pytest.approx(
        {"alice": 28.8, "bob": full, "carol": full})
    # A manual grade after autograde: nbgrader would keep the penalty it took of 36 points; export and feedback
    # recompute it on 36 + 2.
    from nbgrader.api import Gradebook

    from normgrade.course import ASSIGNMENT_ID, COURSE_ID, db_url
    with Gradebook(db_url(course), COURSE_ID) as gb:
        gb.find_grade("inline_groupnorm_why", "SpatialNormalization", ASSIGNMENT_ID, "alice").manual_score = 2.0
        gb.db.commit()
    write_csv(course, tmp_path / "grades.csv")
    rows = {row["student"]: row for row in csv.DictReader((tmp_path / "grades.csv").open())}
    assert float(rows["alice"]["late_penalty"]) == pytest.approx(0.2 * 38)
    assert float(rows["alice"]["score"]) == pytest.approx(0.8 * 38)
    pages = generate_feedback(course, "alice")["alice"]
    shown = re.findall(r"Late submission penalty \(Score: -([0-9.]+)\)", " ".join(p.read_text() for p in pages))
    assert len(shown) == 2 and sum(map(float, shown)) == pytest.approx(7.6), "each notebook's page shows its part"

    # An extension after grading: the next run regrades alice alone, and her penalty is gone (nbgrader #723).
    deadlines = paths(course)["own_config"]
    deadlines.write_text(deadlines.read_text().replace('{"bob": 48, "bobby": 5}', '{"bob": 48, "alice": 30}'))
    again = {r["student"]: r for r in grade([klass], course, workers=2)["submissions"]}
    assert again["alice"]["status"] == "graded" and again["alice"]["penalty"] == 0 and again["alice"]["score"] == full
    assert {r["status"] for s, r in again.items() if s != "alice"} == {"unchanged"}
    pages = generate_feedback(course, "alice")["alice"]
    assert "Late submission penalty" not in " ".join(p.read_text() for p in pages)


@pytest.mark.slow
def test_a_wrong_course_config_stops_the_run_before_anything_is_graded(term, tmp_path):
    import shutil

    from normgrade.course import paths

    course, now = term
    copy = tmp_path / "course"
    shutil.copytree(course, copy, ignore=shutil.ignore_patterns("staged", "autograded", "feedback"))
    deadlines = paths(copy)["own_config"]
    deadlines.write_text(deadlines.read_text() + "\nc.LatePolicy.percent_per_dya = 5\n")
    klass = _class(copy, tmp_path / "class", now)
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(klass), "--course", str(copy)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "course_config.py sets LatePolicy.percent_per_dya, which is not a setting" in done.stderr
    assert not (paths(copy)["staged"] / "alice").exists(), "nothing was staged"


@pytest.mark.slow
def test_a_written_answer_not_graded_yet_says_so_in_the_feedback_and_is_empty_in_the_csv(term, tmp_path):
    import csv

    import nbformat

    from normgrade.grade.class_run import grade
    from normgrade.course import paths
    from normgrade.results.export import write_csv
    from normgrade.results.feedback import NOT_GRADED_YET, ungraded_answers
    from normgrade.score.notebooks import answer_keys, source_notebooks
    from normgrade.build.samples import make_submission, reference_layers

    course, now = term
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    gina = make_submission(paths(course)["release"], tmp_path / "gina", reference_layers(), keys)
    notebook = gina / "SpatialNormalization.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "inline_groupnorm_why")
    answer.source = "Group norm's statistics are per example, so the batch size does not matter."
    nbformat.write(nb, notebook)
    grade([gina], course, workers=1)
    assert ungraded_answers(course).get("gina") == 1
    write_csv(course, tmp_path / "grades.csv")
    row = next(r for r in csv.DictReader((tmp_path / "grades.csv").open()) if r["student"] == "gina")
    assert row["SpatialNormalization/inline_groupnorm_why"] == "" and row["manual_score"] == ""
    assert row["BatchNormalization/inline_weight_scale"] != "", "an unanswered written answer is 0, not waiting"
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "feedback", "--course", str(course), "--student",
                           "gina"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "1 written answer of 1 student is not graded yet (gina)" in done.stderr
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "export", "--course", str(course), "--csv",
                           str(tmp_path / "export.csv")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "1 written answer of 1 student is not graded yet (gina)" in done.stderr, \
        "export warns as feedback does"
    page = (paths(course)["feedback"] / "gina" / "normalization" / "SpatialNormalization.html").read_text()
    assert NOT_GRADED_YET.split("**")[-1].strip()[:60] in page and "Not graded yet." in page
    other = (paths(course)["feedback"] / "gina" / "normalization" / "BatchNormalization.html").read_text()
    assert "Not graded yet." not in other


@pytest.mark.slow
def test_one_view_of_who_is_in_the_course(term, tmp_path):
    """A student removed with nbgrader's own command is counted nowhere; a deleted gradebook is said, not remade."""
    import shutil

    from normgrade.course import ASSIGNMENT_ID, paths, run_nbgrader
    from normgrade.results.report import class_report
    from normgrade.results.status import class_status, format_status

    from normgrade.grade.class_run import grade
    from normgrade.build.samples import make_submission, reference_layers

    course, _ = term
    grade([make_submission(paths(course)["release"], tmp_path / "hal", reference_layers())], course)
    grade([make_submission(paths(course)["release"], tmp_path / "ida", reference_layers())], course)
    assert (paths(course)["autograded"] / "hal" / ASSIGNMENT_ID).is_dir()
    # formgrader's grader sees the graded code, layers.py, below each notebook, with each function's points
    import nbformat
    shown = [c.source for c in nbformat.read(paths(course)["autograded"] / "ida" / ASSIGNMENT_ID /
                                             "BatchNormalization.ipynb", as_version=4).cells
             if c.metadata.get("normgrade") == "student code"]
    assert [s.splitlines()[0].split(".")[0] for s in shown] == [
        "# batchnorm_forward: 6 / 6 points", "# batchnorm_backward: 4 / 4 points",
        "# batchnorm_backward_alt: 3 / 3 points", "# layernorm_forward: 3 / 3 points",
        "# layernorm_backward: 3 / 3 points"]
    assert "def batchnorm_forward(" in shown[0] and "def batchnorm_backward(" not in shown[0]
    run_nbgrader(course, "db", "student", "remove", "hal", "--force")
    status = class_status(course)
    assert status["removed"] == ["hal"] and "hal" not in {s["student"] for s in status["students"]}
    assert "ida" in {s["student"] for s in status["students"]}
    assert "not counted (graded, but no longer in the gradebook" in format_status(status)
    report = class_report(course)
    assert report["removed"] == ["hal"] and "hal" not in {s["student"] for s in report["students"]}
    here = os.getcwd()
    try:  # `normgrade report --course .` names the course's folder, not "/gradebook.db"
        os.chdir(course)
        assert class_report(Path("."))["gradebook"] == f"{course.name}/gradebook.db (SQLite)"
    finally:
        os.chdir(here)
    klass = tmp_path / "status" / "klass"  # a class folder with a submission a level too deep: status says so too
    for notebook in ("ida/normalization/A.ipynb", "jo/normalization/A.ipynb", "frank/Downloads/normalization/A.ipynb"):
        (klass / notebook).parent.mkdir(parents=True)
        (klass / notebook).write_text("{}")
    seen = class_status(course, paths_given=[klass])
    assert [Path(entry["path"]).name for entry in seen["skipped"]] == ["frank"]
    assert any(line.startswith("skipped: ") and "Downloads/normalization" in line
               for line in format_status(seen).splitlines())
    lines = format_status(status).splitlines()
    header = next(line for line in lines if line.startswith("student"))
    row = next(line for line in lines if line.startswith("ida "))
    assert header.index("status") == row.index("graded"), "the columns line up under their heads"
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "feedback", "--course", str(course)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr  # once: a MissingEntry traceback, and the whole run failed
    assert "not written for hal: autograded/ holds a submission the gradebook does not have" in done.stderr
    assert (paths(course)["feedback"] / "ida" / ASSIGNMENT_ID / "BatchNormalization.html").is_file()
    again = grade([tmp_path / "hal"], course)["submissions"][0]
    assert again["status"] == "graded", "the ledger's old row does not stand in for a submission nbgrader lost"
    assert class_status(course)["removed"] == []

    copy = tmp_path / "course"
    shutil.copytree(course, copy, ignore=shutil.ignore_patterns("staged"))
    paths(copy)["gradebook"].unlink()
    for command in (["status"], ["report", "--out", str(tmp_path / "r.html")], ["feedback"],
                    ["export", "--csv", str(tmp_path / "g.csv")]):
        done = subprocess.run([sys.executable, "-m", "normgrade.cli", *command, "--course", str(copy)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "has no gradebook" in done.stderr and "Traceback" not in done.stderr, command
        assert not paths(copy)["gradebook"].exists(), f"{command[0]} made an empty gradebook"
