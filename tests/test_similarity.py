"""
normgrade similarity: the evidence its threshold was chosen on, and the command on a graded course.

The evidence (tests/data/similarity/): ten implementations of the nine
functions written independently of each other and of this project's code
(a1-a5 and b1-b5, in different styles: vectorized, step-by-step graphs,
loops, shared helpers, reuse of batch norm through transposes; a5 and b5 with
two bugs each, written at the top), plus the reference and
tests/data/cs231n_layers.py. Every pair of them is an independent pair; every
disguise of tests/disguise.py applied to each of them (names changed,
functions reordered, comments and spacing changed, functions split in two,
dead code added, all at once; several seeds) is a copy. At the default
threshold every copy is flagged and no independent pair is.
"""
import html
import itertools
import json
import types
from pathlib import Path

import numpy as np
import pytest

from disguise import DISGUISES
from normgrade.results import similarity
from normgrade.paths import STUDENT_PACKAGE
from normgrade.build.samples import reference_layers

# one pytest-xdist worker runs them all: module-scoped evidence
pytestmark = pytest.mark.xdist_group("similarity")

EVIDENCE = Path(__file__).parent / "data" / "similarity"
SEEDS = (0, 1, 2)


def _evidence():
    texts = {p.name: p.read_text() for p in sorted(EVIDENCE.glob("*.py"))}
    texts["reference.py"] = reference_layers()
    texts["cs231n_layers.py"] = (Path(__file__).parent / "data" / "cs231n_layers.py").read_text()
    return texts


@pytest.fixture(scope="module")
def evidence():
    boilerplate = similarity.stub_boilerplate()
    texts = _evidence()
    docs = {name: similarity.document(name, "reference", text, boilerplate) for name, text in texts.items()}
    copies = {(name, disguise, seed): similarity.document(f"{name} ({disguise})", "submission", make(text, seed=seed),
                                                          boilerplate)
              for name, text in texts.items() for disguise, make in DISGUISES.items() for seed in SEEDS}
    return texts, docs, copies


def test_the_default_threshold_flags_every_disguised_copy_and_no_independent_pair(evidence):
    texts, docs, copies = evidence
    assert len(texts) == 12 and not any(d.problem for d in list(docs.values()) + list(copies.values()))
    independent = {(a, b): similarity.compare(docs[a], docs[b]).similarity for a, b in itertools.combinations(docs, 2)}
    disguised = {key: similarity.compare(docs[key[0]], copy).similarity for key, copy in copies.items()}
    flagged = {k: v for k, v in independent.items() if v >= similarity.THRESHOLD}
    missed = {k: v for k, v in disguised.items() if v < similarity.THRESHOLD}
    by_disguise = {d: min(v for (_, name, _), v in disguised.items() if name == d) for d in DISGUISES}
    print(f"\nthreshold {similarity.THRESHOLD}: {len(disguised) - len(missed)} of {len(disguised)} disguised copies "
          f"flagged (lowest per disguise: {', '.join(f'{d} {v:.2f}' for d, v in by_disguise.items())}); "
          f"{len(flagged)} of {len(independent)} independent pairs flagged (highest {max(independent.values()):.2f})")
    assert flagged == {} and missed == {}
    assert max(independent.values()) < similarity.THRESHOLD - 0.05 < min(disguised.values()) - 0.1  # a margin both ways


def test_a_file_and_itself_are_one_and_the_stub_is_nothing(evidence):
    _, docs, _ = evidence
    assert similarity.compare(docs["b1.py"], docs["b1.py"]).similarity == pytest.approx(1.0)
    stub = (STUDENT_PACKAGE / "layers.py").read_text()
    assert similarity.document("stub", "submission", stub, similarity.stub_boilerplate()).problem == \
        "not compared: nothing of its own beyond the stub"


def _in_stub(text, functions, stub=None):
    """A student's layers.py: the stub with `functions` of `text` written in (the others left as the stub's)."""
    import ast

    stub = stub or (STUDENT_PACKAGE / "layers.py").read_text()
    tree = ast.parse(text)
    kept = [ast.get_source_segment(text, n) for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in functions]
    return stub + "\n\n" + "\n\n".join(kept) + "\n"


