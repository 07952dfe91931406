"""Processes as the leftover checks see them (tests/test_hostile.py, tests/test_class_run.py)."""
from pathlib import Path


def live_pids(name=None, mentioning=None):
    """
    Sorted PIDs of the live processes called `name` (/proc/<pid>/comm; any
    name if None) and, if `mentioning` is given, whose command line contains
    that text (a test's
    own folder: the tests run in parallel, so a test looks only at what it
    started). A zombie, dead but not yet reaped by init (this machine's init
    reaps slowly), is not counted.
    """
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and (name is None or (entry / "comm").read_text().strip() == name)
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
                    and (mentioning is None or str(mentioning).encode() in (entry / "cmdline").read_bytes())):
                found.append(int(entry.name))
        except (OSError, IndexError):  # gone while being read
            pass
    return sorted(found)


def started_sandboxes(mentioning):
    """
    PIDs of the bwrap processes mentioning `mentioning` whose sandbox has
    started its program (a child that is no longer bwrap itself): a kill
    there lands in a running worker, not in bubblewrap's own setup, where
    bubblewrap 0.8 can leave its sandbox process waiting (sandbox.kill_orphans).
    """
    started = []
    for pid in live_pids("bwrap", mentioning=mentioning):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if any(Path(f"/proc/{child}/comm").read_text().strip() != "bwrap" for child in children):
                started.append(pid)
        except OSError:  # gone while being read
            pass
    return started
