"""
Running per-submission grading tasks: in local child processes, or on a Dask cluster.

Both take the same tasks and the same picklable function (normgrade.grade.grading.
grade_submission), and call on_result(task, result) in this process as each
ends. The function itself keeps the ledger (claims, attempts, outcome), so
whichever runner ran it, and however often, the gradebook holds one grading
per submission.

Local (run_local): one forked child per task, at most `workers` at a time.
A fresh child per submission costs a fork (this process has imported
nbgrader and NumPy already) and makes a crash attributable: a child that
dies without a result is started again, and the task's own attempt count
stops it after the second death. Children die with this process
(PR_SET_PDEATHSIG) and ignore Ctrl-C; on Ctrl-C here they get SIGTERM, remove
their temporary folder and exit at once (SIGKILL after a grace period). A
sandboxed worker ends as soon as the process that started it is gone
(worker.exit_with_the_grader). What a dying child could not kill (a bwrap it
was starting when the signal came, which bubblewrap 0.8 can leave waiting for
ever) is handed to this process, the run's child subreaper
(PR_SET_CHILD_SUBREAPER), which kills it as soon as that child has ended: so
nothing outlives the run, whenever the run is stopped.

Dask (run_dask): the tasks are submitted to an existing distributed
scheduler; a task whose worker is lost is rerun by Dask on another.
"""
import ctypes
import gc
import math
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections import deque

from normgrade.run import sandbox

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
_prctl = ctypes.CDLL(None, use_errno=True).prctl
GRACE_SECONDS = 10
MAX_STARTS = 3  # the task gives up by itself on its third start after two deaths


class Interrupted(Exception):
    """Ctrl-C stopped the run; the tasks not finished are in `unfinished`."""

    def __init__(self, unfinished):
        super().__init__(f"interrupted with {len(unfinished)} submissions not graded")
        self.unfinished = unfinished


def crash_result(task, why):
    """The result of a task whose process died or raised without giving one."""
    return {"path": task.given, "student": task.student, "status": "failed", "error": why,
            "score": 0.0, "max_score": 0.0, "tests": [], "notes": [], "seconds": 0.0}


def _child(function, task, parent_pid, scratch_root, connection):
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    # Everything this child puts in temporary folders (the sandboxes' private folders) goes in its own,
    # under scratch_root, which the next run empties if this one is killed.
    tempfile.tempdir = scratch = tempfile.mkdtemp(prefix=f"{task.student[:40]}-", dir=scratch_root)

    def stop(*_):
        # Not an exception: nbgrader would catch it and record an interrupted grading as failed. The
        # ledger keeps the submission `running`, for the next run.
        sandbox.kill_all()
        shutil.rmtree(scratch, ignore_errors=True)
        os._exit(143)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop)
    try:
        result = function(task)
    except Exception:
        result = crash_result(task, "grading raised: " + traceback.format_exc(limit=-3).strip()[-2000:])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    connection.send(result)
    connection.close()