@pytest.mark.parametrize("language", ["zh_CN", "vi"])
def test_a_course_s_translated_stub_is_boilerplate_as_the_english_one_is(language):
    """
    In a course given in another language, the stubs a student left as released (their translated comments
    and messages) are nobody's own lines: two students who left the same ones are not alike for that.
    """
    from normgrade.build.submission import stub_layers

    english, translated = (STUDENT_PACKAGE / "layers.py").read_text(), stub_layers(language)
    boilerplate = similarity.stub_boilerplate(english, translated)
    assert similarity.document("left", "submission", translated, boilerplate).problem == \
        "not compared: nothing of its own beyond the stub"
    written = ["batchnorm_forward", "layernorm_forward"]
    in_english = similarity.document("en", "submission", _in_stub(reference_layers(), written), boilerplate)
    in_translated = similarity.document(language, "submission", _in_stub(reference_layers(), written, translated),
                                        boilerplate)
    assert in_translated.own_lines == in_english.own_lines and in_english.own_lines


def test_students_who_wrote_a_few_short_functions_alike_are_not_flagged():
    """
    A student who wrote only some functions shares a large part of them with
    anyone who wrote the textbook: a share is of at least MIN_CODE, so two
    independent partial submissions, or one against a full one, stay below.
    """
    boilerplate = similarity.stub_boilerplate()
    texts = _evidence()
    partial = {}
    for functions in (("spatial_batchnorm_forward", "spatial_batchnorm_backward"),
                      ("batchnorm_forward", "layernorm_forward", "spatial_batchnorm_forward", "spatial_groupnorm_forward")):
        for name, text in texts.items():
            partial[name, functions] = similarity.document(name, "submission", _in_stub(text, functions), boilerplate)
    full = {name: similarity.document(name, "reference", text, boilerplate) for name, text in texts.items()}
    scores = [similarity.compare(a, b).similarity for a, b in itertools.combinations(partial.values(), 2)
              if a.name != b.name]
    scores += [similarity.compare(a, full[name]).similarity for (owner, _), a in partial.items() for name in full
               if name != owner]
    print(f"\npartial submissions: {len(scores)} independent pairs, highest {max(scores):.2f}")
    assert max(scores) < similarity.THRESHOLD


