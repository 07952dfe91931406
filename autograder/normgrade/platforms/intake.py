"""
Submissions in from an LMS: the bulk-download archive of Canvas (or another LMS), as a class folder.

Canvas's "Download Submissions" writes one zip with a flat file per uploaded
file of each student's latest submission, named `<name>_[LATE_]<user
id>_<file id>_<file name>` (the file name as the student uploaded it, with
"-1", "-2" before the extension where Canvas renamed a file uploaded again).
A name that parses two ways (a student's name holding "_<digits>_<digits>_")
is refused, never guessed. Another LMS is read with its own pattern
(`--name-pattern`): a regular expression with the groups `lms_id` and
`file`, and optionally `late`. A roster maps
LMS ids to the course's student ids: Canvas's gradebook export
(normgrade.platforms.canvas; its `ID` column is the user id in the file names), or a
CSV with the columns `lms_id` and `student_id`.

Students upload `layers.py` and the notebooks, or a zip of them (the release
folder, or the files alone). Each graded file is found by its name (after
Canvas's "-N") and written, from the bytes read out of the archive, to the
one place it has in a submission: the notebooks at the top, layers.py under
normlab/. No name from an archive is ever used as a path, so `..`, absolute
paths, links, odd encodings and names that differ only in case cannot write
anywhere else; every other file is left out. Entries are read with bounds
(MAX_ENTRIES, the graded files' own size limits, MAX_INNER_ZIP_BYTES for a
student's zip, one level of zips), so a zip bomb costs at most those bytes;
an archive's entries are counted in its central directory, whatever its end
record says, before zipfile parses any (directory_problem).

The archive is opened once, read only, and never changed; the submissions
are written under the course's staging area (normgrade/intake/<run>/,
removed when the run ends) and graded from there like a class folder. Every entry is graded
or listed with the reason: an unknown, ambiguous or duplicated student is
never guessed.
"""
import csv
import errno
import io
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from normgrade.platforms import canvas
from normgrade import files
from normgrade.course import PLAIN_ID

CANVAS_PATTERN = r"(?P<name>.*?)_(?:(?P<late>LATE|late)_)?(?P<lms_id>\d+)_(?P<file_id>\d+)_(?P<file>.+)"
# The same with the name taken as long as it can be: where the two parse a file name differently, it is ambiguous.
CANVAS_GREEDY = re.compile(CANVAS_PATTERN.replace("(?P<name>.*?)", "(?P<name>.*)"), re.S)
MAX_ENTRIES = 20000  # entries of one archive (a class of 2,000 uploading 10 files each)
MAX_INNER_ENTRIES = 2000  # entries of a student's own zip
MAX_INNER_ZIP_BYTES = 64 << 20
MAX_ZIPS = 4  # zips one student may hand in at once (each is read, up to MAX_INNER_ZIP_BYTES)
# Canvas's "-1" for a file uploaded again; a browser's " (1)" for a file downloaded again
RENAMED = re.compile(r"(?:-\d+| \(\d+\))(?=\.[^.]+$)")


class ArchiveError(ValueError):
    """An archive or roster that cannot be read at all, with what is wrong."""


@dataclass
class Intake:
    """What an archive gave: the class folder written, and what was left out or is worth a note."""
    folder: Path
    skipped: list = field(default_factory=list)  # [(archive:entry or student, why)]
    notes: dict = field(default_factory=dict)  # student id -> [note]


def roster_names(path, id_column="SIS Login ID"):
    """{course student id: "Last, First"} from a Canvas gradebook export; {} from a CSV of lms_id,student_id."""
    try:
        roster = canvas.read_roster(path, id_column)
    except canvas.RosterError:
        return {}
    return {row[roster.id_column]: row["Student"] for row in roster.students}


def read_mapping(path, id_column="SIS Login ID"):
    """{LMS id: course student id} from a roster: Canvas's gradebook export, or a CSV of lms_id,student_id."""
    path = Path(path)
    try:
        head = path.read_bytes()[:4096].decode("utf-8-sig", errors="replace")
    except OSError as err:
        raise ArchiveError(f"{path}: cannot read the roster ({err.strerror})") from None
    header = next(csv.reader(io.StringIO(head)), [])
    if {"lms_id", "student_id"} <= {name.strip() for name in header}:
        text = path.read_bytes().decode("utf-8-sig")
        mapping, problems = {}, []
        for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            lms_id, student = (row.get("lms_id") or "").strip(), (row.get("student_id") or "").strip()
            if not lms_id or not student:
                problems.append(f"line {number}: lms_id and student_id are both needed")
            elif lms_id in mapping:
                problems.append(f"line {number}: lms_id {lms_id!r} is also on an earlier line")
            else:
                mapping[lms_id] = student
        taken = {}
        for lms_id, student in mapping.items():
            if student in taken:
                problems.append(f"student_id {student!r} has two lms_ids ({taken[student]}, {lms_id})")
            taken[student] = lms_id
        if problems:
            raise ArchiveError(f"{path}: " + "; ".join(problems[:20]))
        return mapping
    roster = canvas.read_roster(path, id_column)
    return {row["ID"]: row[roster.id_column] for row in roster.students}


