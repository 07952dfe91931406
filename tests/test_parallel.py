"""
The local runner's promise that nothing outlives a run (normgrade.grade.parallel.run_local), tested on
grading functions that leave processes behind as a grading process stopped while bwrap set up its
sandbox does: in a session of their own (no group kill reaches them), with a child of their own.
No course: what is tested is the runner's subreaper, whatever left the process; the last test
stops real sandboxes in their setup.
"""
import ctypes
import os
import subprocess
import sys
import time

import pytest
from processes import live_pids

from normgrade.grade import parallel
from normgrade.grade.grading import Task

# A process that starts a child and then waits for ever (bwrap and its sandbox process, caught in setup).
LEAVES = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', " \
         "sys.argv[1]]); time.sleep(3600)"


def _task(marker, student="ann"):
    return Task("course", "sqlite://", student, marker, marker, "run")


def _leave_processes(marker):
    """Start the process pair, marked by `marker` on their command lines, and wait until both run."""
    subprocess.Popen([sys.executable, "-c", LEAVES, marker], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(live_pids(mentioning=marker)) < 2:
        if time.monotonic() > deadline:  # the grading function raises: the test's result assertions then fail
            raise RuntimeError("the processes to leave behind did not start")
        time.sleep(0.05)


def _ends_leaving_processes(task):
    _leave_processes(task.given)
    return parallel.crash_result(task, "ended")


def _hangs_leaving_processes(task):
    _leave_processes(task.given)
    time.sleep(3600)


def _dies_leaving_processes(task):
    _leave_processes(task.given)
    os._exit(3)


def _run(function, marker, **options):
    results = {}
    parallel.run_local([_task(marker)], function, 1, lambda task, result: results.__setitem__(task.student, result),
                       **options)
    return results["ann"]


def test_what_a_grading_process_leaves_behind_is_killed_when_it_ends(tmp_path):
    marker = str(tmp_path / "ends")
    assert _run(_ends_leaving_processes, marker)["error"] == "ended"
    assert live_pids(mentioning=marker) == [], "left running past the run"


def test_what_a_stopped_grading_process_leaves_behind_is_killed(tmp_path):
    marker = str(tmp_path / "stopped")
    result = _run(_hangs_leaving_processes, marker, task_seconds=5)
    assert result["stopped"] and "longer than 5 s" in result["error"]
    assert live_pids(mentioning=marker) == [], "left running past the run"


def test_what_a_dying_grading_process_leaves_behind_is_killed(tmp_path):
    marker = str(tmp_path / "dies")
    result = _run(_dies_leaving_processes, marker)
    assert "died 3 times" in result["error"]
    assert live_pids(mentioning=marker) == [], "left running past the run"


def _subreaper():
    flag = ctypes.c_int(-1)
    assert ctypes.CDLL(None).prctl(parallel.PR_GET_CHILD_SUBREAPER, ctypes.byref(flag)) == 0
    return flag.value


def test_the_callers_own_children_are_left_alone_and_its_subreaper_flag_restored(tmp_path):
    mine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    prctl = ctypes.CDLL(None).prctl
    try:
        _run(_ends_leaving_processes, str(tmp_path / "ends"))
        assert mine.poll() is None, "the caller's own child was killed"
        assert _subreaper() == 0, "the caller is left a subreaper"
        prctl(parallel.PR_SET_CHILD_SUBREAPER, 1)  # a caller that is a subreaper itself stays one
        _run(_ends_leaving_processes, str(tmp_path / "again"))
        assert _subreaper() == 1
    finally:
        prctl(parallel.PR_SET_CHILD_SUBREAPER, 0)
        mine.kill()
        mine.wait()


def _starts_sandboxes_until_stopped(task):
    """Start and close real sandboxes until stopped: a stop lands in bwrap's setup now and then."""
    import random

    from normgrade.run.sandbox import Limits, Sandbox

    box = Sandbox()
    folder = box.private_folder(None)  # under the child's own temporary folder, so under the run's scratch
    while True:
        run = box.start("calls", folder, Limits())
        time.sleep(random.random() * 0.05)
        run.close()


@pytest.mark.slow
def test_no_bwrap_outlives_a_run_whose_children_are_stopped_while_starting_sandboxes(sandbox, tmp_path):
    """
    The real shape of the leak: a grading process stopped while bwrap set up a sandbox it had not yet listed
    for kill_all left bwrap's sandbox process waiting for ever (bubblewrap 0.8). 32 stops at random moments;
    without the subreaper, this test failed 9 times in 10.
    """
    import random

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for _ in range(8):
        tasks = [_task(str(scratch), f"s{i}") for i in range(4)]
        parallel.run_local(tasks, _starts_sandboxes_until_stopped, 2, lambda task, result: None, str(scratch),
                           task_seconds=random.uniform(0.3, 1.2))
        assert live_pids("bwrap", mentioning=scratch) == [], "a sandbox outlived the run"