def test_a_short_copy_is_flagged_however_short_and_independent_short_code_is_not():
    """
    Two students' few functions, identical but for one line (names and
    comments too), are a copy: flagged, though under MIN_CODE. The same
    functions written independently (the evidence's other authors) stay below.
    """
    boilerplate = similarity.stub_boilerplate()
    texts = _evidence()
    functions = ("batchnorm_forward", "layernorm_forward")
    tested = 0
    for name, text in texts.items():
        mine = _in_stub(text, functions)
        edited = mine.splitlines()
        own = [i for i, line in enumerate(edited) if "=" in line and line.startswith("    ") and "#" not in line]
        edited[own[len(own) // 2]] += "  # checked"  # one line differs
        a = similarity.document(f"{name} (a)", "submission", mine, boilerplate)
        b = similarity.document(f"{name} (b)", "submission", "\n".join(edited) + "\n", boilerplate)
        if min(len(a.own_lines), len(b.own_lines)) < similarity.MIN_IDENTICAL_LINES:
            continue  # too few lines of its own to tell a copy from the textbook
        pair = similarity.compare(a, b)
        assert pair.similarity >= similarity.THRESHOLD and pair.identical >= similarity.IDENTICAL, (name, pair.shares)
        tested += 1
    assert tested >= len(texts) // 2, f"only {tested} authors wrote these functions in enough lines to test"
    partial = [similarity.document(name, "submission", _in_stub(text, functions), boilerplate)
               for name, text in texts.items()]
    alike = [similarity.compare(a, b).identical for a, b in itertools.combinations(partial, 2)]
    print(f"\nshort independent pairs: highest identity of lines as written {max(alike):.2f}")
    assert max(alike) < similarity.IDENTICAL and max(similarity.compare(a, b).similarity for a, b in
                                                     itertools.combinations(partial, 2)) < similarity.THRESHOLD


def test_code_hidden_in_a_class_a_branch_or_an_exec_string_is_compared():
    boilerplate = similarity.stub_boilerplate()
    text = _evidence()["b1.py"]
    original = similarity.document("b1", "submission", text, boilerplate)
    body = "\n".join("    " + line for line in text.splitlines())
    hidden = {
        "class": f"class Hidden:\n{body}\n",
        "branch": f"if True:\n{body}\n",
        "exec": f"exec({text!r})\n",
    }
    for how, copy in hidden.items():
        doc = similarity.document(how, "submission", copy, boilerplate)
        assert similarity.compare(original, doc).similarity >= 0.9, how
    built = similarity.document("built", "submission", "code = 'x = ' + '1'\nexec(code)\n", boilerplate)
    assert "runs code built at run time (exec on line 2)" in " ".join(built.notes)


@pytest.mark.parametrize("disguise", DISGUISES)
def test_each_disguise_computes_what_its_original_computes(evidence, disguise):
    """A disguise is only evidence if it is still the same code: its forward and backward passes agree with the original's."""
    texts, _, _ = evidence
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.standard_normal((6, 4)) * 2 + 1, rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))
    x4, dout4 = rng.standard_normal((2, 4, 3, 2)), rng.standard_normal((2, 4, 3, 2))
    g4, b4 = rng.standard_normal((1, 4, 1, 1)), rng.standard_normal((1, 4, 1, 1))
    for name in ("a1.py", "b1.py", "a3.py", "reference.py"):
        original, copy = (_module(t) for t in (texts[name], DISGUISES[disguise](texts[name], seed=1)))
        for L in (original, copy):
            out, cache = L.batchnorm_forward(x.copy(), gamma, beta, {"mode": "train"})
            L.result = [out, *L.batchnorm_backward(dout, cache)]
            out, cache = L.spatial_groupnorm_forward(x4.copy(), g4, b4, 2, {})
            L.result += [out, *L.spatial_groupnorm_backward(dout4, cache)]
        for a, b in zip(original.result, copy.result):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"{name}, {disguise}")


def _module(text):
    module = types.ModuleType("layers_copy")
    if "from .backend import" in text:  # the reference: its package's helpers
        text = text.replace("from .backend import namespace_of", "from normlab.backend import namespace_of")
    exec(compile(text, "layers_copy.py", "exec"), module.__dict__)
    return module


# ---- the command on a graded course --------------------------------------------------------------

HOSTILE = '''

def batchnorm_forward(x, gamma, beta, bn_param):
    note = "</pre><script>alert('similarity')</script><img src=x onerror=alert(1)>"
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mu) / np.sqrt(var + bn_param.get("eps", 1e-5))
    bn_param["running_mean"] = 0.9 * bn_param.get("running_mean", np.zeros(x.shape[1])) + 0.1 * mu
    bn_param["running_var"] = 0.9 * bn_param.get("running_var", np.zeros(x.shape[1])) + 0.1 * var
    return gamma * x_hat + beta, (x_hat, gamma, var, note)
'''


