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
    copy_tree(folder_fd, dest, ...)     -> a whole folder copied, or Refused (a link, not its owner's, too large)
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


class Refused(Exception):
    """A tree was not copied: `path` (relative to its top, "." for the top) and why (a predicate: "is a link")."""

    def __init__(self, path, why):
        super().__init__(f"{path}: {why}")
        self.path, self.why = str(path), why


def owner_name(uid):
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def copy_tree(folder_fd, dest, *, owner=None, keep=lambda path, size: True, max_bytes, max_entries, max_depth=16):
    """
    Copy the folder open at `folder_fd` into the new folder `dest`, reading
    every entry by descriptor, never following a link. Only regular files and
    folders are copied; a link, a pipe, a socket or a device anywhere below
    refuses the whole tree, and so does an entry (the top included) not owned
    by uid `owner` when it is given. `keep(path, size)` may leave out a file
    (size in bytes) or a folder (size None) by its relative PurePosixPath; a
    left-out entry is neither opened nor checked. More than `max_entries`
    entries, `max_bytes` bytes or `max_depth` folders deep refuses too, as
    soon as it is seen. Raises Refused; `dest` is then left partly written
    for the caller to remove.
    """
    from pathlib import PurePosixPath

    budget = {"entries": max_entries, "bytes": max_bytes}
    _check_entry(os.fstat(folder_fd), PurePosixPath("."), owner, stat.S_ISDIR)
    os.mkdir(dest, 0o700)
    _copy_folder(folder_fd, Path(dest), PurePosixPath(), owner, keep, budget, max_depth)
    os.chmod(dest, 0o755)


_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISREG, "a regular file"))


def _kind(mode):
    return next((name for test, name in _KINDS if test(mode)), "not a file")


def _check_entry(info, path, owner, wanted):
    if not wanted(info.st_mode):
        raise Refused(path, f"is {_kind(info.st_mode)} (only regular files and folders are taken)")
    if owner is not None and info.st_uid != owner:
        raise Refused(path, f"belongs to {owner_name(info.st_uid)}, not {owner_name(owner)}")


def _copy_folder(fd, dest, path, owner, keep, budget, depth):
    if depth <= 0:
        raise Refused(path, "is nested too deep")
    with os.scandir(fd) as entries:
        names = []
        for entry in entries:
            budget["entries"] -= 1
            if budget["entries"] < 0:
                raise Refused(path, "holds too many entries")
            names.append(entry.name)
    for name in sorted(names):
        here = path / name
        seen = os.stat(name, dir_fd=fd, follow_symlinks=False)  # refuse links and the like without opening them
        if stat.S_ISDIR(seen.st_mode):
            if not keep(here, None):
                continue
            _check_entry(seen, here, owner, stat.S_ISDIR)
            child = os.open(name, _FOLDER, dir_fd=fd)
            try:
                _check_entry(_same(os.fstat(child), seen, here), here, owner, stat.S_ISDIR)
                os.mkdir(dest / name, 0o700)
                _copy_folder(child, dest / name, here, owner, keep, budget, depth - 1)
                os.chmod(dest / name, 0o755)
            finally:
                os.close(child)
            continue
        if not keep(here, seen.st_size if stat.S_ISREG(seen.st_mode) else 0):
            continue
        _check_entry(seen, here, owner, stat.S_ISREG)
        _copy_file(fd, name, dest / name, here, seen, owner, budget)


def _same(info, seen, path):
    """The descriptor's fstat, if it is the entry that was looked at (else it was swapped in between)."""
    if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        raise Refused(path, "changed while it was being copied")
    return info


def _copy_file(fd, name, target, path, seen, owner, budget):
    try:
        source = os.open(name, _FILE, dir_fd=fd)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO):
            raise Refused(path, "changed into a link or a socket while it was being copied") from None
        raise
    try:
        info = _same(os.fstat(source), seen, path)
        _check_entry(info, path, owner, stat.S_ISREG)
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(out, "wb") as copy:
            while chunk := os.read(source, 1 << 20):
                budget["bytes"] -= len(chunk)
                if budget["bytes"] < 0:
                    raise Refused(path, "takes the folder over its size limit")
                copy.write(chunk)
            copy.flush()
            os.fchmod(out, 0o644)
            os.utime(out, ns=(info.st_atime_ns, info.st_mtime_ns))
    finally:
        os.close(source)
