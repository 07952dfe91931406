"""
Submissions in from an LMS (normgrade.platforms.intake; `normgrade grade canvas.zip --roster export.csv`).

A Canvas "Download Submissions" zip, built as Canvas names its entries, with
the uploads students really make (loose files, files Canvas renamed "-1",
a zip of the release folder with macOS and checkpoint debris) and hostile
entries (paths with `..` and absolute paths, a link, a zip bomb, one inside a
student's zip, two files claiming to be layers.py, an LMS id not in the
roster, a roster id that is a path). Every entry is written to its one place
or listed with the reason; nothing outside the intake folder is written, and
the archive is unchanged. Through the real command, the archive's students
get the scores of the same content graded as folders.
"""
import hashlib
import io
import json
import stat
import subprocess
import sys
import zipfile

import pytest

from normgrade.platforms import intake

NOTEBOOKS = ("BatchNormalization.ipynb", "SpatialNormalization.ipynb")
EXPORT = ("Student,ID,SIS User ID,SIS Login ID,Section\n    Points Possible,,,,\n"
          '"Doe, Jane",101,S1,jdoe,A\n"Smith, Bo",103,S3,bsmith,A\n"Twice, Tom",104,S4,ttwice,A\n'
          '"Link, Lou",106,S6,llink,A\n"Bomb, Bea",107,S7,bbomb,A\n"Zoë, Zed",108,S8,zoe,A\n'
          '"Path, Pat",109,S9,../evil,A\n"Nest, Ned",110,S10,nned,A\n"Corrupt, Cy",111,S11,ccorrupt,A\n'
          '"Many, Zips",112,S12,mmany,A\n"Back, Sam",113,S13,sback,A\n"Five, Fay",114,S14,ffive,A\n')


def _zip_bytes(entries):
    """A zip of {name: bytes or ("link", target)}: deflated, as an LMS writes it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            if isinstance(data, tuple):
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                z.writestr(info, data[1])
            else:
                z.writestr(name, data)
    return buffer.getvalue()


def canvas_archive():
    """The class's Canvas download: {entry: bytes}."""
    release_zip = _zip_bytes({
        "normalization/BatchNormalization.ipynb": b"bsmith's batch notebook",
        "normalization/normlab/layers.py": b"# bsmith's layers",
        "normalization/normlab/backend.py": b"# provided, not graded",
        "normalization/.ipynb_checkpoints/BatchNormalization-checkpoint.ipynb": b"old",
        "__MACOSX/normalization/normlab/._layers.py": b"resource fork",
    })
    nested_bomb = _zip_bytes({"normalization/SpatialNormalization.ipynb": bytes(40 << 20)})
    corrupt_zip = bytearray(_zip_bytes({"normalization/normlab/layers.py": bytes(range(256)) * 40}))
    start = 30 + len("normalization/normlab/layers.py")  # the first entry's deflate data
    corrupt_zip[start:start + 8] = b"\xff" * 8  # flipped: zlib.error when read
    corrupt_zip = bytes(corrupt_zip)
    many_entries = _zip_bytes({f"f{n}.txt": b"" for n in range(intake.MAX_INNER_ENTRIES + 1)})
    with_backup = _zip_bytes({"normalization/normlab/layers.py": b"# sam's layers",
                              "normalization/backup/layers-2.py": b"# an old copy"})
    return {
        "doejane_101_5551_layers.py": b"# jdoe's layers",
        "doejane_101_5552_BatchNormalization.ipynb": b"jdoe's batch notebook",
        "doejane_101_5553_SpatialNormalization-1.ipynb": b"jdoe's spatial notebook, uploaded again",
        "doejane_101_5554_notes.txt": b"not graded",
        "smithbo_LATE_103_5553_normalization.zip": release_zip,
        "twicetom_104_5555_layers.py": b"one",
        "twicetom_104_5556_layers-1.py": b"the other",
        "pal_104_556_9300_normalization.zip": release_zip,  # a name with _<digits>_<digits>_: 104 or 556?
        "corruptcy_111_5570_normalization.zip": corrupt_zip,
        "manyzips_112_5571_a.zip": many_entries, "manyzips_112_5572_b.zip": release_zip,
        "backup_113_5573_normalization.zip": with_backup,
        **{f"five_114_{5580 + n}_part{n}.zip": release_zip for n in range(intake.MAX_ZIPS + 1)},
        "linklou_106_5556_layers.py": ("link", "/etc/passwd"),
        "bombbea_107_5557_layers.py": bytes(50 << 20),
        "zoëzed_108_5558_layers.py": "# zoë's layers".encode(),
        "pathpat_109_5559_layers.py": b"# a roster id that is a path",
        "nestned_110_5560_normalization.zip": nested_bomb,
        "ghost_999_5599_layers.py": b"# not in the roster",
        "../../escape_101_5551_layers.py": b"# a path",
        "/abs_101_5551_layers.py": b"# an absolute path",
        "evil_101_5551_../../x.ipynb": b"# a path in the file part",
        "readme.txt": b"not a submission",
    }


