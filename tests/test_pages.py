"""
What instructors and students see, in a real headless Chromium (Selenium): the class report
(`normgrade report`) and a student's feedback page (`normgrade feedback`), from a really graded class.

The expectations come from the grading document of the same run (each
student's tests, messages and recognized mistakes), not from numbers written here.
"""
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normgrade.grade import ledger
from normgrade.grade.class_run import grade
from normgrade.course import db_url, paths
from normgrade.score.mutants import MUTANTS
from normgrade.score.notebooks import answer_keys, source_notebooks
from normgrade.results.report import class_report
from normgrade.build.samples import TYPICAL_MISTAKES, make_class

# one pytest-xdist worker runs them all: module-scoped graded class, one browser
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pages")]

# The documentation site's screenshots are the ones these tests take: NORMLAB_SCREENSHOTS=docs (a folder)
# writes them there too, under the names the pages use (docs/developing.md says how to refresh them).
SITE_SCREENSHOTS = os.environ.get("NORMLAB_SCREENSHOTS")


def screenshot(browser, tmp_path, name, site_name=None):
    """The browser's view as tmp_path/<name>.png, and as the site's <site_name> where NORMLAB_SCREENSHOTS asks."""
    browser.save_screenshot(str(tmp_path / f"{name}.png"))
    if site_name and SITE_SCREENSHOTS:
        shutil.copy(tmp_path / f"{name}.png", Path(SITE_SCREENSHOTS) / site_name)


HOSTILE_ERROR = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>"


@pytest.fixture(scope="module")
def graded(tmp_path_factory, sandbox, course_copy):
    """A course with a graded class of six, plus one failure recorded through the ledger, as the grader does."""
    course = course_copy(tmp_path_factory.mktemp("course") / "course")
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    root = tmp_path_factory.mktemp("class")
    make_class(paths(course)["release"], root, 6, keys)
    document = grade([root], course, workers=2)
    url = db_url(course)
    with ledger.gradebook_lock(course, url):
        ledger.claim(url, "z_failed", "0" * 64, "run-x")
        ledger.finish(url, "z_failed", {"error": HOSTILE_ERROR, "score": 0.0, "max_score": 0.0})
    return course, document


def test_report_data_agrees_with_the_grading_document(graded):
    course, document = graded
    data = class_report(course)
    submissions = document["submissions"]
    assert data["counts"] == {"graded": 6, "failed": 1, "running": 0}
    assert data["scores"]["count"] == 6
    assert data["scores"]["mean"] == pytest.approx(sum(s["score"] for s in submissions) / 6, abs=1e-3)

    by_test = {}
    for s in submissions:
        for t in s["tests"]:
            by_test.setdefault(t["name"], []).append(t["score"] / t["max_score"])
    assert {t["name"]: pytest.approx(t["share"]) for t in data["tests"]} == {
        name: sum(shares) / len(shares) for name, shares in by_test.items()}

    expected = {}
    for s in submissions:
        taught = {(m["function"], "; ".join(k for k in m["mistake"].split("; ") if k not in (
            "not implemented", "forward: wrong", "backward: consistent with it"))) for m in s["mistakes"]}
        for pair in taught:
            if pair[1] and pair[1] != "raises":  # once per student and function; a consequence of another
                # function's mistake left out, and an exception (the failures and messages say it)
                expected[pair] = expected.get(pair, 0) + 1
    assert {(m["function"], m["mistake"]): m["count"] for m in data["mistakes"]} == expected
    assert expected, "the typical mistakes are recognized somewhere"
    stated = {key for _, mistake in expected for key in mistake.split("; ")}
    named = {key for m in MUTANTS if m.name in TYPICAL_MISTAKES for key in m.named}
    facts = {key for key in stated if key.startswith(("shape: ", "dtype: ", "raises", "forward: ", "backward: "))}
    facts.add("not implemented")  # the stubs
    assert stated - facts <= named, "only the typical mistakes' own diagnoses are stated"
    assert all({m["mistake"] for m in s["mistakes"]} <= {"not implemented"} for s in submissions
               if "mistakes" not in s["student"]), "the reference has none, the stubs are not implemented"
    assert [f["student"] for f in data["failures"]] == ["z_failed"]


