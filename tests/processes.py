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