@pytest.fixture
def lms(tmp_path):
    release = tmp_path / "release"
    (release / "normlab").mkdir(parents=True)
    for name in NOTEBOOKS:
        (release / name).write_text("{}")
    archive = tmp_path / "canvas.zip"
    archive.write_bytes(_zip_bytes(canvas_archive()))
    roster = tmp_path / "export.csv"
    roster.write_text(EXPORT, encoding="utf-8")
    return release, archive, roster


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_every_entry_lands_in_its_one_place_or_is_listed(tmp_path, lms):
    release, archive, roster = lms
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    before = _tree(tmp_path)
    dest = tmp_path / "intake"
    read = intake.read_archive(archive, intake.read_mapping(roster), release, dest)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest, "the archive is unchanged"
    assert sorted(set(_tree(tmp_path)) - set(before)) == sorted(["intake"] + [f"intake/{p}" for p in _tree(dest)])
    written = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert written == {
        "jdoe/normlab/layers.py": b"# jdoe's layers",
        "jdoe/BatchNormalization.ipynb": b"jdoe's batch notebook",
        "jdoe/SpatialNormalization.ipynb": b"jdoe's spatial notebook, uploaded again",
        "bsmith/BatchNormalization.ipynb": b"bsmith's batch notebook",
        "bsmith/normlab/layers.py": b"# bsmith's layers",
        "zoe/normlab/layers.py": "# zoë's layers".encode(),
        "sback/normlab/layers.py": b"# sam's layers",
    }
    why = dict(read.skipped)
    assert "not a graded file" in why["canvas.zip:doejane_101_5554_notes.txt"]
    assert "more than 4 zips, not read" in why["canvas.zip: student ffive"]
    assert "which one is graded is not guessed" in why["canvas.zip: student ttwice"]
    assert "a link, not read" in why["canvas.zip: student llink"]
    assert "larger than 1 MiB" in why["canvas.zip: student bbomb"]
    assert "larger than 16 MiB" in why["canvas.zip: student nned"]
    assert "not a plain id" in why["canvas.zip:pathpat_109_5559_layers.py"]
    assert "LMS id 999 is not in the roster" in why["canvas.zip:ghost_999_5599_layers.py"]
    assert "parses as LMS id 104 and as 556" in why["canvas.zip:pal_104_556_9300_normalization.zip"]
    assert "unreadable (error" in why["canvas.zip: student ccorrupt"]
    assert "2001 entries, more than 2000 allowed" in why["canvas.zip: student mmany"]
    for hostile in ("../../escape_101_5551_layers.py", "/abs_101_5551_layers.py", "evil_101_5551_../../x.ipynb",
                    "readme.txt"):
        assert "not named as the LMS names" in why[f"canvas.zip:{hostile}"], hostile
    assert len(read.skipped) == len(why) == 15, "every entry not graded is listed once (a student's together)"
    assert any("marked this submission LATE" in note for note in read.notes["bsmith"])
    assert not any("LATE" in note for note in read.notes["jdoe"])


def test_an_archive_or_roster_that_cannot_be_read_is_refused_with_what_is_wrong(tmp_path, lms):
    release, archive, roster = lms
    mapping = intake.read_mapping(roster)
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(intake.ArchiveError, match="not a zip archive"):
        intake.read_archive(tmp_path / "not.zip", mapping, release, tmp_path / "a")
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as z:
        for n in range(intake.MAX_ENTRIES + 1):
            z.writestr(f"x_{n}_1_layers.py", b"")
    with pytest.raises(intake.ArchiveError, match="more than 20000"):
        intake.read_archive(many, mapping, release, tmp_path / "b")
    (tmp_path / "link.zip").symlink_to(archive)
    with pytest.raises(intake.ArchiveError, match="a link, not followed"):
        intake.read_archive(tmp_path / "link.zip", mapping, release, tmp_path / "c")
    with pytest.raises(ValueError, match="named groups"):
        intake.check_pattern(r"(?P<student>\w+)_(?P<file>.+)")
    (tmp_path / "plain.csv").write_text("lms_id,student_id\n1,ann\n2,ann\n")
    with pytest.raises(intake.ArchiveError, match="student_id 'ann' has two lms_ids"):
        intake.read_mapping(tmp_path / "plain.csv")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_another_lms_by_its_pattern_and_a_plain_roster(tmp_path, lms):
    release, _, _ = lms
    archive = tmp_path / "moodle.zip"
    archive.write_bytes(_zip_bytes({"Jane Doe_4242_assignsubmission_file_layers.py": b"# jane"}))
    (tmp_path / "roster.csv").write_text("lms_id,student_id\n4242,jdoe\n")
    pattern = r"(?P<name>[^_]+)_(?P<lms_id>\d+)_assignsubmission_file_(?P<file>.+)"
    read = intake.read_archive(archive, intake.read_mapping(tmp_path / "roster.csv"), release, tmp_path / "in",
                               pattern)
    assert read.skipped == [] and (tmp_path / "in" / "jdoe" / "normlab" / "layers.py").read_bytes() == b"# jane"


