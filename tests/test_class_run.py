"""
Grading a class: parallel workers, exactly-once resume after SIGKILL, Ctrl-C,
PostgreSQL (a real server of the tests' own) and a real Dask LocalCluster.

The expected scores are not hard-coded: the reference earns the course's
maximum (its proof), the stubs earn only their answers, and every run must
agree with one plain sequential run of the same class.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import live_pids, started_sandboxes

from normgrade.grade import ledger, parallel
from normgrade.grade.grading import Task, grade_submission
from normgrade.grade.class_run import grade
from normgrade.course import COURSE_ID, db_url, paths
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.results.status import class_status
from normgrade.paths import STUB_LAYERS
from normgrade.build.samples import make_class, reference_layers

# one pytest-xdist worker runs them all: module-scoped course, class and sequential run
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("class_run")]

HANGS = reference_layers() + "\ndef layernorm_forward(x, gamma, beta, ln_param):\n    while True:\n        pass\n"


@pytest.fixture(scope="module")
def course(tmp_path_factory, sandbox, course_copy):
    return course_copy(tmp_path_factory.mktemp("course") / "course")


@pytest.fixture(scope="module")
def klass(course, tmp_path_factory):
    """A class of nine: three each of the reference, the stubs and typical mistakes."""
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    root = tmp_path_factory.mktemp("class")
    make_class(paths(course)["release"], root, 9, keys)
    return root


@pytest.fixture(scope="module")
def sequential(course, klass):
    """{student: (score, [test scores])} of one plain sequential run: what every other run must agree with."""
    document = grade([klass], course, workers=1)
    return _scores(document)


def _scores(document):
    return {s["student"]: (s["score"], [t["score"] for t in s["tests"]]) for s in document["submissions"]}


def _fresh_course(course, tmp_path):
    """A copy of the built course with an empty gradebook history (the release's gradebook, nothing graded)."""
    import shutil

    copy = tmp_path / "course"
    shutil.copytree(course, copy, ignore=shutil.ignore_patterns("submitted", "staged", "autograded", "feedback"),
                    symlinks=True)
    url = db_url(copy)
    from sqlalchemy import text

    with ledger.engine(url).begin() as db:  # the module's other runs graded into the original's gradebook
        for table in ("grade", "comment", "submitted_notebook", "submitted_assignment", "student"):
            db.execute(text(f"DELETE FROM {table}"))
        if ledger.engine(url).dialect.has_table(db, ledger.GRADING.name):
            db.execute(ledger.GRADING.delete())
    return copy


def _gradebook(url):
    """{student: auto score} of the submissions in the gradebook at url, and the number of submission rows."""
    from nbgrader.api import Gradebook, SubmittedAssignment

    with Gradebook(url, COURSE_ID) as gb:
        submissions = gb.db.query(SubmittedAssignment).all()
        return {s.student.id: float(s.code_score) for s in submissions}, len(submissions)


def test_the_class_reference_full_stubs_zero_mistakes_between(sequential):
    by_kind = {}
    for student, (score, tests) in sequential.items():
        by_kind.setdefault(student.split("_")[1], set()).add(score)
    assert by_kind["reference"] == {36.0}
    assert by_kind["stubs"] == {0.0}  # no code, no answers
    assert len(by_kind["mistakes"]) == 1 and 0 < by_kind["mistakes"].pop() < 36


def test_two_workers_give_the_sequential_scores_and_skip_what_is_unchanged(course, klass, sequential, tmp_path):
    copy = _fresh_course(course, tmp_path)
    first = grade([klass], copy, workers=2)
    assert _scores(first) == sequential
    assert {s["status"] for s in first["submissions"]} == {"graded"}
    assert all(s["seconds"] > 0 for s in first["submissions"])

    again = grade([klass], copy, workers=2)
    assert {s["status"] for s in again["submissions"]} == {"unchanged"}
    assert _scores(again) == sequential

    changed = klass / "s001_stubs" / "normlab" / "layers.py"
    original = changed.read_text()
    try:
        changed.write_text(reference_layers())
        third = grade([klass], copy, workers=2)
    finally:
        changed.write_text(original)
    statuses = {s["student"]: s["status"] for s in third["submissions"]}
    assert statuses.pop("s001_stubs") == "graded" and set(statuses.values()) == {"unchanged"}
    reference = {s["student"]: s for s in first["submissions"]}["s000_reference"]
    code_points = sum(t["score"] for t in reference["tests"] if "test_inline" not in t["name"])
    assert 0 < code_points < 36 and _scores(third)["s001_stubs"][0] == code_points  # its code now, still no answers

    regraded = grade([klass], copy, workers=2, regrade=True)
    assert {s["status"] for s in regraded["submissions"]} == {"graded"}
    assert _scores(regraded) == sequential
    scores, rows = _gradebook(db_url(copy))
    assert rows == 9 and scores == {student: score for student, (score, _) in sequential.items()}

    status = class_status(copy, paths_given=[klass])
    assert (status["graded"], status["failed"], status["pending"]) == (9, 0, 0)
    totals = sorted(score for score, _ in sequential.values())
    assert status["scores"]["count"] == 9 and status["scores"]["median"] == totals[4]
    assert status["scores"]["mean"] == pytest.approx(sum(totals) / 9, abs=1e-3)
    assert sum(n for _, _, n in status["scores"]["histogram"]) == 9
    shown = subprocess.run([sys.executable, "-m", "normgrade.cli", "status", "--course", str(copy)],
                           capture_output=True, text=True, check=True).stdout
    assert "9 graded, 0 failed, 0 pending" in shown


def _crashing(task):
    """
    grade_submission in a child process that dies in the middle of nbgrader's
    autograde: once for one student, every time for another.
    """
    import normgrade.grade.grading

    marker = Path(task.course) / f"crashed-{task.student}"
    if task.student == "s000_reference" and not marker.exists() or task.student == "s002_mistakes":
        def dies(course, task):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

        normgrade.grade.grading._autograde = dies  # in this forked child only
    return grade_submission(task)


def test_a_grading_process_that_dies_is_retried_once_then_reported(course, klass, sequential, tmp_path):
    copy = _fresh_course(course, tmp_path)
    url = db_url(copy)
    ledger.prepare(copy, url)
    found = sorted(p for p in klass.iterdir())[:4]
    tasks = [Task(str(copy), url, p.name, str(p), str(p), "run1") for p in found]
    results = {}
    parallel.run_local(tasks, _crashing, 2, lambda task, result: results.__setitem__(task.student, result),
                       str(tmp_path))
    assert results["s000_reference"]["status"] == "graded" and results["s000_reference"]["attempts"] == 2
    assert results["s000_reference"]["score"] == sequential["s000_reference"][0]
    assert results["s002_mistakes"]["status"] == "failed"
    assert "died in each of 2 attempts" in results["s002_mistakes"]["error"]
    assert results["s001_stubs"]["attempts"] == 1 and results["s001_stubs"]["status"] == "graded"
    rows = {row["student"]: row for row in ledger.rows(url)}
    assert rows["s002_mistakes"]["status"] == "failed" and rows["s000_reference"]["status"] == "graded"


def _wait_gone(needle, sandboxes_of=None, seconds=20):
    """
    Wait until no process mentions `needle` and (unless sandboxes_of is None)
    no bwrap mentions the folder `sandboxes_of`, where the run's sandboxes
    have their private folders (never another test's: they run in parallel).
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left_bwrap = live_pids("bwrap", mentioning=sandboxes_of) if sandboxes_of is not None else []
        if not live_pids(mentioning=needle) and not left_bwrap:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes outlived the run: {live_pids(mentioning=needle)}, bwrap {left_bwrap}")


def _command(klass, course, *extra):
    return [sys.executable, "-m", "normgrade.cli", "grade", str(klass), "--course", str(course), "--json",
            "--workers", "2", *extra]


def _wait_for_ledger(url, graded, process, log, seconds=300):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before it could be stopped: {Path(log).read_text()[-3000:]}"
        try:
            rows = ledger.rows(url)
        except Exception:  # the table is being created
            rows = []
        if sum(row["status"] == "graded" for row in rows) >= graded:
            return
        time.sleep(0.05)
    raise AssertionError("the run did not get that far")


def _kill_and_resume(course, klass, sequential, url, graded_before_kill, tmp_path):
    extra = ["--db-url", url] if url else []
    url = url or db_url(course)
    log = tmp_path / "first-run.log"
    with open(log, "w") as stderr:
        process = subprocess.Popen(_command(klass, course, *extra), stdout=subprocess.DEVNULL, stderr=stderr)
    _wait_for_ledger(url, graded_before_kill, process, log)
    os.kill(process.pid, signal.SIGKILL)  # the parent only: its children must die with it
    process.wait()
    _wait_gone(str(klass), None)  # a sandbox caught while bwrap set it up may wait until the next run
    kept = {row["student"] for row in ledger.rows(url) if row["status"] == "graded"}
    assert len(kept) >= graded_before_kill
    scratch = course / "normgrade" / "scratch"  # what the killed children had there stays until the next run

    done = subprocess.run(_command(klass, course, *extra), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    statuses = {s["student"]: s["status"] for s in document["submissions"]}
    assert {s for s, status in statuses.items() if status == "unchanged"} == kept  # not graded twice
    assert {s for s, status in statuses.items() if status == "graded"} == set(sequential) - kept
    assert _scores(document) == sequential
    scores, rows = _gradebook(url)
    assert rows == len(sequential), "exactly one submission per student in the gradebook"
    assert scores == {student: score for student, (score, _) in sequential.items()}
    assert {row["status"] for row in ledger.rows(url)} == {"graded"}
    assert not any(scratch.iterdir()), "nothing left there after a finished run"
    _wait_gone(str(klass), course)


@pytest.mark.parametrize("graded_before_kill", [1, 5])
def test_sigkill_then_resume_grades_each_submission_exactly_once_sqlite(course, klass, sequential, tmp_path,
                                                                        graded_before_kill):
    _kill_and_resume(_fresh_course(course, tmp_path), klass, sequential, None, graded_before_kill, tmp_path)


def test_sigkill_then_resume_grades_each_submission_exactly_once_postgres(course, klass, sequential, tmp_path,
                                                                          postgres):
    _kill_and_resume(course, klass, sequential, postgres(), 3, tmp_path)


def test_ctrl_c_stops_cleanly_and_keeps_what_was_graded(course, klass, sequential, tmp_path):
    copy = _fresh_course(course, tmp_path)
    hanging = tmp_path / "class"
    import shutil

    shutil.copytree(klass, hanging)
    (hanging / "s999_hangs").mkdir()
    shutil.copytree(klass / "s000_reference", hanging / "s999_hangs", dirs_exist_ok=True)
    (hanging / "s999_hangs" / "normlab" / "layers.py").write_text(HANGS)
    temporary = tmp_path / "tmp"  # the run's own temporary folder: other tests' come and go in the system's
    temporary.mkdir()
    log = tmp_path / "run.log"
    with open(log, "w") as stderr:
        # As a terminal's shell starts a foreground job: in its own group, with SIGINT's default action
        # (a background job, e.g. under `cmd &` in a script, inherits SIGINT ignored).
        process = subprocess.Popen(_command(hanging, copy, "--workers", "2"), stdout=subprocess.PIPE,
                                   stderr=stderr, text=True, start_new_session=True,
                                   env=dict(os.environ, TMPDIR=str(temporary)),
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _wait_for_ledger(db_url(copy), 2, process, log)
    deadline = time.monotonic() + 60  # stop it while the hanging submission's sandbox runs, if it gets there
    while time.monotonic() < deadline and not any(r["student"] == "s999_hangs" for r in ledger.rows(db_url(copy))):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 130, log.read_text()[-3000:]
    document = json.loads(out)
    assert document["interrupted"], "something was still to grade"
    graded = {s["student"] for s in document["submissions"] if s["status"] == "graded"}
    assert len(graded) >= 2
    rows = {row["student"]: row["status"] for row in ledger.rows(db_url(copy))}
    kept = {s for s, status in rows.items() if status == "graded"}
    # What the run reports graded is in the gradebook; a child stopped between recording and reporting is
    # graded there but reported interrupted (the next run finds it unchanged).
    assert graded <= kept and {str(hanging / s) for s in kept - graded} <= set(document["interrupted"])
    _wait_gone(str(hanging), copy, seconds=2)  # gone as the command ends: it reaped what its children left
    assert list(temporary.iterdir()) == [], "temporary folders left behind"
    status = class_status(copy, paths_given=[hanging])
    assert status["graded"] == len(kept) and status["pending"] == 10 - len(kept)
    scores = _scores(document)
    assert all(scores[s] == sequential[s] for s in graded if s in sequential)


def test_postgres_gradebook_holds_the_sequential_scores(course, klass, sequential, postgres):
    url = postgres()
    document = grade([klass], course, workers=2, url=url)
    errors = [s["error"] for s in document["submissions"] if s.get("error")]
    print("\n\n".join(errors))  # shown in full when the test fails
    assert not errors
    assert _scores(document) == sequential
    assert document["gradebook"].startswith("postgresql+psycopg://")
    scores, rows = _gradebook(url)
    assert rows == 9 and scores == {student: score for student, (score, _) in sequential.items()}


# The reference, asleep for 2 s as each worker imports it (no graded call waits for it): a grading that a
# test can catch in the middle, however loaded the machine (a race against a half-second grading was lost once).
ASLEEP_AT_IMPORT = reference_layers() + """

import time as _time

_time.sleep(2)
"""


def test_dask_local_cluster_grades_like_the_local_pool_even_when_a_worker_dies(course, klass, sequential, tmp_path,
                                                                               monkeypatch):
    import shutil

    from distributed import LocalCluster

    from normgrade.build.samples import make_submission

    copy = _fresh_course(course, tmp_path)
    url = db_url(copy)
    root = tmp_path / "class"
    shutil.copytree(klass, root)
    make_submission(paths(copy)["release"], root / "s999_slow", ASLEEP_AT_IMPORT,
                    answer_keys(source_notebooks(paths(copy)["source"])))
    expected = dict(sequential, s999_slow=sequential["s000_reference"])
    temporary = tmp_path / "tmp"  # the Dask workers' temporary folder, where their sandboxes' private folders go
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        document = grade([root], copy, dask=cluster.scheduler_address)
        assert _scores(document) == expected
        assert {s["status"] for s in document["submissions"]} == {"graded"}

        # A worker lost in the middle of a task (the slow one's, asleep in its sandbox): Dask runs it again.
        import threading

        killed, sandboxed_here = [], []

        def kill_a_grading_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                sandboxed = started_sandboxes(temporary)  # a worker runs in a sandbox: kill it there
                sandboxed_here.extend(sandboxed)
                if not sandboxed:
                    time.sleep(0.02)
                    continue
                for row in ledger.rows(url):
                    if row["student"] == "s999_slow" and row["status"] == "running" and row["pid"] \
                            and row["pid"] != os.getpid():
                        os.kill(row["pid"], signal.SIGKILL)
                        killed.append(row["student"])
                        return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_grading_worker)
        killer.start()
        again = grade([root], copy, dask=cluster.scheduler_address, regrade=True)
        killer.join()
    assert killed, "no worker was caught grading"
    assert sandboxed_here, "the Dask workers' sandboxes are found by this test's folder"
    assert _scores(again) == expected
    victim = {s["student"]: s for s in again["submissions"]}[killed[0]]
    assert victim["status"] == "graded" and victim["attempts"] == 2
    scores, rows = _gradebook(url)
    assert rows == 10 and scores == {student: score for student, (score, _) in expected.items()}
    _wait_gone(str(root), temporary)


def test_a_regrade_from_a_broken_notebook_leaves_no_stale_grade(course, klass, tmp_path):
    """Red-team finding: an invalid notebook (a cell id with a space) failed in nbgrader and the old 36 stayed."""
    import shutil

    copy = _fresh_course(course, tmp_path)
    root = tmp_path / "class"
    shutil.copytree(klass / "s000_reference", root / "stale")
    first = grade([root], copy, workers=1)["submissions"][0]
    assert first["score"] == 36.0
    shutil.copy(STUB_LAYERS, root / "stale" / "normlab" / "layers.py")
    path = root / "stale" / "BatchNormalization.ipynb"
    raw = json.loads(path.read_text())
    raw["cells"][0]["id"] = "bad id"
    path.write_text(json.dumps(raw))
    spatial = root / "stale" / "SpatialNormalization.ipynb"
    spatial.write_text(spatial.read_text().replace('"source": [', '"source": ["\\ud800",', 1))
    again = grade([root], copy, workers=1)["submissions"][0]
    assert again["status"] == "graded", again.get("error")
    notes = " ".join(again["notes"])
    assert "BatchNormalization.ipynb is not a valid notebook" in notes and "SpatialNormalization.ipynb could not be" in notes
    scores, rows = _gradebook(db_url(copy))
    assert rows == 1 and scores["stale"] == again["score"] == 0.0  # stub code, blank answers: nothing stale left


def test_prepare_creates_every_course_row_nbgrader_opens(course, postgres):
    """nbgrader's preprocessors open the gradebook with the default course id; workers must not race to create it."""
    from sqlalchemy import text

    url = postgres()
    ledger.prepare(course, url)
    with ledger.engine(url).connect() as db:
        rows = {row[0] for row in db.execute(text("SELECT id FROM course"))}
    assert rows == {COURSE_ID, "default_course"}


def _staging_fails(task):
    """grade_submission in a child where reading the student's files raises (an I/O error, say) before the claim."""
    import normgrade.grade.staging

    def unreadable(folder_fd, parts, limit):
        raise OSError(5, "Input/output error", "/".join(parts))

    normgrade.grade.staging.files.read_file = unreadable  # in this forked child only
    return grade_submission(task)


def test_a_grading_that_raises_before_its_claim_is_recorded_failed_and_leaves_no_stale_grade(course, klass, tmp_path):
    copy = _fresh_course(course, tmp_path)
    url = db_url(copy)
    folder = klass / "s000_reference"
    assert grade([folder], copy, workers=1)["submissions"][0]["score"] == 36.0
    results = {}
    task = Task(str(copy), url, folder.name, str(folder), str(folder), "run2")
    parallel.run_local([task], _staging_fails, 1, lambda t, result: results.__setitem__(t.student, result),
                       str(tmp_path))
    result = results[folder.name]
    assert result["status"] == "failed" and "Input/output error" in result["error"]
    rows = {row["student"]: row for row in ledger.rows(url)}
    assert rows[folder.name]["status"] == "failed", "the ledger (status, report) lists the failure"
    assert _gradebook(url)[0] == {}, "the earlier 36 is not left standing"
    status = class_status(copy)
    assert status["failed"] == 1 and status["failures"][0]["student"] == folder.name, status


# ---- the third round of attacks: staging races, pipes, stuck children, forged ids, spreadsheet formulas ----

RENAME_EXCHANGE = 2


def _exchange(a, b):
    """renameat2(a, b, RENAME_EXCHANGE): both names swapped in one step (what a racing student does)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")


def _swapping(a, b, stop):
    while not stop.is_set():
        try:
            _exchange(a, b)
        except OSError:  # a name gone for a moment: another swapper moved the folder it is in
            pass


def test_a_swap_loop_never_gets_a_classmates_files_staged(course, klass, tmp_path):
    """
    Eve's layers.py, notebook and normlab/ change places with links to Alice's, in a loop of renameat2
    (RENAME_EXCHANGE), while Eve's folder is staged again and again: whatever is staged is Eve's or nothing.
    The same loop against an open by name gets Alice's file now and then: the race is real.
    """
    import shutil
    import threading

    import nbformat

    from normgrade.grade.staging import stage
    from normgrade.score.scorer import answer_cells

    alice, eve = tmp_path / "alice", tmp_path / "class" / "eve"
    shutil.copytree(klass / "s000_reference", alice)  # a copy: the swappers may move files inside it
    shutil.copytree(klass / "s001_stubs", eve)
    alice_layers = (alice / "normlab" / "layers.py").read_bytes()
    alice_answers = answer_cells(nbformat.read(alice / "BatchNormalization.ipynb", as_version=4))
    assert alice_answers != answer_cells(nbformat.read(eve / "BatchNormalization.ipynb", as_version=4))
    (eve / "normlab" / "decoy.py").symlink_to(alice / "normlab" / "layers.py")
    (eve / "decoy.ipynb").symlink_to(alice / "BatchNormalization.ipynb")
    (eve / "decoy_package").symlink_to(alice / "normlab")
    pairs = [(eve / "normlab" / "layers.py", eve / "normlab" / "decoy.py"),
             (eve / "BatchNormalization.ipynb", eve / "decoy.ipynb"),
             (eve / "normlab", eve / "decoy_package")]
    staged, by_name = [], 0
    for a, b in pairs:  # one swapper at a time: two at once could move Alice's own files, which Eve cannot
        stop = threading.Event()
        swapper = threading.Thread(target=_swapping, args=(a, b, stop), daemon=True)
        swapper.start()
        try:
            for _ in range(60):
                stage(course, "eve_race", eve, root=eve.parent)
                target = paths(course)["staged"] / "eve_race" / "normalization"
                layers = target / "normlab" / "layers.py"
                staged.append((layers.read_bytes() if layers.exists() else None,
                               answer_cells(nbformat.read(target / "BatchNormalization.ipynb", as_version=4))))
                try:
                    by_name += (eve / "normlab" / "layers.py").read_bytes() == alice_layers
                    by_name += answer_cells(nbformat.read(eve / "BatchNormalization.ipynb", as_version=4)) == \
                        alice_answers
                except OSError:
                    pass
        finally:
            stop.set()
            swapper.join()
    assert (alice / "normlab" / "layers.py").read_bytes() == alice_layers and not (alice / "normlab").is_symlink()
    assert not any(layers == alice_layers for layers, _ in staged), "Alice's layers.py was staged as Eve's"
    assert not any(answers == alice_answers for _, answers in staged), "Alice's written answers were staged as Eve's"
    assert by_name > 0, "the swap loop never won against an open by name: the test shows nothing"


def test_a_named_pipe_or_a_device_costs_nothing_and_blocks_nothing(course, klass, tmp_path):
    import shutil
    import threading

    from normgrade.grade.staging import stage

    eve = tmp_path / "eve"
    shutil.copytree(klass / "s000_reference", eve)
    (eve / "normlab" / "layers.py").unlink()
    os.mkfifo(eve / "normlab" / "layers.py")  # opened by name for reading, this waits for a writer forever
    (eve / "SpatialNormalization.ipynb").unlink()
    (eve / "SpatialNormalization.ipynb").symlink_to("/dev/zero")
    notes = []
    staging = threading.Thread(target=lambda: notes.extend(stage(course, "eve_pipe", eve)), daemon=True)
    staging.start()
    staging.join(30)
    assert not staging.is_alive(), "staging blocked on a named pipe"
    assert "normlab/layers.py is not a regular file inside the submission (a link?): not graded" in notes
    assert any("SpatialNormalization.ipynb is not a regular file" in n for n in notes)


SLOW = reference_layers() + """
import time as _time
def spatial_groupnorm_backward(dout, cache):
    _time.sleep(9)  # under the 10 s of one call, so only the whole grading's wall-clock limit stops it
    raise NotImplementedError
"""


def _hangs_for_eve(task):
    """grade_submission, except that Eve's grading process never ends (a stuck child, whatever the cause)."""
    if task.student == "eve":
        time.sleep(3600)
    return grade_submission(task)


def test_a_stuck_grading_process_costs_only_its_own_submission(course, klass, tmp_path):
    copy = _fresh_course(course, tmp_path)
    url = db_url(copy)
    ledger.prepare(copy, url)  # as grade() does before it forks (alone, this test had relied on another's)
    tasks = [Task(str(copy), url, name, str(klass / folder), str(klass / folder), "run-stuck")
             for name, folder in (("eve", "s001_stubs"), ("ann", "s000_reference"), ("bob", "s003_reference"))]
    results, start = {}, time.monotonic()
    parallel.run_local(tasks, _hangs_for_eve, 2, lambda t, r: results.__setitem__(t.student, r), str(tmp_path),
                       task_seconds=10)
    assert time.monotonic() - start < 120
    assert results["eve"]["status"] == "failed" and "longer than 10 s" in results["eve"]["error"]
    assert results["ann"]["score"] == results["bob"]["score"] == 36, results["ann"].get("error")
    assert live_pids("normgrade-eve") == []


def test_a_slow_submission_is_stopped_reported_and_recorded_failed(course, klass, tmp_path):
    """Through grade(): the wall-clock limit stops a grading that is slow in every call, and the ledger says so."""
    import shutil

    copy = _fresh_course(course, tmp_path)
    root = tmp_path / "class"
    shutil.copytree(klass / "s000_reference", root / "ann")
    shutil.copytree(klass / "s000_reference", root / "slow")
    (root / "slow" / "normlab" / "layers.py").write_text(SLOW)
    document = grade([root], copy, workers=2, task_seconds=8)
    by_student = {s["student"]: s for s in document["submissions"]}
    assert by_student["ann"]["score"] == 36
    assert by_student["slow"]["status"] == "failed" and "longer than 8 s" in by_student["slow"]["error"]
    rows = {row["student"]: row for row in ledger.rows(db_url(copy))}
    assert rows["slow"]["status"] == "failed", "status and the report list it; the next run does not take it as running"
    assert "slow" not in _gradebook(db_url(copy))[0]


def test_a_folder_named_like_a_hashed_id_neither_refuses_the_run_nor_replaces_a_grade(course, klass, tmp_path):
    import shutil

    from normgrade.grade.submissions import student_id

    copy = _fresh_course(course, tmp_path)
    forged = student_id("jo doe")
    first, later = tmp_path / "first", tmp_path / "later"
    shutil.copytree(klass / "s000_reference", first / "jo doe")
    shutil.copytree(klass / "s001_stubs", first / forged)
    shutil.copytree(klass / "s001_stubs", later / forged)
    shutil.copytree(klass / "s001_stubs", later / forged.replace("~", "_"))
    document = grade([first], copy, workers=1)
    scores = {s["student"]: s["score"] for s in document["submissions"]}
    assert scores[forged] == 36 and len(scores) == 2 and 0 in scores.values()
    notes = {s["student"]: s["notes"] for s in document["submissions"]}
    assert any(f"graded as {forged!r}" in note for note in notes[forged]), "the instructor is told the id it got"
    grade([later], copy, workers=1)
    assert _gradebook(db_url(copy))[0][forged] == 36, "a later run replaced jo doe's grade"


def test_duplicated_ids_are_reported_and_the_rest_of_the_class_graded(course, klass, tmp_path):
    copy = _fresh_course(course, tmp_path)
    document = grade([klass / "s000_reference", klass / "s000_reference", klass / "s003_reference"], copy, workers=1)
    by_path = {}
    for s in document["submissions"]:
        by_path.setdefault(s["student"], []).append(s)
    assert [s["status"] for s in by_path["s000_reference"]] == ["failed", "failed"]
    assert "would all be graded as student 's000_reference'" in by_path["s000_reference"][0]["error"]
    assert by_path["s003_reference"][0]["score"] == 36


def test_exported_cells_never_run_as_spreadsheet_formulas(course, klass, tmp_path):
    import csv
    import shutil

    from normgrade.results.export import write_csv

    copy = _fresh_course(course, tmp_path)
    root = tmp_path / "class"
    for name in ("-A1-B1", "=HYPERLINK(evil)", "@SUM(1)", "+1", "plain"):
        shutil.copytree(klass / "s000_reference", root / name)
    grade([root], copy, workers=2)
    write_csv(copy, tmp_path / "grades.csv")
    text = (tmp_path / "grades.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    cells = [cell for row in rows for cell in row]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells), cells
    assert any(cell.startswith("'-A1-B1") for cell in cells) and "plain" in cells
    assert all(line.startswith('"') for line in text.splitlines()), "every cell quoted (RFC 4180)"
    assert "36.0" in rows[[r[0] for r in rows].index("plain")], "numbers stay numbers"


# ---- grading never changes what it reads (issue 16, item 1) ----

def _tree(root):
    """{relative path: (kind, sha256 or link target)} of everything under root, links not followed."""
    import hashlib

    root = Path(root)
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = ("link", os.readlink(path))
        elif path.is_file():
            found[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            found[key] = ("dir", "")
    return found


def test_every_intake_path_leaves_its_inputs_byte_for_byte(course, klass, tmp_path):
    """
    A class folder, the course's own submitted/ as `nbgrader collect` fills it, one submission, <id>/normalization,
    a link to a class folder: each graded, each input tree unchanged after (once,
    grading the course's submitted/ deleted every layers.py and blanked every notebook: 36 -> 0).
    """
    import shutil

    copy = _fresh_course(course, tmp_path)
    collected = paths(copy)["submitted"]
    for name in ("s000_reference", "s001_stubs"):
        shutil.copytree(klass / name, collected / name / "normalization")
    (collected / "s000_reference" / "normalization" / "timestamp.txt").write_text("2026-11-20 10:00:00.000000 UTC")
    nested = tmp_path / "nested" / "ann"
    shutil.copytree(klass / "s003_reference", nested / "normalization")
    (tmp_path / "linked").symlink_to(klass)
    intakes = [(collected, {"s000_reference": 36, "s001_stubs": 0}),
               (klass / "s000_reference", {"s000_reference": 36}),
               (nested / "normalization", {"ann": 36}),
               (tmp_path / "linked", {"s000_reference": 36, "s001_stubs": 0})]
    for path, scores in intakes:
        before = _tree(path)
        document = grade([path], copy, workers=2, regrade=True)
        got = {s["student"]: s["score"] for s in document["submissions"]}
        assert {k: got[k] for k in scores} == scores, (path, got)
        assert _tree(path) == before, f"grading {path} changed it"
    assert _tree(collected)["s000_reference/normalization/normlab/layers.py"][0] == "file"


def test_a_path_where_grading_writes_is_refused_and_nothing_changes(course, klass, tmp_path):
    from normgrade.grade.submissions import Overlap

    copy = _fresh_course(course, tmp_path)
    grade([klass / "s000_reference"], copy, workers=1)
    staged, autograded = paths(copy)["staged"], paths(copy)["autograded"]
    (tmp_path / "sneaky").symlink_to(staged)
    for path in (staged, staged / "s000_reference", autograded, tmp_path / "sneaky", copy / "normgrade"):
        before = (_tree(staged), _tree(autograded))
        with pytest.raises(Overlap, match="which grading writes: nothing was graded"):
            grade([path], copy, workers=1)
        assert (_tree(staged), _tree(autograded)) == before
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(autograded), "--course", str(copy)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "autograded/" in done.stderr and "Traceback" not in done.stderr
    # The course's own folders are never submissions: once, `grade course` graded release/ and source/ as two
    # students (source scored 5 from its answer keys) who then showed up in status, the CSV and the feedback.
    students_before = set(_gradebook(db_url(copy))[0])
    for path in (copy, paths(copy)["release"], paths(copy)["source"], copy / "source"):
        with pytest.raises(Overlap, match="folders of the course are never submissions"):
            grade([path], copy, workers=1)
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(copy), "--course", str(copy)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "is the course folder" in done.stderr and "Traceback" not in done.stderr
    assert set(_gradebook(db_url(copy))[0]) == students_before, "no folder of the course became a student"
    (tmp_path / "sneaky").unlink()


def _rows(url):
    """Every row nbgrader wrote, table by table, without its generated ids and times (they differ run to run)."""
    from sqlalchemy import DateTime, MetaData

    metadata = MetaData()
    engine = ledger.engine(url)
    metadata.reflect(engine)
    kept = {}
    with engine.connect() as db:
        for table in metadata.sorted_tables:
            if table.name in ("alembic_version", ledger.GRADING.name):
                continue
            columns = [c for c in table.columns if c.name != "id" and not c.name.endswith("_id")
                       and not isinstance(c.type, DateTime)]
            rows = db.execute(table.select()).mappings().all()
            kept[table.name] = sorted(tuple(repr(row[c.name]) for c in columns) for row in rows)
    return kept


def test_shared_engines_write_the_gradebook_nbgrader_writes_with_its_own(course, klass, tmp_path, monkeypatch):
    """normgrade.grade.gradebooks: one engine per process changes nothing nbgrader writes, row for row."""
    import contextlib

    from normgrade.grade import gradebooks

    students = sorted(klass.iterdir())[:3]  # a reference, a stub and a mistake
    shared = _fresh_course(course, tmp_path / "shared")
    shared_document = grade(students, shared, workers=1)
    monkeypatch.setattr(gradebooks, "shared_engines", contextlib.nullcontext)
    own = _fresh_course(course, tmp_path / "own")
    own_document = grade(students, own, workers=1)
    assert _scores(shared_document) == _scores(own_document)
    assert {s["status"] for s in own_document["submissions"]} == {"graded"}
    shared_rows, own_rows = _rows(db_url(shared)), _rows(db_url(own))
    assert len(own_rows["grade"]) > 20 and own_rows == shared_rows


def test_warm_up_reads_what_children_need_and_opens_no_gradebook(course, monkeypatch):
    """class_run.warm_up runs before the fork: the expected values are cached, and no engine or connection exists."""
    import sqlalchemy

    from normgrade.grade import class_run
    from normgrade.score import scorer

    def no_engine(*args, **kwargs):
        raise AssertionError("warm_up created a database engine: a connection could cross the fork")

    monkeypatch.setattr(sqlalchemy, "create_engine", no_engine)
    monkeypatch.setattr("nbgrader.api.create_engine", no_engine)
    scorer.load_expected.cache_clear()
    class_run.warm_up(course)
    assert scorer.load_expected.cache_info().currsize == 1
    before = scorer.load_expected.cache_info().hits
    scorer.load_current_expected(paths(course)["expected"])  # what scored_code reads: served from the cache
    assert scorer.load_expected.cache_info().hits == before + 1


def test_warm_up_prepares_the_diagnosis_the_children_then_answer_from_memory(course):
    """With diagnosis, warm_up computes every probe's hypotheses: a probe asked after it computes nothing anew."""
    from normgrade.score import checks, diagnosis
    from normgrade.grade import class_run

    class_run.warm_up(course, diagnosis=True)
    kept = {f: len(f.kept) for f in (diagnosis.forward_hypotheses, diagnosis.backward_hypotheses)}
    assert all(kept.values()), "prepared"
    data = scorer_data(course)
    for quantity, call in checks.CALL_OF.items():
        first = diagnosis.probe(quantity, data.inputs, call)
        again = diagnosis.probe(quantity, data.inputs, call)
        assert [h.parts for h in first[0]] == [h.parts for h in again[0]]
    assert {f: len(f.kept) for f in kept} == kept, "every hypothesis was in memory"


def scorer_data(course):
    from normgrade.score import scorer

    return scorer.load_current_expected(paths(course)["expected"])


def test_warm_up_never_stops_a_run_whatever_the_course_holds(course, tmp_path):
    """A red-team finding: a corrupt release notebook stopped the whole run in warm_up; graded before."""
    from normgrade.grade import class_run

    copy = _fresh_course(course, tmp_path)
    blank = sorted(paths(copy)["release"].glob("*.ipynb"))[0]
    blank.write_text("{ not json")
    (paths(copy)["expected"]).rename(tmp_path / "expected.npz")
    class_run.warm_up(copy)  # raises nothing