def run_local(tasks, function, workers, on_result, scratch_root=None, task_seconds=None):
    """
    Run function(task) for every task in forked children, `workers` at a time
    (see the module docstring); each child's temporary files go in a folder
    of its own under scratch_root (default: the system's temporary folder).
    A child still running after task_seconds (None: no limit) is stopped
    (SIGTERM: it kills its sandboxes and removes its folder; SIGKILL after a
    grace period) and its task reported failed, with "stopped": True.
    """
    context = multiprocessing.get_context("fork")
    pending = deque(tasks)
    starts = {}
    running = {}  # receiving connection -> (process, task)
    deadlines = {}  # receiving connection -> time.monotonic() by which it must have answered
    # What this process holds now is kept out of the children's garbage collections, which would otherwise touch
    # (and so copy) every page of it in each child: 14 % of a class's time, measured on 24 submissions, 2 workers.
    gc.collect()
    gc.freeze()
    ours = _children()  # what this process had started before the run is not a stray
    was_subreaper = ctypes.c_int(0)
    _prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was_subreaper))
    _prctl(PR_SET_CHILD_SUBREAPER, 1)  # what a child leaves behind comes here, not to init
    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.popleft()
                starts[task.student] = starts.get(task.student, 0) + 1
                receive, send = context.Pipe(duplex=False)
                process = context.Process(target=_child, args=(function, task, os.getpid(), scratch_root, send),
                                          name=f"normgrade-{task.student}")
                process.start()
                send.close()
                running[receive] = (process, task)
                deadlines[receive] = time.monotonic() + task_seconds if task_seconds else math.inf
            wait = min(deadlines.values()) - time.monotonic()
            ready = multiprocessing.connection.wait(list(running), timeout=None if wait == math.inf else max(wait, 0))
            late = [r for r in running if r not in ready and deadlines[r] <= time.monotonic()]
            for receive in late:
                process, task = running[receive]
                _stop([process])
                on_result(task, dict(crash_result(task, f"grading took longer than {task_seconds:g} s: stopped, "
                                                        "with its sandboxes"), stopped=True))
                del running[receive], deadlines[receive]
                receive.close()
            for receive in ready:
                process, task = running[receive]  # stays there until handled: Ctrl-C may come at any line
                try:
                    result = receive.recv()
                except EOFError:  # it died without a result
                    result = None
                process.join()
                if result is not None:
                    on_result(task, result)
                elif starts[task.student] < MAX_STARTS:
                    pending.appendleft(task)
                else:
                    on_result(task, crash_result(task, f"the grading process died {starts[task.student]} times "
                                                       f"(last exit code {process.exitcode})"))
                del running[receive], deadlines[receive]
                receive.close()
            if late or ready:  # what the children that ended left
                _end_strays(ours | {process.pid for process, _ in running.values()})
    except KeyboardInterrupt:
        _stop([process for process, _ in running.values()])
        _end_strays(ours)
        unfinished = list(pending)
        for receive, (_, task) in running.items():  # a child may have finished while it was being stopped
            try:
                result = receive.recv() if receive.poll() else None
            except Exception:  # nothing, or half a message that Ctrl-C interrupted
                result = None
            if result is None:
                unfinished.append(task)
            else:
                on_result(task, result)
        raise Interrupted(unfinished) from None
    finally:
        gc.unfreeze()  # this process collects its own garbage again
        _prctl(PR_SET_CHILD_SUBREAPER, was_subreaper.value)


def _children():
    """The PIDs of this process's children, as the kernel links them."""
    me = os.getpid()
    return {pid for pid, parent in sandbox.parents().items() if parent == me}


def _end_strays(keep):
    """
    Kill and reap every child of this process but `keep`: what ended grading
    children left behind, handed to this process as their subreaper. Killing
    one hands its own children here in turn (a bwrap's sandbox process), so
    until none is left; a process that does not die within the grace period
    is left (the next run's kill_orphans looks again).
    """
    deadline = time.monotonic() + GRACE_SECONDS
    strays = _children() - keep
    while strays and time.monotonic() < deadline:
        for pid in strays:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in strays:
            while time.monotonic() < deadline:
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        break
                except ChildProcessError:
                    break
                time.sleep(0.01)
        strays = _children() - keep


def _stop(processes):
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(GRACE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def run_dask(tasks, function, address, on_result):
    """Run function(task) for every task on the Dask scheduler at `address`."""
    from distributed import Client, as_completed

    with Client(address, timeout="30s") as client:
        futures = {client.submit(function, task, key=f"normgrade-{task.run_id}-{task.student}", pure=False): task
                   for task in tasks}
        done = set()
        try:
            for future in as_completed(futures):
                task = futures[future]
                try:
                    result = future.result()
                except Exception as err:  # KilledWorker after repeated worker deaths, or a task's own error
                    result = crash_result(task, f"grading on the cluster failed: {type(err).__name__}: {err}"[:2000])
                done.add(future)
                on_result(task, result)
        except KeyboardInterrupt:
            unfinished = [futures[f] for f in futures if f not in done]
            client.cancel([f for f in futures if f not in done])
            raise Interrupted(unfinished) from None
