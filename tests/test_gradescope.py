"""
The Gradescope autograder (`normgrade gradescope`), run as Gradescope runs it.

The zip that `normgrade gradescope` writes is unpacked into a folder laid out
like Gradescope's (source/, submission/, results/) and bound at /autograder
in a bubblewrap container started as root, where the built `run_autograder`
runs as root: once with user namespaces available (student code then runs
under bubblewrap), once with them blocked the way Docker's default seccomp
profile blocks them (clone and unshare with CLONE_NEWUSER refused, clone3
unavailable), where student code runs as `nobody`. Each results.json is
checked field by field against Gradescope's specification and its scores,
test by test, against `normgrade grade` on the same files. The uploads take
the shapes students use (the release folder, a zip of it, loose files), and
a hostile one tries to read the expected values and write the results.
"""
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from normgrade.run.sandbox import _python_roots, system_mounts

# one pytest-xdist worker runs them all: Unix users, and modes of the folders above Python changed for the test's length
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("unix_users")]

SPEC_TOP = {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "extra_data",
            "tests", "leaderboard"}
SPEC_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format", "tags",
             "visibility", "extra_data"}
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}

CHEATER = '''

import numpy as _np


def _expected():
    try:
        with _np.load("/autograder/source/expected.npz") as data:
            return {key: data[key] for key in data.files}
    except Exception:  # noqa: BLE001
        return None


_EXPECTED = _expected()
try:
    with open("/autograder/source/normgrade-src/autograder/normgrade/score/checks.py") as _f:
        _LEAK = _f.read(200)
except OSError:
    _LEAK = ""
for _path in ("/autograder/results/results.json", "/autograder/source/pwned", "/autograder/submission/pwned"):
    try:
        with open(_path, "w") as _f:
            _f.write('{"score": 1000}')
    except OSError:
        pass


try:
    import socket as _socket

    _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM).close()
    _NETWORK = True
except OSError:
    _NETWORK = False


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    raise RuntimeError(f"NETWORK:{_NETWORK}")


def layernorm_forward(x, gamma, beta, ln_param):
    raise RuntimeError(f"LEAKED: {_LEAK}" if _LEAK else "the grader's code could not be read")


def batchnorm_forward(x, gamma, beta, bn_param):
    if _EXPECTED is None:
        raise RuntimeError("the expected values could not be read")
    return _EXPECTED["expected/bn_train_out"], None
'''


def _need_root():
    if os.geteuid() != 0:
        reason = "the Gradescope test runs run_autograder as root, as Gradescope does"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Gradescope test: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def autograder(sandbox, tmp_path_factory, course_copy):
    from normgrade.course import paths
    from normgrade.score.notebooks import answer_keys, source_notebooks

    _need_root()
    top = tmp_path_factory.mktemp("gradescope")
    course = course_copy(top / "course")
    out = top / "autograder.zip"
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "gradescope", "--course", str(course), "--out",
                           str(out), "--visibility", "after-due-date"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return course, out, answer_keys(source_notebooks(paths(course)["source"]))


def test_the_zip_has_gradescopes_files_and_nothing_of_the_reference(autograder):
    from normgrade.build.release import _solution_lines

    _, out, keys = autograder
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        modes = {info.filename: stat.S_IMODE(info.external_attr >> 16) for info in z.infolist()}
        student_side = b"".join(z.read(n) for n in names if n.startswith(("release/", "normgrade-src/assignment/")))
    assert {"setup.sh", "run_autograder", "requirements.txt", "expected.npz", "settings.json"} <= names
    assert modes["run_autograder"] == modes["setup.sh"] == 0o755 and modes["expected.npz"] == 0o600
    assert not any(name.startswith("normgrade-src/solutions") for name in names)
    assert [line for line in _solution_lines() if line.encode() in student_side] == [], "no answer in the zip"


def _unpack(out, root):
    with zipfile.ZipFile(out) as z:
        for info in z.infolist():
            target = root / "source" / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            target.chmod(stat.S_IMODE(info.external_attr >> 16))