def check_pattern(pattern):
    """The compiled file-name pattern of an LMS; ValueError when it is no regular expression or lacks a group."""
    try:
        regex = re.compile(pattern, re.S)
    except re.error as err:
        raise ValueError(f"--name-pattern {pattern!r} is not a regular expression: {err}") from None
    missing = [group for group in ("lms_id", "file") if group not in regex.groupindex]
    if missing:
        raise ValueError(f"--name-pattern needs the named groups (?P<lms_id>...) and (?P<file>...); "
                         f"{pattern!r} has no {', '.join(missing)}")
    return regex


def _is_link(info):
    return stat.S_ISLNK(info.external_attr >> 16)


def _read(archive, info, limit):
    """The bytes of an entry, or (None, why): at most `limit` bytes are ever read."""
    if info.flag_bits & 0x1:
        return None, "encrypted, not read"
    if _is_link(info):
        return None, "a link, not read"
    if info.file_size > limit:
        return None, f"larger than {limit >> 20} MiB, not read"
    try:
        with archive.open(info) as f:
            data = f.read(limit + 1)
    except Exception as err:  # noqa: BLE001 - a corrupt stream raises zlib.error, LZMAError, ...: one file, not the run
        return None, f"unreadable ({type(err).__name__}: {err})"
    if len(data) > limit:  # the header lied about the size
        return None, f"larger than {limit >> 20} MiB, not read"
    return data, None


def graded_name(name, targets, renamed=False):
    """
    The graded file a base name is, or None: names match case-insensitively;
    with renamed, after Canvas's "-N" or a browser's " (N)" (only files
    uploaded as they are: inside a student's folder or zip, layers-2.py is a
    backup, not layers.py).
    """
    plain = (RENAMED.sub("", name) if renamed else name).lower()
    return next((target for target in targets if target.lower() == plain), None)


def files_in_zip(data, targets, limits):
    """({target: bytes}, problems) from a student's own zip: the graded files found by their base names."""
    found, where, problems = {}, {}, []
    why = directory_problem(lambda offset, size: data[offset:offset + size], len(data), MAX_INNER_ENTRIES)
    if why:  # before zipfile parses a directory of millions
        return {}, [why]
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
        entries = inner.infolist()
    except Exception as err:  # noqa: BLE001 - a corrupt directory: this zip, not the run
        return {}, [f"not a readable zip ({err})"]
    if len(entries) > MAX_INNER_ENTRIES:
        return {}, [f"{len(entries)} entries, more than {MAX_INNER_ENTRIES}: not read"]
    for info in entries:
        parts = re.split(r"[\\/]+", info.filename)
        if info.is_dir() or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue  # folders, checkpoints, macOS's resource forks
        target = graded_name(parts[-1], targets)
        if target is None:
            continue
        content, why = _read(inner, info, limits[target])
        if content is None:
            problems.append(f"{info.filename}: {why}")
        else:
            _take(found, where, problems, target, info.filename, content)
    return found, problems


def _take(found, where, problems, target, source, data):
    """Keep `data` (read from `source`) as the graded file `target`; a second candidate is a problem, never a guess."""
    if target in where:
        problems.append(f"two files could be {target} ({where[target]}, {source}): which one is graded is not "
                        "guessed")
    else:
        where[target], found[target] = source, data


DIRECTORY_RECORD = 46  # the fixed part of a central directory record: zipfile parses one per entry
DIRECTORY_BYTES_PER_ENTRY = 1024  # a record and its name: far more than any upload's paths need


def _number(data, at, size):
    return int.from_bytes(data[at:at + size], "little")