@pytest.mark.slow
def test_a_canvas_download_grades_in_one_command_like_the_same_folders(sandbox, tmp_path, course_copy):
    """`normgrade grade canvas.zip --roster export.csv`: the scores of the same content graded as folders."""
    from normgrade.grade.class_run import grade
    from normgrade.course import paths
    from normgrade.build.samples import TYPICAL_MISTAKES, mutant_layers, reference_layers

    import datetime

    from normgrade.grade import late
    from normgrade.course import db_url

    course = course_copy(tmp_path / "course")
    late.set_due_date(db_url(course), datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
                      + datetime.timedelta(days=1))  # a due date: a folder without timestamp.txt would get a note
    from nbgrader.api import Gradebook

    from normgrade.course import COURSE_ID
    with Gradebook(db_url(course), COURSE_ID) as gb:  # a name the instructor gave, before any grading
        gb.update_or_create_student("bsmith", first_name="Robert", last_name="Smith-Jones")
    release = paths(course)["release"]
    sources = {"jdoe": reference_layers(), "bsmith": mutant_layers(*TYPICAL_MISTAKES)}
    entries = {"doejane_101_5551_layers.py": sources["jdoe"].encode(),
               "doejane_101_5551_BatchNormalization.ipynb": (release / "BatchNormalization.ipynb").read_bytes(),
               "smithbo_LATE_103_5553_layers-2.py": sources["bsmith"].encode(),
               "ghost_999_5599_layers.py": b"# not in the roster"}
    archive = tmp_path / "canvas.zip"
    archive.write_bytes(_zip_bytes(entries))
    roster = tmp_path / "export.csv"
    roster.write_text(EXPORT)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "grade", str(archive), "--roster", str(roster),
                           "--course", str(course), "--json", "--workers", "2"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == digest
    by = {s["student"]: s for s in document["submissions"]}
    assert set(by) == {"jdoe", "bsmith"} and all(s["status"] == "graded" for s in by.values())
    assert [s["path"] for s in document["skipped"]] == ["canvas.zip:ghost_999_5599_layers.py"]
    assert any("marked this submission LATE" in note for note in by["bsmith"]["notes"])
    assert {s["path"] for s in by.values()} == {f"{archive}: jdoe", f"{archive}: bsmith"}, \
        "the archive and the student, not an intake folder gone after the run"
    assert not any("timestamp" in note for s in by.values() for note in s["notes"]), \
        "no note about nbgrader's timestamp.txt, which an LMS's download never has"
    with Gradebook(db_url(course), COURSE_ID) as gb:  # the roster's names where none was given, not "None, None"
        assert [(gb.find_student(s).first_name, gb.find_student(s).last_name) for s in ("jdoe", "bsmith")] == [
            ("Jane", "Doe"), ("Robert", "Smith-Jones")], "never over a name the instructor gave"
    assert not (course / "normgrade" / "intake").exists() or not any((course / "normgrade" / "intake").iterdir())
    # The same content as folders, in a copy of the course: the same scores, test by test.
    folders = tmp_path / "class"
    for student, source in sources.items():
        (folders / student / "normlab").mkdir(parents=True)
        (folders / student / "normlab" / "layers.py").write_text(source)
    (folders / "jdoe" / "BatchNormalization.ipynb").write_bytes(entries["doejane_101_5551_BatchNormalization.ipynb"])
    again = {s["student"]: s for s in grade([folders], course, regrade=True)["submissions"]}
    for student in sources:
        assert by[student]["score"] == again[student]["score"], student
        assert [(t["name"], t["score"]) for t in by[student]["tests"]] == \
               [(t["name"], t["score"]) for t in again[student]["tests"]]
    code = [t for t in by["jdoe"]["tests"] if "/test_" in t["name"] and "/test_inline_" not in t["name"]]
    assert code and [t for t in code if t["score"] != t["max_score"]] == [], "the reference's code earns every point"
    assert by["jdoe"]["raw_score"] > by["bsmith"]["raw_score"]


