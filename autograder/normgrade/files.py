"""
Reading a student's files: each opened once, by descriptor, without following links or blocking.

A submission folder may be one the student can still change while it is
graded (a home folder on a JupyterHub). A check by name followed by an open by
name can be raced: a file swapped for a link to a classmate's between the two
(renameat2 with RENAME_EXCHANGE, in a loop) gets the classmate's work graded.
So every folder on the way is opened with O_NOFOLLOW | O_DIRECTORY relative
to the last one (openat), every file with O_NOFOLLOW | O_NONBLOCK (a named
pipe cannot block), and what is checked (fstat: a regular file, its size) is
the descriptor that is then read. A link anywhere below the folder the
instructor named is refused, never followed.

    open_folder(root, parts)            -> descriptor of root/parts[0]/..., no link followed below root
    read_file(folder_fd, parts, limit)  -> (bytes, None) or (None, Problem)
    read_below(root, path, limit)       -> the same for the file `path` inside folder `root`
"""
import enum
import errno
import os
import stat
from pathlib import Path

_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class Problem(enum.Enum):
    """Why a file was not read."""

    MISSING = "missing"
    NOT_REGULAR = "not a regular file (a link, a folder or a pipe)"
    TOO_LARGE = "too large"


class LinkedFolder(OSError):
    """A folder on the way is a link (or not a folder): not followed."""


def open_folder(root, parts=()):
    """
    A descriptor of the folder root/parts...: root is opened as named (the
    instructor gave it), every part below it without following a link.
    Raises LinkedFolder for a link or a non-folder below root, FileNotFoundError.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for part in parts:
        fd = _enter(fd, part)  # closes the folder it entered from, also when it raises
    return fd


def _enter(fd, name):
    """The descriptor of folder `name` in folder `fd` (which is closed), no link followed."""
    try:
        return os.open(name, _FOLDER, dir_fd=fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LinkedFolder(err.errno, f"{name} is a link or not a folder: not followed") from None
        raise
    finally:
        os.close(fd)


def read_file(folder_fd, parts, limit):
    """
    (bytes, None) of the regular file folder_fd/parts... of at most `limit`
    bytes, or (None, Problem). Nothing is followed or waited for: a link,
    a pipe, a device or a folder is NOT_REGULAR; the size checked is the size
    of the descriptor read.
    """
    fd = os.dup(folder_fd)
    try:
        for part in parts[:-1]:
            fd, entered = None, fd
            fd = _enter(entered, part)  # closes `entered`
        file_fd = os.open(parts[-1], _FILE, dir_fd=fd)
    except FileNotFoundError:
        return None, Problem.MISSING
    except LinkedFolder:
        return None, Problem.NOT_REGULAR
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR):
            return None, Problem.NOT_REGULAR
        raise
    finally:
        if fd is not None:
            os.close(fd)
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode):  # a folder opens read-only too (and os.fdopen would refuse it)
        os.close(file_fd)
        return None, Problem.NOT_REGULAR
    with os.fdopen(file_fd, "rb", buffering=0) as f:
        if info.st_size > limit:
            return None, Problem.TOO_LARGE
        data = f.read(limit + 1)  # the file may grow after fstat: what is read is what counts
    if len(data) > limit:
        return None, Problem.TOO_LARGE
    return data, None


def read_below(root, path, limit):
    """read_file for `path`, a file inside folder `root` (no link followed below root)."""
    parts = Path(path).relative_to(root).parts
    try:
        folder = open_folder(root)
    except FileNotFoundError:
        return None, Problem.MISSING
    try:
        return read_file(folder, parts, limit)
    finally:
        os.close(folder)


def case_insensitive(folder):
    """Whether the file system of `folder` takes Ann and ann for one name (a probe file is made and removed)."""
    import tempfile

    handle, probe = tempfile.mkstemp(prefix="CaseProbe-", dir=folder)
    os.close(handle)
    try:
        head, name = os.path.split(probe)
        return os.path.exists(os.path.join(head, name.swapcase()))
    finally:
        os.unlink(probe)