@pytest.mark.slow
def test_the_command_ranks_copies_escapes_everything_and_the_report_summarizes_it(tmp_path, sandbox, course_copy):
    from normgrade import cli
    from normgrade.grade.class_run import grade
    from normgrade.course import paths
    from normgrade.results.report import write_report
    from normgrade.build.samples import make_submission

    course = course_copy(tmp_path / "course")
    release = paths(course)["release"]
    texts = _evidence()
    class_folder = tmp_path / "class"
    make_submission(release, class_folder / "ann", texts["a2.py"])
    make_submission(release, class_folder / "bob", DISGUISES["all at once"](texts["a2.py"], seed=3))  # ann's, disguised
    make_submission(release, class_folder / "cat", texts["b1.py"])
    make_submission(release, class_folder / "dan", texts["b1.py"] + HOSTILE)  # cat's, and a hostile string
    make_submission(release, class_folder / "eve", texts["a4.py"].replace("def ", "def  (", 1))  # does not parse
    grade([class_folder], course)
    web = tmp_path / "web"
    web.mkdir()
    (web / "solution.py").write_text(DISGUISES["renamed"](texts["b3.py"], seed=2))  # a public solution...
    make_submission(release, class_folder / "fay", texts["b3.py"])  # ...that fay's code is
    grade([class_folder / "fay"], course)

    out = tmp_path / "similarity.html"
    assert cli.main(["similarity", "--course", str(course), "--against", str(web), "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    flagged = {(p["a"], p["b"]) for p in data["pairs"] if p["flagged"]}
    assert flagged == {("ann", "bob"), ("cat", "dan"), ("fay", f"{web.as_posix()}/solution.py")}
    assert data["pairs"][0]["similarity"] >= data["pairs"][-1]["similarity"]
    assert {d["name"]: d["problem"] for d in data["documents"] if d["problem"]} == {
        "eve": "not compared: it is not valid Python (SyntaxError)"}
    page = out.read_text()
    tags = _tags(page)
    assert "script" not in {t for t, _ in tags} and not [a for _, attrs in tags for a, _ in attrs if a.startswith("on")]
    assert html.escape("</pre><script>alert('similarity')</script>") in page
    assert "a reason to look, never proof" in page.lower()
    assert "<mark>" in page and "http" not in page.replace("http-equiv", "")
    assert "\n\n\n" not in page, "no tall blank gaps where the docstrings were"
    report = write_report(course, tmp_path / "report.html")
    assert {(p["a"], p["b"]) for p in report["similarity"]["flagged"]} == flagged
    assert "3 of" in (tmp_path / "report.html").read_text()


def _tags(page):
    """(tag, attributes) of every element the browser would make of the page."""
    from html.parser import HTMLParser

    found = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Tags().feed(page)
    return found


def test_bad_input_is_refused_with_a_reason(tmp_path, capsys):
    from normgrade import cli

    assert cli.main(["similarity", "--course", str(tmp_path / "nowhere")]) == 2
    assert "is not a course built by" in capsys.readouterr().err
    assert cli.main(["similarity", "--course", str(tmp_path), "--threshold", "2"]) == 2
    assert "the threshold must be above 0 and at most 1, not 2" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="--against .*: no such folder"):
        similarity.folder_documents(tmp_path / "missing", similarity.stub_boilerplate())
    (tmp_path / "one.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="not a folder"):
        similarity.folder_documents(tmp_path / "one.py", similarity.stub_boilerplate())
    with pytest.raises(ValueError, match="ending in .html"):
        similarity.write(tmp_path, tmp_path / "page.json")


def test_an_against_folder_of_odd_files_is_listed_never_crashes(tmp_path):
    import os

    folder = tmp_path / "web"
    (folder / "dir.py").mkdir(parents=True)  # a folder named like a file
    (folder / "deep.py").write_text("x = " + "-" * 5000 + "1\n")  # too deep for the parser
    (folder / os.fsdecode(b"bad\xffname.py")).write_text("def f(x):\n    return x\n")
    (folder / "rlo\u202egnp.py").write_text("def f(x):\n    return x * 2\n")
    (folder / "link.py").symlink_to("/etc/passwd")
    (folder / "ok.py").write_text(_evidence()["b1.py"])
    found = {d.name: d.problem for d in similarity.folder_documents(folder, similarity.stub_boilerplate())}
    assert f"{folder.as_posix()}/dir.py" not in found  # a folder, walked into (empty), not a file
    assert found[f"{folder.as_posix()}/link.py"] == "not compared: not a regular file (a link, a folder or a pipe)"
    assert found[f"{folder.as_posix()}/deep.py"].startswith("not compared: it is not valid Python")
    assert found[f"{folder.as_posix()}/ok.py"] == ""
    assert f"{folder.as_posix()}/bad\\udcffname.py" in found  # the name as an escape, never a crash
    assert f"{folder.as_posix()}/rlo\\u202egnp.py" in found  # no bidi control reaches the page