def directory_problem(read_at, total, max_entries):
    """
    Why a zip of `total` bytes cannot be read within max_entries entries, or
    None: its central directory is found from its end records (zip64 too) and
    its records are counted, at most max_entries + 1 of them, before zipfile
    parses any, whatever count the end record declares (a directory of 1.4
    million records under an end record that says 1 cost 25 s and 581 MiB in
    zipfile). read_at(offset, size) reads the zip's bytes; at most the last
    64 KiB and max_entries * DIRECTORY_BYTES_PER_ENTRY bytes are read.
    """
    tail_size = min(total, (1 << 16) + 22)
    tail = read_at(total - tail_size, tail_size)
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or len(tail) < found + 22:
        return "not a zip archive (no end of central directory)"
    end = total - tail_size + found  # the central directory ends where zipfile looks for it
    declared, size = _number(tail, found + 10, 2), _number(tail, found + 12, 4)
    if end >= 76 and read_at(end - 20, 4) == b"PK\x06\x07":  # zip64: its own end record right before
        end -= 76
        record = read_at(end, 56)
        if record[:4] != b"PK\x06\x06":
            return "not a readable zip (its zip64 end record is missing)"
        declared, size = _number(record, 32, 8), _number(record, 40, 8)
    if declared > max_entries:
        return f"{declared} entries, more than {max_entries} allowed: not read"
    budget = max_entries * DIRECTORY_BYTES_PER_ENTRY
    if size > budget:
        return f"a central directory of {size} bytes, more than {budget} for {max_entries} entries: not read"
    if size > end:
        return "not a readable zip (its central directory lies outside the file)"
    directory, at, count = read_at(end - size, size), 0, 0
    while at + DIRECTORY_RECORD <= len(directory) and directory[at:at + 4] == b"PK\x01\x02":
        count += 1
        if count > max_entries:
            return (f"more than {max_entries} entries in its central directory, though its end record says "
                    f"{declared}: not read")
        at += DIRECTORY_RECORD + sum(_number(directory, at + offset, 2) for offset in (28, 30, 32))
    return None


def graded_limits(targets):
    """{graded file: its size limit}: a notebook 16 MiB, layers.py 1 MiB (as `normgrade grade` reads them)."""
    return {t: 16 << 20 if t.endswith(".ipynb") else 1 << 20 for t in targets}


def files_in_folder(folder, targets, limits, max_files=MAX_INNER_ENTRIES, where=None):
    """
    ({target: bytes}, problems) from an upload folder of any shape (the
    release folder, loose files, zips of either): each graded file found by
    its base name anywhere below `folder`, read once without following a
    link; a zip is read as files_in_zip. A file uploaded loose (at the top)
    may carry an LMS's or a browser's copy number (`layers (1).py`). Two
    candidates for one graded file are a problem, never a guess. `where`, a
    dict if given, gets {target: the path it was read from}.
    """
    found, problems, seen, zips = {}, [], 0, 0
    where = {} if where is None else where
    root = Path(folder)
    for current, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(names):
            seen += 1
            if seen > max_files:
                return {}, [f"more than {max_files} files: not read"]
            path = Path(current) / name
            shown = str(path.relative_to(root))
            target = graded_name(name, targets, renamed=Path(current) == root)
            if name.startswith(".") or (target is None and not name.lower().endswith(".zip")):
                continue
            if target is None:
                zips += 1
                if zips > MAX_ZIPS:
                    problems.append(f"{shown}: more than {MAX_ZIPS} zips, not read")
                    continue
            data, problem = files.read_below(root, path, limits.get(target, MAX_INNER_ZIP_BYTES))
            if data is None:
                problems.append(f"{shown}: {problem.value}, not read")
                continue
            inner = {target: data} if target else files_in_zip(data, targets, limits)
            if not target:
                inner, inner_problems = inner
                problems += [f"{shown}: {p}" for p in inner_problems]
            for graded, content in inner.items():
                _take(found, where, problems, graded, shown, content)
    return found, problems


