"""
`nbgrader collect` for the course: a student's hand-in is taken only from what that student handed in.

nbgrader's exchange keeps every hand-in in one folder, inbound/, that every
student can write to, each as `<student>+<assignment>+<time>+<random>/`.
nbgrader's own collect believes the name (a student who writes
`inbound/<classmate>+normalization+<later time>+x/` replaces the classmate's
submission; its owner check only logs "cheating attempt?"), copies with
shutil, which follows links (a student's folder of links to a classmate's
files collects the classmate's work under her name), and stops the whole
collect on one name it cannot parse.

OwnedCollect, which the course's nbgrader_config.py plugs into nbgrader
(`c.ExchangeFactory.collect`), so plain `nbgrader collect` uses it:

- takes an inbound folder only when it is a folder (not a link) owned by the
  Unix user its name claims, and so is everything in it (files and folders);
- copies regular files and folders only, each opened by descriptor without
  following a link (normgrade.files.copy_tree); a link, a pipe, a socket or a
  device anywhere inside refuses the folder;
- refuses one folder at a time, logging who it claims to be, whose it is and
  why (an [ERROR] line), and then takes that student's next submission in
  nbgrader's order of preference, as if the refused one had not been there;
- copies into a fresh folder beside the collected one and swaps it in only
  when the copy is whole, so a refusal or a crash leaves what was collected
  before as it was.

nbgrader's options keep their meaning: --update, --before-duedate,
--student, CourseDirectory.ignore / include / max_file_size / max_dir_size.
CollectApp.check_owner = False (for a hub where every student is the same
Unix user, so owners cannot tell them apart) turns off the owner check only,
and says so in the log.
"""
import glob
import os
import pwd
import shutil
import stat
import tempfile
from fnmatch import fnmatch
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc

from normgrade.course import PLAIN_ID
from normgrade.files import Refused, copy_tree

MAX_ENTRIES = 10_000  # files and folders in one hand-in; nbgrader submit writes a few dozen


class OwnedCollect(ExchangeCollect):
    """nbgrader's collect, taking each student's submission only from that student's own files."""

    def init_src(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.inbound_path = os.path.join(self.root, self.coursedir.course_id, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        mode = os.stat(self.inbound_path).st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            self.log.warning(
                "%s is writable by every user without the sticky bit: a student who knows the name of a "
                "classmate's hand-in can rename or remove it. Run: chmod +t %s", self.inbound_path, self.inbound_path)
        if not self.check_owner:
            self.log.warning("CollectApp.check_owner is off: a hand-in is taken for the student its folder's name "
                             "claims, whoever made it (links and special files are still refused)")
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(self.coursedir.assignment_id).duedate
            except MissingEntry:
                self.duedate = None

        student = self.coursedir.student_id or "*"
        pattern = os.path.join(glob.escape(self.inbound_path), f"{student}+{glob.escape(self.coursedir.assignment_id)}+*")
        self.candidates = {}  # student id -> [(time, folder name)], the one nbgrader would collect first
        for folder in sorted(glob.glob(pattern)):
            record = self._record(os.path.basename(folder))
            if record:
                self.candidates.setdefault(record[0], []).append(record[1:])
        for student, records in self.candidates.items():
            records.sort(reverse=True)
            if self.before_duedate and self.duedate is not None:  # the newest before the due date, else the newest
                records.sort(key=lambda record: record[0] > self.duedate)

    def _record(self, name):
        """(student, time, name) of an inbound folder, or None (refused, and logged) for a name nbgrader submit never writes."""
        parts = name.rsplit("+", 3)
        student = parts[0]
        if len(parts) < 3 or not PLAIN_ID.fullmatch(student):
            self._refuse(name, student, "the name is not <student>+<assignment>+<time>[+<random>]")
            return None
        try:
            when = parse_utc(parts[2])
        except (ValueError, OverflowError):
            self._refuse(name, student, f"{parts[2]!r} is not a time")
            return None
        return student, when, name

    def _refuse(self, name, student, why):
        self.log.error("Refused inbound/%s (a hand-in for %s): %s. Nothing of it was collected.", name, student, why)

    def copy_files(self):
        if not self.candidates:
            self.log.warning("No submissions of '%s' for course '%s' to collect", self.coursedir.assignment_id,
                             self.coursedir.course_id)
        for student, records in sorted(self.candidates.items()):
            dest = Path(self.coursedir.format_path(self.coursedir.submitted_directory, student,
                                                   self.coursedir.assignment_id))
            for when, name in records:
                if not self._wanted(dest, when):
                    break
                try:
                    self._collect(name, student, dest)
                except Refused as refusal:
                    where = "the folder" if refusal.path == "." else refusal.path
                    self._refuse(name, student, f"{where} {refusal.why}")
                    continue
                break
            else:
                self.log.error("Nothing was collected for %s: every hand-in in that name was refused", student)

    def _wanted(self, dest, when):
        """nbgrader's rule: a first collection, or (with --update / --before-duedate) one that changes the time."""
        if not dest.is_dir():
            return True
        existing = self.coursedir.get_existing_timestamp(str(dest))
        if self.update and (existing is None or when > existing):
            return True
        if self.before_duedate and existing != when:
            return True
        self.log.info("%s: %s %s", "No newer submission to collect" if self.update else
                      "Submission already exists, use --update to update", dest.parent.name, dest.name)
        return False

    def _owner(self, student):
        if not self.check_owner:
            return None
        try:
            return pwd.getpwnam(student).pw_uid
        except KeyError:
            raise Refused(".", f"is named for {student}, who has no Unix account here") from None

    def _keep(self, path, size):
        """nbgrader's ignore, include and max_file_size rules for one entry (size None: a folder)."""
        coursedir = self.coursedir
        if any(fnmatch(path.name, pattern) for pattern in coursedir.ignore):
            return False
        if size is None:
            return True
        if coursedir.include and not any(fnmatch(path.name, pattern) for pattern in coursedir.include):
            return False
        if coursedir.max_file_size and size > 1000 * coursedir.max_file_size:
            self.log.warning("Ignoring file too large '%s' (see config option CourseDirectory.max_file_size)", path)
            return False
        return True

    def _collect(self, name, student, dest):
        """Copy inbound/name to dest (replacing what was there only once the copy is whole), or raise Refused."""
        owner = self._owner(student)
        inbound = os.open(self.inbound_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            folder = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=inbound)
        except OSError as err:
            raise Refused(".", "is a link or not a folder") from err
        finally:
            os.close(inbound)
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.collecting-", dir=dest.parent))
        try:
            copy_tree(folder, staging / "copy", owner=owner, keep=self._keep,
                      max_bytes=1000 * self.coursedir.max_dir_size, max_entries=MAX_ENTRIES)
            if self.coursedir.groupshared:
                _share_with_group(staging / "copy")
            if dest.exists():
                self.log.info("Updating submission: %s %s", student, dest.name)
                dest.rename(staging / "old")
            else:
                self.log.info("Collecting submission: %s %s", student, dest.name)
            (staging / "copy").rename(dest)
        finally:
            os.close(folder)
            shutil.rmtree(staging, ignore_errors=True)


def _share_with_group(top):
    """What nbgrader's copy does for a group-shared course: folders ug+rwx with setgid, files ug+rw."""
    for folder, _, files in os.walk(top):
        os.chmod(folder, os.stat(folder).st_mode | 0o2770)
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, os.stat(path).st_mode | 0o660)