def test_report_page_in_a_real_browser(graded, browser, tmp_path):
    course, document = graded
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "report", "--course", str(course), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "http://" not in out.read_text() and "https://" not in out.read_text(), "self-contained: no network"
    browser.get_log("browser")  # what earlier pages of this browser session logged is not this page's

    browser.get(out.as_uri())
    assert browser.title == "normlab class report", "a student's text must not run as script"
    widths = browser.execute_script("return [...document.images].map(i => [i.id, i.naturalWidth])")
    assert {name for name, width in widths if width > 0} == {"figure-histogram", "figure-tests", "figure-mistakes"}
    failures = browser.find_element("id", "failures").text
    assert "<script>" in failures and "onerror" in failures, "the failure's text is shown as text"
    said = [row.find_elements("tag name", "td")[1].text
            for row in browser.find_elements("css selector", "#mistakes tbody tr")]
    assert "the variance is the unbiased one (dividing by N - 1); normalization divides by N" in said, said
    assert not any(": " in text and len(text) < 30 for text in said), f"keys such as 'affine: neither': {said}"

    def column(index):
        rows = browser.find_elements("css selector", "#students tbody tr")
        return [row.find_elements("tag name", "td")[index].text for row in rows]

    score_header = browser.find_elements("css selector", "#students th")[1]
    score_header.click()
    ascending = [float(v) for v in column(1) if v]
    score_header.click()
    descending = [float(v) for v in column(1) if v]
    assert ascending == sorted(ascending) and descending == sorted(descending, reverse=True)
    assert len(column(0)) == 7
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
    browser.execute_script("window.scrollTo(0, 0)")  # the summary and the histogram first
    screenshot(browser, tmp_path, "report", "report.png")


def test_feedback_page_in_a_real_browser(graded, browser, tmp_path):
    from normgrade.results.feedback import generate_feedback

    course, document = graded
    student = next(s for s in document["submissions"] if "mistakes" in s["student"])
    pages = generate_feedback(course, student["student"])[student["student"]]
    assert [p.name for p in pages] == ["BatchNormalization.html", "SpatialNormalization.html"]
    seen = ""
    for page in pages:
        source = page.read_text()
        assert "HIDDEN TESTS" not in source and "normgrade" not in source, "no grading code in the page"
        browser.get(page.as_uri())
        seen += browser.find_element("tag name", "body").text
        rendered = browser.execute_script(
            "return document.querySelectorAll('.MathJax, .MathJax_CHTML, mjx-container').length")
        note = browser.find_element("id", "normlab-math-note")
        assert rendered > 0 or note.is_displayed(), "formulas rendered, or the page says why not"
        assert not (rendered > 0 and note.is_displayed()), "the note shows only when MathJax is missing"
        if page.stem == "BatchNormalization":  # the site shows the first graded cell's report
            browser.execute_script("document.querySelector('.nbgrader_cell').scrollIntoView()")
        screenshot(browser, tmp_path, page.stem, "feedback.png" if page.stem == "BatchNormalization" else None)
    lost = [t for t in student["tests"] if t["score"] < t["max_score"] and "test_inline" not in t["name"]]
    assert lost, "the typical mistakes lose points"
    for test in lost:
        first = " ".join(test["message"].split())[:60]  # the start of the scorer's report for that cell
        assert first in " ".join(seen.split()), f"{test['name']}: its message is not on the page"
        points = f"Points: {test['score']:g} of {test['max_score']:g}"
        assert points in seen, f"{test['name']}: its points are not said on the page (a bare Out[ ]: 0.0 once)"
    assert "<strong>" not in seen and "<p>" not in seen, "the points' markup is rendered, not shown as text"