def read_archive(path, mapping, release, dest, pattern=CANVAS_PATTERN, limits=None):
    """
    Write the submissions in the LMS archive at `path` into the class folder
    `dest` (one folder per student id, as `release` lays it out: the
    notebooks, normlab/layers.py), using `mapping` {LMS id: student id};
    return the Intake. ArchiveError where the archive cannot be read at all.
    """
    path, release, dest = Path(path), Path(release), Path(dest)
    notebooks = sorted(p.name for p in release.glob("*.ipynb"))
    targets = notebooks + ["layers.py"]
    limits = {**graded_limits(targets), **(limits or {})}
    regex = check_pattern(pattern) if isinstance(pattern, str) else pattern
    intake = Intake(dest)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        why = "a link, not followed: give the archive itself" if err.errno == errno.ELOOP else err.strerror
        raise ArchiveError(f"{path}: {why}") from None
    try:
        with os.fdopen(fd, "rb") as f:
            fd = None
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ArchiveError(f"{path}: not a regular file")

            def read_at(offset, size):
                f.seek(offset)
                return f.read(size)

            why = directory_problem(read_at, info.st_size, MAX_ENTRIES)
            if why:
                raise ArchiveError(f"{path}: {why}")
            try:
                archive = zipfile.ZipFile(f)
                entries = archive.infolist()
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
                raise ArchiveError(f"{path}: not a zip archive ({err})") from None
            if len(entries) > MAX_ENTRIES:
                raise ArchiveError(f"{path}: {len(entries)} entries, more than {MAX_ENTRIES}: not read")
            files = _by_student(path, entries, regex, mapping, intake)
            for student, (names, late) in files.items():
                _write_student(path, archive, student, names, late, targets, limits, intake)
    finally:
        if fd is not None:
            os.close(fd)
    return intake


def _by_student(path, entries, regex, mapping, intake):
    """{student id: ([(target or zip, entry)], late)} from the archive's entries; the rest goes to intake.skipped."""
    by_student = {}
    for info in entries:
        where = f"{path.name}:{info.filename}"
        if info.is_dir():
            continue
        match = regex.fullmatch(info.filename)
        if not match or "/" in info.filename or "\\" in info.filename:
            intake.skipped.append((where, "not named as the LMS names a submitted file (see --name-pattern); "
                                          "not read"))
            continue
        lms_id = match.group("lms_id")
        if regex.pattern == CANVAS_PATTERN:
            other = CANVAS_GREEDY.fullmatch(info.filename)
            if other and other.group("lms_id") != lms_id:
                intake.skipped.append((where, f"parses as LMS id {lms_id} and as {other.group('lms_id')} (a name "
                                              "with _<digits>_<digits>_ in it): which student it is is not guessed; "
                                              "not read"))
                continue
        student = mapping.get(lms_id)
        if student is None:
            intake.skipped.append((where, f"LMS id {lms_id} is not in the roster: not graded (add the student to "
                                          "the roster, or check the export is this course's)"))
            continue
        if not PLAIN_ID.fullmatch(student):  # it names a folder: never "..", a slash or a space
            intake.skipped.append((where, f"the roster's student id {student!r} for LMS id {lms_id} is not a plain "
                                          "id (letters, digits, _ . @ -): not graded"))
            continue
        late = bool(match.groupdict().get("late"))
        names, was_late = by_student.get(student, ([], False))
        names.append((match.group("file"), info))
        by_student[student] = (names, was_late or late)
    return by_student


def _write_student(path, archive, student, names, late, targets, limits, intake):
    """Write one student's graded files into intake.folder / student, or list why not."""
    found, where, problems, zips = {}, {}, [], 0
    for name, info in names:
        target = graded_name(name, targets, renamed=True)
        if target is None and name.lower().endswith(".zip"):
            zips += 1
            if zips > MAX_ZIPS:
                problems.append(f"{info.filename}: more than {MAX_ZIPS} zips, not read")
                continue
            data, why = _read(archive, info, MAX_INNER_ZIP_BYTES)
            if data is None:
                problems.append(f"{info.filename}: {why}")
                continue
            inner, inner_problems = files_in_zip(data, targets, limits)
            problems += [f"{info.filename}: {p}" for p in inner_problems]
            for inner_target, content in inner.items():
                _take(found, where, problems, inner_target, info.filename, content)
            continue
        if target is None:
            intake.skipped.append((f"{path.name}:{info.filename}", "not a graded file (the notebooks, layers.py, "
                                                                    "or a zip of them); not read"))
            continue
        data, why = _read(archive, info, limits[target])
        if data is None:
            problems.append(f"{info.filename}: {why}")
            continue
        _take(found, where, problems, target, info.filename, data)
    if problems:
        intake.skipped.append((f"{path.name}: student {student}", "; ".join(problems) + "; not graded"))
        return
    if not found:
        intake.skipped.append((f"{path.name}: student {student}", "no notebook and no layers.py; not graded"))
        return
    folder = intake.folder / student
    (folder / "normlab").mkdir(parents=True)
    for target, data in found.items():
        (folder / ("normlab/layers.py" if target == "layers.py" else target)).write_bytes(data)
    notes = [f"from {path.name}: {', '.join(sorted(set(where.values())))}"]
    if late:
        notes.append("the LMS marked this submission LATE (its time is not in the archive: no late penalty "
                     "here; apply the LMS's own late policy there)")
    intake.notes[student] = notes