def gradescope_root(tmp_path, out, upload):
    """A folder laid out like Gradescope's /autograder, with `upload` {relative path: bytes} as the submission."""
    root = tmp_path / "autograder"
    _unpack(out, root)
    (root / "results").mkdir(parents=True)
    (root / "submission").mkdir()
    for name, data in upload.items():
        (root / "submission" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "submission" / name).write_bytes(data)
    (root / "submission_metadata.json").write_text(json.dumps({"users": [{"email": "jo@uni.edu"}]}))
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")  # where Gradescope puts it
    os.chmod(tmp_path, 0o755)
    os.chmod(root, 0o755)
    return root


def _block_user_namespaces():
    """In the child: refuse new user namespaces, as Docker's default seccomp profile does."""
    import errno

    import pyseccomp as sc

    clone_newuser = 0x10000000
    rules = sc.SyscallFilter(sc.ALLOW)
    for name in ("clone", "unshare"):
        rules.add_rule(sc.ERRNO(errno.EPERM), name, sc.Arg(0, sc.MASKED_EQ, clone_newuser, clone_newuser))
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    rules.load()


def container(root, command, user_namespaces=True, cwd="/autograder/source"):
    """
    Run `command` as root in a container like Gradescope's, whose /autograder
    is `root`: a root file system of its own (a tmpfs, /tmp another), the
    system and this Python read-only; return the process. Nothing a command
    in it changes reaches this machine but in `root`.
    """
    # The host's /proc: a fresh one in a PID namespace of the harness would stop bubblewrap inside from
    # mounting its own (the kernel wants a fully visible proc to mount another in a user namespace).
    argv = ["bwrap", "--tmpfs", "/", "--dev", "/dev", "--dev-bind", "/proc", "/proc", "--die-with-parent",
            "--cap-add", "ALL", "--ro-bind", "/etc", "/etc", "--perms", "1777", "--tmpfs", "/tmp"]
    argv += system_mounts()
    for python_root in _python_roots():  # its folders above made as a system's are: 0755, as traversable() left them
        for folder in reversed(python_root.parents[:-1]):
            argv += ["--perms", "0755", "--dir", str(folder)]
        argv += ["--ro-bind", str(python_root), str(python_root)]
    argv += ["--bind", str(root), "/autograder", "--chdir", cwd, "--setenv", "NORMGRADE_PYTHON", sys.executable,
             *command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900,
                          preexec_fn=None if user_namespaces else _block_user_namespaces)


def run_autograder(root, user_namespaces=True):
    """Run root/source/run_autograder in the container whose /autograder is `root`; return the process."""
    return container(root, ["/autograder/run_autograder"], user_namespaces)


def check_against_the_spec(document, visibility):
    assert set(document) <= SPEC_TOP, set(document) - SPEC_TOP
    assert isinstance(document["score"], float) and isinstance(document["execution_time"], int)
    assert isinstance(document["output"], str) and document["visibility"] in VISIBILITIES
    assert document["stdout_visibility"] in VISIBILITIES
    assert document["tests"], "one test a graded cell"
    for test in document["tests"]:
        assert set(test) <= SPEC_TEST, set(test) - SPEC_TEST
        assert isinstance(test["name"], str) and isinstance(test["number"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], float) and isinstance(test["max_score"], float)
        assert 0 <= test["score"] <= test["max_score"] and test["visibility"] == visibility
        assert test["output_format"] == test["name_format"] == "text", "student text is never rendered as markup"
    assert document["output_format"] == "text", "notes name files from the upload: never rendered as markup"
    assert document["score"] == pytest.approx(sum(t["score"] for t in document["tests"]))
    assert len({t["name"] for t in document["tests"]}) == len(document["tests"])