def jupyter_server(module, cwd, log_path, *options, env=None):
    """
    Run `python -m MODULE` (jupyterlab, jupyter server) with this Python on a
    free local port with a fresh token, in its own session; yield (base URL,
    token) once it listens, and stop it after.
    """
    env = dict(env or os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    return jupyter_server_in([sys.executable, "-m", *module.split(), "--no-browser", "--ip=127.0.0.1", "--allow-root",
                              *options], cwd, log_path, env)


@pytest.fixture
def jupyterlab(graded, tmp_path):
    """A real JupyterLab server on a student's release copy (the reference and the right answers)."""
    import os

    from normgrade.score.notebooks import answer_keys, source_notebooks
    from normgrade.build.samples import make_submission, reference_layers

    course, _ = graded
    keys = answer_keys(source_notebooks(paths(course)["source"]))
    folder = make_submission(paths(course)["release"], tmp_path / "student", reference_layers(), keys)
    # NBGRADER_EXECUTION shrinks the experiments, as when nbgrader runs the notebooks.
    with jupyter_server("jupyterlab", folder, tmp_path / "jupyterlab.log", f"--ServerApp.root_dir={folder}",
                        "--LabApp.expose_app_in_browser=True",
                        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",  # no layout restored from another run
                        env=dict(os.environ, NBGRADER_EXECUTION="autograde")) as (url, token):
        yield url, token, folder


CURRENT = "const w = jupyterapp.shell.currentWidget;"


@pytest.mark.parametrize("notebook", ["BatchNormalization", "SpatialNormalization"])
def test_release_notebook_runs_in_jupyterlab(jupyterlab, browser, notebook, tmp_path):
    """A student's view: open the notebook in JupyterLab, run all cells; no error, every plot an image, prose answers."""
    url, token, folder = jupyterlab
    browser.get(f"{url}/lab/tree/{notebook}.ipynb?token={token}")
    deadline = time.monotonic() + 120
    while browser.execute_script("const w = window.jupyterapp && jupyterapp.shell.currentWidget;"
                                 "return w && w.context ? w.context.path : null;") != f"{notebook}.ipynb":
        assert time.monotonic() < deadline, "the notebook did not open"
        time.sleep(0.2)
    browser.set_script_timeout(600)
    outcome = browser.execute_async_script("""
const done = arguments[arguments.length - 1];
(async () => {
  const w = jupyterapp.shell.currentWidget;
  await w.context.ready;
  await w.sessionContext.ready;
  while (!(w.sessionContext.session && w.sessionContext.session.kernel
           && w.sessionContext.session.kernel.connectionStatus === 'connected')) {
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  done(String(await jupyterapp.commands.execute('notebook:run-all-cells')));
})().catch(error => done('error ' + error));""")
    assert outcome == "true", outcome
    cells = browser.execute_script(CURRENT + """
return [...w.content.widgets].map(c => {
  const outputs = [];
  if (c.model.type === 'code') { for (let i = 0; i < c.model.outputs.length; i++) outputs.push(c.model.outputs.get(i).toJSON()); }
  return {type: c.model.type, source: c.model.sharedModel.getSource(), count: c.model.executionCount === undefined ? null : c.model.executionCount,
          outputs: outputs, pre: c.node.querySelectorAll('.jp-RenderedMarkdown pre').length,
          images: [...c.node.querySelectorAll('.jp-RenderedImage img')].map(i => i.naturalWidth)};
});""")
    code = [c for c in cells if c["type"] == "code"]
    assert [c["source"][:80] for c in code if not c["count"]] == [], "every code cell ran"
    errors = [f"{o['ename']}: {o['evalue']}" for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert errors == []
    plots = [c for c in code if "plt.show()" in c["source"] or "plot_normalization_axes(" in c["source"]]
    assert plots, "the notebook has experiments with plots"
    for cell in plots:
        assert cell["images"] and all(width > 0 for width in cell["images"]), cell["source"][:200]
    answers = [c for c in cells if c["type"] == "markdown" and "Your answer" in c["source"]]
    assert answers and all(c["pre"] == 0 for c in answers), "answer cells render as prose, not code blocks"
    screenshot(browser, tmp_path, notebook, "jupyterlab.png" if notebook == "SpatialNormalization" else None)


def test_formgrader_manual_grade_reaches_the_gradebook_and_export(graded, browser, tmp_path):
    """An instructor's view: formgrader, a written answer, a score and a comment; the gradebook and the CSV hold them."""
    import csv

    from nbgrader.api import Gradebook

    from normgrade.course import COURSE_ID

    course, document = graded
    student = next(s["student"] for s in document["submissions"] if "mistakes" in s["student"])
    with Gradebook(db_url(course), COURSE_ID) as gb:
        notebook = gb.find_submission_notebook("BatchNormalization", "normalization", student)
        written = next(g for g in notebook.grades if g.cell.cell_type == "markdown")
        notebook_id, cell, points = notebook.id, written.name, written.max_score
    (tmp_path / "exchange").mkdir()
    with jupyter_server("jupyter server", course, tmp_path / "server.log",
                        f"--Exchange.root={tmp_path / 'exchange'}") as (url, token):
        browser.get(f"{url}/?token={token}")  # logs in (a cookie)
        browser.get(f"{url}/formgrader/submissions/{notebook_id}/")
        deadline = time.monotonic() + 60
        while not browser.execute_script(  # formgrader's script has filled in the auto scores
                "const i = document.getElementById('test_batchnorm_forward'); return !!(i && i.placeholder);"):
            assert time.monotonic() < deadline, "formgrader did not load the grades"
            time.sleep(0.2)
        from selenium.webdriver.common.keys import Keys

        score = browser.find_element("id", cell)
        score.clear()
        score.send_keys(str(points / 2), Keys.TAB)
        comment = browser.find_element("id", f"{cell}-comment")
        comment.clear()
        comment.send_keys("Right idea; say why the gradients vanish.", Keys.TAB)
        deadline = time.monotonic() + 30
        while True:
            with Gradebook(db_url(course), COURSE_ID) as gb:
                grade_row = gb.find_grade(cell, "BatchNormalization", "normalization", student)
                comment_row = gb.find_comment(cell, "BatchNormalization", "normalization", student)
                saved = (grade_row.manual_score, comment_row.manual_comment)
            if saved == (points / 2, "Right idea; say why the gradients vanish."):
                break
            assert time.monotonic() < deadline, f"formgrader did not save: {saved}"
            time.sleep(0.3)
        screenshot(browser, tmp_path, "formgrader", "formgrader.png")
    out = tmp_path / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "export", "--course", str(course), "--csv", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    row = next(r for r in csv.DictReader(out.open()) if r["student"] == student)
    assert float(row[f"BatchNormalization/{cell}"]) == points / 2
    students = [r["student"] for r in csv.DictReader(out.open())]
    assert students == sorted(students), "rows in the order of the ids"


def test_students_get_the_assignments_tab_and_validate_and_no_staff_panel(graded, browser, tmp_path):
    """
    In a student's environment (a fresh prefix with this one's packages, Jupyter settings and JupyterLab
    extensions, as conda would install them), `python -m normlab.setup_jupyter` leaves nbgrader's student
    plugins on and turns its staff panels off: seen in JupyterLab itself, and formgrader's page is gone.
    """
    import sysconfig
    import urllib.error
    import urllib.request

    from normgrade.score.notebooks import answer_keys, source_notebooks
    from normgrade.build.samples import make_submission, reference_layers

    course, _ = graded
    folder = make_submission(paths(course)["release"], tmp_path / "student", reference_layers(),
                             answer_keys(source_notebooks(paths(course)["source"])))
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this one's packages
    shutil.copytree(Path(sys.prefix) / "etc" / "jupyter", env_dir / "etc" / "jupyter")  # nbgrader's extensions, on
    (env_dir / "share").mkdir()
    (env_dir / "share" / "jupyter").symlink_to(Path(sys.prefix) / "share" / "jupyter")
    env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "JUPYTER_CONFIG_DIR": str(tmp_path / "user-config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([str(python), "-m", "normlab.setup_jupyter"], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    log = tmp_path / "lab.log"
    server = [str(python), "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", "--allow-root",
              "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={folder}"]
    with jupyter_server_in(server, folder, log, env) as (url, token):
        browser.get(f"{url}/lab?token={token}")
        deadline = time.monotonic() + 120
        while not browser.execute_script("return !!(window.jupyterapp && jupyterapp.started);"):
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        browser.execute_async_script("const done = arguments[arguments.length - 1]; jupyterapp.restored.then(() => done());")
        active = browser.execute_script(
            "return ['assignment-list', 'validate-assignment', 'formgrader', 'create-assignment', 'course-list']"
            ".map(p => jupyterapp.hasPlugin('@jupyter/nbgrader:' + p));")
        assert active == [True, True, False, False, False], active
        commands = browser.execute_script(
            "return ['nbgrader:open-assignment-list', 'nbgrader:open-formgrader', 'nbgrader:open-create-assignment']"
            ".map(c => jupyterapp.commands.hasCommand(c));")
        assert commands == [True, False, False], commands
        with pytest.raises(urllib.error.HTTPError) as gone:
            urllib.request.urlopen(f"{url}/formgrader?token={token}", timeout=30)
        assert gone.value.code == 404, "formgrader's server extension is off"
        try:  # its handler answers (here, with no exchange set up, that the request lacks a course)
            status = urllib.request.urlopen(f"{url}/assignments?token={token}", timeout=30).status
        except urllib.error.HTTPError as err:
            status = err.code
        assert status != 404, "the assignment list's server extension is on"


@contextlib.contextmanager
def jupyter_server_in(argv, cwd, log_path, env):
    """
    Run the server `argv` (with a free port and a fresh token added) in `env`,
    in its own session; yield (base URL, token) once it listens, and stop it after.
    """
    import secrets
    import signal
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = secrets.token_hex(16)
    with open(log_path, "w") as log:
        server = subprocess.Popen([*argv, f"--port={port}", f"--IdentityProvider.token={token}"], cwd=cwd, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline and server.poll() is None, Path(log_path).read_text()[-3000:]
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}", token
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