def _lying_zip(records, zip64=False):
    """
    A zip whose central directory holds `records` entries (one-byte names, no
    data) under end records that say it holds 1: in the plain end record, or
    (zip64) in a zip64 end record, as zipfile reads either.
    """
    def number(value, size):
        return value.to_bytes(size, "little")

    record = b"PK\x01\x02" + bytes(24) + number(1, 2) + bytes(16) + b"x"  # 46 fixed bytes and its name
    directory = record * records
    if not zip64:
        return directory + b"PK\x05\x06" + bytes(4) + number(1, 2) * 2 + number(len(directory), 4) + bytes(6)
    end64 = (b"PK\x06\x06" + number(44, 8) + number(45, 2) * 2 + bytes(8) + number(1, 8) * 2
             + number(len(directory), 8) + number(0, 8))
    locator = b"PK\x06\x07" + bytes(4) + number(len(directory), 8) + number(1, 4)
    return directory + end64 + locator + b"PK\x05\x06" + bytes(4) + b"\xff" * 12 + bytes(2)


@pytest.mark.parametrize("zip64", [False, True], ids=["end record", "zip64 end record"])
def test_a_zip_that_lies_about_its_entry_count_is_refused_before_zipfile_parses_it(tmp_path, lms, monkeypatch,
                                                                                    zip64):
    """
    What bounds the work is what the directory holds, not what its end record
    says: a red team's student zip said 1 entry and held 1.4 million (25 s and
    581 MiB of zipfile before it was refused), four of them per student.
    """
    forged = _lying_zip(3, zip64)
    assert len(zipfile.ZipFile(io.BytesIO(forged)).infolist()) == 3, "zipfile reads all that the directory holds"

    def never(*args, **kwargs):
        raise AssertionError("zipfile parsed a directory that was to be refused")

    release, archive, roster = lms
    targets, limits = ["layers.py"], intake.graded_limits(["layers.py"])
    # A student's own zip: a few more records than allowed, or a directory far beyond any honest one.
    many, huge = _lying_zip(intake.MAX_INNER_ENTRIES + 1, zip64), _lying_zip(1_400_000, zip64)
    monkeypatch.setattr(intake.zipfile, "ZipFile", never)
    found, problems = intake.files_in_zip(many, targets, limits)
    assert found == {} and problems == [f"more than {intake.MAX_INNER_ENTRIES} entries in its central directory, "
                                        "though its end record says 1: not read"]
    found, problems = intake.files_in_zip(huge, targets, limits)
    assert found == {} and len(problems) == 1 and "a central directory of 65800000 bytes, more than" in problems[0]
    # The LMS download itself.
    outer = tmp_path / "download.zip"
    outer.write_bytes(_lying_zip(intake.MAX_ENTRIES + 1, zip64))
    with pytest.raises(intake.ArchiveError, match=f"more than {intake.MAX_ENTRIES} entries in its central directory, "
                                                  "though its end record says 1"):
        intake.read_archive(outer, intake.read_mapping(roster), release, tmp_path / "in")
    assert not (tmp_path / "in").exists() or not any((tmp_path / "in").iterdir())


def test_an_upload_renamed_by_a_browser_or_an_lms_is_found_and_said(tmp_path):
    """`layers (1).py` (a browser's second download) and `layers-1.py` (Canvas) loose in an upload are layers.py."""
    from normgrade.platforms.intake import files_in_folder

    targets, limits = ["BatchNormalization.ipynb", "layers.py"], {"BatchNormalization.ipynb": 1 << 20, "layers.py": 1 << 20}
    upload = tmp_path / "upload"
    (upload / "old").mkdir(parents=True)
    (upload / "layers (1).py").write_text("x = 1\n")
    (upload / "BatchNormalization-2.ipynb").write_text("{}")
    (upload / "old" / "layers (2).py").write_text("a backup, inside a folder\n")
    where = {}
    found, problems = files_in_folder(upload, targets, limits, where=where)
    assert problems == [] and found == {"layers.py": b"x = 1\n", "BatchNormalization.ipynb": b"{}"}
    assert where == {"layers.py": "layers (1).py", "BatchNormalization.ipynb": "BatchNormalization-2.ipynb"}
    (upload / "layers.py").write_text("y = 2\n")
    found, problems = files_in_folder(upload, targets, limits)
    assert problems == ["two files could be layers.py (layers (1).py, layers.py): which one is graded is not guessed"]