def _folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _zip_of(files, prefix=""):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(prefix + name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("user_namespaces", [True, False], ids=["bubblewrap", "namespaces-blocked"])
def test_run_autograder_scores_like_normgrade_grade(autograder, tmp_path, user_namespaces):
    from normgrade.grade.class_run import grade
    from normgrade.course import paths
    from normgrade.paths import STUB_LAYERS
    from normgrade.build.samples import TYPICAL_MISTAKES, make_submission, mutant_layers, reference_layers
    from test_exchange import traversable

    course, out, keys = autograder
    release = paths(course)["release"]
    folders = {
        "reference": make_submission(release, tmp_path / "class" / "reference", reference_layers(), keys),
        "mistakes": make_submission(release, tmp_path / "class" / "mistakes", mutant_layers(*TYPICAL_MISTAKES)),
        "cheater": make_submission(release, tmp_path / "class" / "cheater", STUB_LAYERS.read_text() + CHEATER),
    }
    (tmp_path / "class" / "stubs" / "normlab").mkdir(parents=True)
    (tmp_path / "class" / "stubs" / "normlab" / "layers.py").write_text(STUB_LAYERS.read_text())
    folders["stubs"] = tmp_path / "class" / "stubs"
    uploads = {  # the shapes students upload
        "reference": {"normalization.zip": _zip_of(_folder_bytes(folders["reference"]), "normalization/")},
        "mistakes": {f"normalization/{k}": v for k, v in _folder_bytes(folders["mistakes"]).items()},
        "stubs": {"layers.py": STUB_LAYERS.read_bytes()},
        "cheater": _folder_bytes(folders["cheater"]),
    }
    expected = {s["student"]: s for s in grade([tmp_path / "class"], course, regrade=True)["submissions"]}
    mode = "bubblewrap sandbox" if user_namespaces else "unprivileged user: student code ran as nobody"
    with traversable(sys.executable, *[str(r) for r in _python_roots()]):
        for student, upload in uploads.items():
            root = gradescope_root(tmp_path / f"gs-{student}", out, upload)
            secret = hashlib.sha256((root / "source" / "expected.npz").read_bytes()).hexdigest()
            done = run_autograder(root, user_namespaces)
            assert done.returncode == 0, (student, done.stdout[-2000:], done.stderr[-4000:])
            document = json.loads((root / "results" / "results.json").read_text())
            check_against_the_spec(document, "after_due_date")
            first, *_, last = document["output"].splitlines()
            assert first.startswith(f"{document['score']:g} of 36 auto-graded points; your written answers "
                                    "(7 points) are graded by your instructor"), first
            assert last.startswith(f"graded in: {mode}"), document["output"][-300:]
            assert document["visibility"] == "after_due_date", "the total is hidden as the tests are"
            scores = {t["name"]: t["score"] for t in document["tests"]}
            assert scores == {t["name"]: t["score"] for t in expected[student]["tests"]}, student
            lost = {t["name"]: t["message"] for t in expected[student]["tests"] if t["message"]}
            assert {name: t["output"] for t in document["tests"] if (name := t["name"]) in lost} == lost, \
                "the same messages as the feedback"
            assert document["score"] == expected[student]["raw_score"], student
            assert hashlib.sha256((root / "source" / "expected.npz").read_bytes()).hexdigest() == secret
            assert not (root / "source" / "pwned").exists() and not (root / "submission" / "pwned").exists()
            assert "LEAKED" not in json.dumps(document), "student code read the grader's code"
            if student == "cheater":
                assert "NETWORK:False" in json.dumps(document), "graded code opens no socket but a Unix one"
            assert stat.S_IMODE((root / "source" / "expected.npz").stat().st_mode) == 0o600
            assert stat.S_IMODE((root / "results").stat().st_mode) == 0o700
    assert expected["reference"]["raw_score"] == expected["reference"]["max_score"]
    assert expected["cheater"]["raw_score"] == 0.0, "the cheater read no expected value"


def test_a_submission_of_two_candidates_is_not_guessed(autograder, tmp_path):
    from normgrade.paths import STUB_LAYERS
    from test_exchange import traversable

    _, out, _ = autograder
    root = gradescope_root(tmp_path, out, {"layers.py": STUB_LAYERS.read_bytes(),
                                           "old/layers.py": STUB_LAYERS.read_bytes()})
    with traversable(sys.executable, *[str(r) for r in _python_roots()]):
        done = run_autograder(root)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((root / "results" / "results.json").read_text())
    check_against_the_spec(document, "after_due_date")
    assert document["score"] == 0.0 and "two files could be layers.py (layers.py, old/layers.py)" in document["output"]


def test_the_places_an_unprivileged_user_could_write_are_all_found(tmp_path):
    import pwd

    from normgrade.run.sandbox import writable_by

    _need_root()
    nobody = pwd.getpwnam("nobody")
    top = tmp_path / "machine"
    for name, mode, owner in [("everyone", 0o1777, 0), ("group", 0o775, "gid"), ("own", 0o755, "uid"),
                              ("closed", 0o755, 0), ("closed/file-for-all", 0o666, 0), ("closed/own-file", 0o600, "uid"),
                              ("closed/group-file", 0o664, "gid"), ("closed/plain", 0o644, 0)]:
        path = top / name
        path.mkdir(parents=True) if "file" not in name and name != "closed/plain" else path.write_text("x")
        os.chmod(path, mode)
        os.chown(path, nobody.pw_uid if owner == "uid" else 0, nobody.pw_gid if owner == "gid" else 0)
    (top / "closed" / "link").symlink_to(top / "everyone")  # a link is not a place: its target is
    top.chmod(0o755)
    found = sorted(os.path.relpath(p, top) for p in writable_by(nobody.pw_uid, nobody.pw_gid, str(top)))
    assert found == ["closed/file-for-all", "closed/group-file", "closed/own-file", "everyone", "group", "own"]


# A submission that leaves a note in every folder it can write and every file it can write to, and looks
# for an earlier worker's notes everywhere; it also tries io_uring and a socket of each family. It runs
# at import, so in every worker, and says what it saw in its import error (160 characters at most).
NOTES = r"""
import ctypes, os, socket
MARK = "normlab-note-"
left, outside, found, files = 0, 0, 0, 0
home = os.environ["HOME"]
for top, folders, names in os.walk("/"):
    if top in ("/proc", "/sys"):
        folders[:] = []
        continue
    found += sum(name.startswith(MARK) for name in names)
    if os.access(top, os.W_OK | os.X_OK):
        try:
            with open(os.path.join(top, f"{MARK}{os.getpid()}"), "x") as note:
                note.write("the first worker's outputs")
            left += 1
            outside += not top.startswith(home)
        except OSError:
            pass
    for name in names:
        path = os.path.join(top, name)
        if not name.startswith(MARK) and os.path.isfile(path) and not os.path.islink(path) and os.access(path, os.W_OK):
            files += 1
libc = ctypes.CDLL(None, use_errno=True)
uring = libc.syscall(425, 8, ctypes.create_string_buffer(120)) >= 0
sockets = []
for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_NETLINK, socket.AF_PACKET):
    try:
        socket.socket(family, socket.SOCK_DGRAM).close()
        sockets.append(family.name)
    except OSError:
        pass
raise RuntimeError(f"left={left} outside={outside} found={found} files={files} uring={uring} sockets={sockets}")
"""

DRIVER = r"""
import json, os, sys
sys.path.insert(0, "/autograder")  # the grader's package, as run_autograder has it
from normgrade.run import worker
from normgrade.run.sandbox import Limits, Sandbox, writable_by
# What images hold: folders for all, the user's own, its group's, files for all and its own.
for path, mode, owner, group in [("/var/tmp", 0o1777, 0, 0), ("/run/lock", 0o1777, 0, 0), ("/dev/shm", 0o1777, 0, 0),
                                 ("/var/lib/nobody", 0o755, 65534, 65534), ("/srv/shared", 0o775, 0, 65534),
                                 ("/srv/log.txt", 0o666, 0, 0), ("/srv/own.txt", 0o600, 65534, 65534)]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.makedirs(path, exist_ok=True) if not path.endswith(".txt") else open(path, "w").close()
    os.chown(path, owner, group)
    os.chmod(path, mode)
before = writable_by(65534, 65534)
sandbox = Sandbox(user="nobody")
folder = sandbox.private_folder(open(sys.argv[1], "rb").read(), "/autograder/normlab")
said = []
for _ in range(2):  # two workers of one submission, one after the other, as the scorer runs them
    run = sandbox.start("calls", folder, Limits())
    try:
        run.send(worker.encode_frame({"kind": "request", "names": [], "calls": [], "limits": Limits().rlimits()}))
        said.append(run.next_frame(120)[0].get("error"))
    finally:
        run.close()
print(json.dumps([before, said]))
"""


def test_in_nobody_mode_a_worker_finds_nothing_an_earlier_one_wrote_and_reaches_no_network(tmp_path):
    from normgrade.run import sandbox as sandbox_module
    from normgrade.paths import STUB_LAYERS, STUDENT_PACKAGE
    from test_exchange import traversable

    _need_root()
    root = tmp_path / "autograder"
    root.mkdir()
    (root / "layers.py").write_text(STUB_LAYERS.read_text() + NOTES)
    (root / "driver.py").write_text(DRIVER)
    shutil.copytree(Path(sandbox_module.__file__).parents[1], root / "normgrade",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(STUDENT_PACKAGE, root / "normlab", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (tmp_path, root, root / "layers.py", root / "driver.py"):
        path.chmod(0o755)
    devices = {path: os.stat(path) for path in ("/dev/null", "/dev/zero")}  # bound into the container's /dev
    with traversable(sys.executable, *[str(r) for r in _python_roots()]):
        done = container(root, [sys.executable, "/autograder/driver.py", "/autograder/layers.py"],
                         user_namespaces=False, cwd="/autograder")
    assert {path: os.stat(path) for path in devices} == devices, "taking write access away changed this machine's /dev"
    assert done.returncode == 0, done.stderr[-3000:]
    before, (first, second) = json.loads(done.stdout.splitlines()[-1])
    assert {"/tmp", "/var/tmp", "/run/lock", "/dev/shm", "/var/lib/nobody", "/srv/shared", "/srv/log.txt",
            "/srv/own.txt"} <= set(before), before
    for said in (first, second):
        assert "left=1 outside=0" in said, f"a worker could write outside its own folder: {said}"
        assert "files=0" in said and "uring=False" in said and "sockets=[]" in said, said
    assert "found=0" in second, f"the second worker found the first one's notes: {second}"


def test_the_unprivileged_user_is_never_root():
    from normgrade.run.sandbox import Sandbox, SandboxUnavailable

    _need_root()
    with pytest.raises(SandboxUnavailable, match="not an unprivileged user"):
        Sandbox(user="root")
    with pytest.raises(SandboxUnavailable, match="no such user"):
        Sandbox(user="no-such-user-here")


def test_results_json_shows_every_student_text_as_plain_text():
    """A file name or an exception text from the upload is text on Gradescope's page, never HTML or Markdown."""
    from normgrade.platforms.gradescope import results_document

    hostile = "<img src=x onerror=alert(1)> **bold** [link](javascript:alert(1))"
    document = results_document([{"name": "BatchNormalization/test_batchnorm_forward", "score": 0.0, "max_score": 6.0,
                                  "output": f"bn_train_out raised ValueError: {hostile}"}],
                                [f"{hostile}.py: not a file of the assignment, not graded"], "bubblewrap sandbox",
                                "visible", 1.2)
    check_against_the_spec(document, "visible")
    assert hostile in document["output"] and hostile in document["tests"][0]["output"]  # as it was, shown as text


def test_the_zip_can_be_tried_here_on_a_sample_upload_before_it_goes_to_gradescope(autograder, tmp_path, capsys):
    from normgrade import cli
    from normgrade.course import paths
    from normgrade.build.samples import make_submission, mutant_layers, reference_layers

    course, _, keys = autograder
    upload = make_submission(paths(course)["release"], tmp_path / "upload", reference_layers(), keys)
    out = tmp_path / "autograder.zip"
    assert cli.main(["gradescope", "--course", str(course), "--out", str(out), "--try", str(upload)]) == 0
    said = capsys.readouterr().out
    assert "36 of 36 auto-graded points; your written answers (7 points) are graded by your instructor" in said
    assert "graded in: bubblewrap sandbox" in said and "BatchNormalization/test_batchnorm_forward: 6 / 6" in said
    assert out.is_file()
    mistakes = make_submission(paths(course)["release"], tmp_path / "mistakes", mutant_layers("unbiased_variance"), keys)
    assert cli.main(["gradescope", "--course", str(course), "--out", str(out), "--try", str(mistakes)]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "the variance is the unbiased one (dividing by N - 1)" in said, "the whole message, not its first line"
