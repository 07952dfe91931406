"""
The students' languages (normgrade.language, normlab.i18n): one English source, a complete catalog each.

Every message of the source (babel.cfg says where they are) is translated in
every catalog, keeping its format fields, code, formulas and markup and the
glossary's terms; the release in a language is the English release with its
text, and only its text, translated; the self-check speaks the student's
language and names the same mistakes in it.
"""
import ast
import functools
import gettext
import io
import json
import os
import re
import subprocess
import sys

import nbformat
import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

from normgrade import language as languages
from normgrade.build.samples import TYPICAL_MISTAKES, mutant_layers, reference_layers
from normgrade.build.stubs import TODO
from normgrade.build.submission import assemble_stubs, stub_layers
from normgrade.paths import NOTEBOOKS, STUB_LAYERS
from normgrade.score.notebooks import source_notebooks
from normgrade.language import STUB_MESSAGE, speaking
from normgrade.run.sandbox import Limits
from normgrade.score import checks, diagnosis, scorer
from normlab import i18n

TRANSLATED = languages.LANGUAGES[1:]
pytestmark = pytest.mark.xdist_group("language")  # the module's courses, built once, on one worker
CJK = re.compile(r"[\u4e00-\u9fff]")
VIETNAMESE = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.I)
IN_LANGUAGE = {"zh_CN": CJK, "vi": VIETNAMESE}


@functools.lru_cache(maxsize=None)
def _english_pieces(language):
    """Each piece of a catalog's message between its fields, of three words or more, its translation does not keep."""
    found = set()
    for message in languages.read_catalog(language):
        if not message.id or not message.string:
            continue
        english = message.id[0] if isinstance(message.id, tuple) else message.id
        translated = " ".join(" ".join(message.string if isinstance(message.string, tuple) else
                                       [message.string]).split())
        for piece in re.split(r"\{[^{}]*\}", english):
            piece = " ".join(piece.split()).strip(" .,;:()")
            if len(piece) >= 16 and len(re.findall(r"[A-Za-z]{2,}", piece)) >= 3 and piece not in translated:
                found.add(piece)
    return frozenset(found)


def _english_left(text, language):
    """
    The English of the catalog's messages still in `text` (_english_pieces:
    a formula or a name a translation keeps is not English left).
    """
    said = " ".join(re.sub(r"[（(][^（）()]*[)）]", " ", text).split())  # an English term in brackets is the glossary's
    return sorted(piece for piece in _english_pieces(language) if piece in said)


# ---- the catalogs ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source():
    return languages.source_messages()


def test_the_source_has_the_messages_students_read(source):
    ids = {m[0] if isinstance(m, tuple) else m for m in source}
    for message in (STUB_MESSAGE, TODO, languages.ANSWER_HERE, "not started", "passes the public checks",
                    "## Batch normalization: forward pass", "Forward pass for batch normalization.",
                    "the variance is the unbiased one (dividing by N - 1); normalization divides by N"):
        assert message in ids, message
    assert len(ids) > 250


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_keeping_its_fields_markup_and_terms(language, source):
    problems = languages.catalog_problems(language, source)
    assert not problems, f"the {language} catalog (run `make catalogs`, then translate):\n" + "\n".join(
        f"- {message!r}: {'; '.join(why)}" for message, why in problems.items())


def test_a_message_added_in_english_alone_fails_naming_it(source):
    added = {**source, "A new check of {function} nobody translated": ["x.py:1"]}
    assert languages.catalog_problems("zh_CN", added) == {
        "A new check of {function} nobody translated": ["not translated"]}


@pytest.mark.parametrize("english, translated, problem", [
    ("{name} has shape {shape}", "{name} 的形状", "format fields"),
    ("{name} has shape {shape}", "{name} 的形状是 {form}", "format fields"),
    ("relative error {error:.1e}", "相对误差 {error}", "format fields"),
    ("{name} has shape {shape}", "{name} 的形状是 {shape} {}", "format fields"),
    ("{name} has shape {shape}", "{name} 的形状是 {shape} {0}", "format fields"),
    ("{name} has shape {shape}", "{name} 的形状是 {shape!r}", "format fields"),
    ("{name} has shape {shape}", "{name} 的形状是 {shape", "format fields"),
    ("Implement `batchnorm_forward`.", "实现 `batchnorm_vorwärts`。", "code spans"),
    ("the mean $\\mu_j$ of feature j", "特征 j 的均值 $\\mu$", "formulas"),
    ("## Layer normalization", "### 层归一化", "heading"),
    ("**Your answer:**", "你的答案：", "bold marks"),
    ("- **a.** one\n- **b.** two", "- **a.** 一；**b.** 二", "list items"),
    ("See <https://arxiv.org/abs/1502.03167>.", "见 https://arxiv.org/abs/1502.03168。", "URLs"),
])
def test_a_translation_that_loses_a_field_code_or_markup_fails(english, translated, problem):
    assert any(found.startswith(problem) for found in languages.message_problems(english, translated))


def test_a_faithful_translation_passes():
    assert languages.message_problems("{name} has shape {shape}, expected `(N, D)`",
                                      "{name} 的形状是 {shape}，应为 `(N, D)`") == []


def test_the_glossary_is_enforced():
    assert languages.glossary_problems("Implement batch normalization.", "实现批归一化。", "zh_CN") == [
        "'batch normalization' is not '批量归一化'"]
    assert languages.glossary_problems("Implement batch normalization.", "实现批量归一化。", "zh_CN") == []
    assert languages.glossary_problems("call `batch normalization`", "调用 `batch normalization`", "vi") == []
    terms = languages.glossary()
    assert {"batch normalization", "layer normalization", "group normalization", "variance", "gradient",
            "forward pass", "backward pass", "running mean"} <= {t["en"] for t in terms}
    assert all(t["zh_CN"] and t["vi"] and t["enforced"] in ("yes", "no") for t in terms)


# ---- the release's text --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", source_notebooks(NOTEBOOKS), ids=lambda p: p.name)
def test_a_cell_is_its_units_and_english_leaves_it_as_it_is(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type in ("markdown", "code"):
            assert "".join(text for _unit, text in languages.cell_units(cell.cell_type, cell.source)) == cell.source
            assert languages.translate_source(cell.cell_type, cell.source, lambda m: m) == cell.source


@pytest.mark.parametrize("path", source_notebooks(NOTEBOOKS), ids=lambda p: p.name)
def test_the_notebooks_never_call_a_bare_underscore_which_students_rebind(path):
    """`out, _ = batchnorm_forward(...)` in a student's cell must not break a later plot's words: i18n._ is used."""
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            code = "".join("\n" if line.lstrip().startswith("%") else line
                           for line in cell.source.splitlines(keepends=True))
            tree = ast.parse(code)
            assert not [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Name) and node.func.id == "_"], cell.source
            assert not [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "i18n"
                        and isinstance(node.ctx, ast.Store)], cell.source


def _code_lines(source):
    """The lines of a cell that are code (its full-line comments left out)."""
    return [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("language", TRANSLATED)
@pytest.mark.parametrize("path", source_notebooks(NOTEBOOKS), ids=lambda p: p.name)
def test_a_translated_notebook_changes_text_only(language, path):
    english = nbformat.read(path, as_version=4)
    translated = languages.translate_notebook(nbformat.read(path, as_version=4), language)
    assert len(translated.cells) == len(english.cells)
    untranslated = []
    for before, after in zip(english.cells, translated.cells):
        assert before.metadata == after.metadata and before.cell_type == after.cell_type
        assert _code_lines(before.source) == _code_lines(after.source) or before.cell_type == "markdown"
        for unit, _text in languages.cell_units(before.cell_type, before.source):
            if unit is not None and unit in after.source:
                untranslated.append(unit)
        for region in re.findall(r"### BEGIN SOLUTION.*?### END SOLUTION", before.source, re.S):
            assert region in after.source  # the staff's rubrics and solutions stay as they are
    assert not untranslated, f"English left in {path.name}: {untranslated}"


def _without_docstrings(source):
    """The module's syntax tree without its docstrings and with the stubs' messages blanked, as text."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            node.exc.args = []
    return ast.dump(tree)


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_translated_stubs_are_the_same_code_with_their_text_translated(language):
    english, translated = STUB_LAYERS.read_text(), stub_layers(language)
    assert _without_docstrings(translated) == _without_docstrings(english)
    english_paragraphs = {p for node in ast.walk(ast.parse(english)) if isinstance(
        node, (ast.Module, ast.FunctionDef)) and ast.get_docstring(node) for p in
        languages.docstring_units(ast.get_docstring(node))}
    catalog = languages.read_catalog(language)
    for node in ast.walk(ast.parse(translated)):
        if isinstance(node, (ast.Module, ast.FunctionDef)) and ast.get_docstring(node):
            doc = ast.get_docstring(node)
            kept = [p for p in languages.docstring_units(doc) if p in english_paragraphs]
            assert all(catalog[p].string == p for p in kept), (node.name, kept)  # a formula the translator kept
            assert IN_LANGUAGE[language].search(doc), getattr(node, "name", "module")
    said = languages.translations(language).gettext
    assert said(STUB_MESSAGE).format(name="batchnorm_forward") in translated
    assert "# " + said(TODO).format(name="layernorm_backward") in translated
    assert "Store the updated" not in translated


def test_the_release_package_speaks_the_course_language_and_ships_only_normlab_s_messages(tmp_path):
    package = assemble_stubs(tmp_path, "vi")
    assert (package / "locale" / "COURSE_LANGUAGE").read_text().strip() == "vi"
    assert sorted(p.relative_to(package).as_posix() for p in (package / "locale").rglob("*") if p.is_file()) == [
        "locale/COURSE_LANGUAGE", "locale/vi/LC_MESSAGES/normlab.mo", "locale/zh_CN/LC_MESSAGES/normlab.mo"]
    with open(package / "locale" / "zh_CN" / "LC_MESSAGES" / "normlab.mo", "rb") as mo:
        shipped = gettext.GNUTranslations(mo)
    assert shipped.gettext("not started") != "not started"  # the self-check's
    assert CJK.search(shipped.gettext("the variance is the unbiased one (dividing by N - 1); normalization divides "
                                      "by N"))  # the diagnosis's words, which mistakes.npz names
    assert shipped.gettext("## Batch normalization: forward pass") == "## Batch normalization: forward pass"  # baked in
    assert shipped.gettext("running mean and variance in bn_param after one train step") == (
        "running mean and variance in bn_param after one train step")  # the grader's words stay with the grader
    plots = [message for path in source_notebooks(NOTEBOOKS) for _line, function, message, _notes in
             languages.extract_notebook(open(path, "rb"), {"_": None}, [], {}) if function == "_"]
    assert len(plots) >= 10 and all(CJK.search(shipped.gettext(message)) for message in plots), (
        [m for m in plots if not CJK.search(shipped.gettext(m))])  # the notebooks' code speaks as it runs


@pytest.mark.parametrize("language", languages.LANGUAGES)
def test_the_release_proof_knows_a_stub_s_error_in_every_language_however_wrapped(language, monkeypatch):
    from normgrade.build.release import _stub_error
    from normlab.check import ChecksFailed

    said = languages.translations(language).gettext(STUB_MESSAGE).format(name="spatial_groupnorm_backward")
    for width in (80, 24, 9):
        monkeypatch.setattr(ChecksFailed, "WIDTH", width)
        assert _stub_error(str(ChecksFailed("spatial_groupnorm_backward", said))), width
        assert not _stub_error(str(ChecksFailed("spatial_groupnorm_backward", "raised ValueError: boom")))


# ---- the student's language ----------------------------------------------------------------------------

@pytest.mark.parametrize("environ, chosen", [
    ({"NORMLAB_LANGUAGE": "vi", "LANG": "zh_CN.UTF-8"}, ["vi"]),
    ({"LANG": "zh_CN.UTF-8"}, ["zh_CN.UTF-8"]),
    ({"LANGUAGE": "vi:en", "LANG": "zh_CN.UTF-8"}, ["vi", "en"]),
    ({"LC_ALL": "C.UTF-8", "LANG": "vi_VN.UTF-8"}, ["en"]),  # C: nobody chose; the course's (English here)
    ({"LANG": "POSIX"}, ["en"]),
    ({}, ["en"]),
])
def test_the_student_s_locale_chooses_the_language(environ, chosen):
    assert i18n.languages(environ) == chosen


def _run_self_check(root, **environ):
    env = {key: value for key, value in os.environ.items()
           if key not in ("LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "NORMLAB_LANGUAGE")}
    return subprocess.run([sys.executable, "-m", "normlab.check"], cwd=root, capture_output=True, text=True,
                          env={**env, **environ, "PYTHONPATH": str(root)}, timeout=300).stdout


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_self_check_follows_the_course_then_the_student(language, tmp_path):
    assemble_stubs(tmp_path, language)
    course = _run_self_check(tmp_path, LANG="C.UTF-8")
    assert IN_LANGUAGE[language].search(course) and "not started" not in course
    assert not _english_left(course, language)
    other = "vi" if language == "zh_CN" else "zh_CN"
    assert IN_LANGUAGE[other].search(_run_self_check(tmp_path, LANG="C.UTF-8", NORMLAB_LANGUAGE=other))
    english = _run_self_check(tmp_path, LANG="en_US.UTF-8")  # the stubs' own errors stay in the course's language
    assert "not started" in english and "functions pass the public checks" in english
    assert _english_left(english, language), "the check sees English where it is"


def test_a_plot_s_chinese_words_have_a_font(tmp_path):
    """The notebooks' plots (their words through _()) find a font with every character, where one is installed."""
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = i18n.plot_fonts(plt.rcParams["font.family"])
    if families == list(plt.rcParams["font.family"]):
        if os.environ.get("CI"):
            pytest.fail("CI must have a Chinese font (.ci/run installs fonts-noto-cjk)")
        pytest.skip("no Chinese font here (apt-get install fonts-noto-cjk)")
    title = languages.translations("zh_CN").gettext("best validation accuracy vs batch size")
    assert CJK.search(title)
    for chosen, missing in ((plt.rcParams["font.family"], True), (families, False)):
        with plt.rc_context({"font.family": chosen}), warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            figure, axes = plt.subplots()
            axes.set(title=title, xlabel=languages.translations("zh_CN").gettext("batch size"))
            figure.savefig(tmp_path / "plot.png")
            plt.close(figure)
        assert any("missing from font" in str(w.message) for w in said) == missing, [str(w.message) for w in said]


def _named(layers):
    """{(function, check): (parts named, message)} of the public checks that name a mistake."""
    from normlab import check

    found = {}
    for function, checks in check.PUBLIC_CHECKS.items():
        for public in checks:
            try:
                public(layers)
            except check.Named as named:
                found[function, public.__name__] = (named.parts, str(named))
            except Exception:  # noqa: BLE001 - a check that fails without naming is not compared here
                pass
    return found


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_self_check_names_the_same_mistakes_in_every_language(language, monkeypatch, tmp_path):
    from normgrade.build.submission import imported_package

    root = tmp_path / "student"
    assemble_stubs(root)
    (root / "normlab" / "layers.py").write_text(mutant_layers(*TYPICAL_MISTAKES))
    with imported_package(root) as normlab:
        import importlib

        layers = importlib.import_module("normlab.layers")
        monkeypatch.setenv("NORMLAB_LANGUAGE", "en")
        english = _named(layers)
        monkeypatch.setenv("NORMLAB_LANGUAGE", language)
        translated = _named(layers)
        assert normlab.__file__.startswith(str(root))
    assert len(english) >= 3
    assert {key: parts for key, (parts, _m) in translated.items()} == {
        key: parts for key, (parts, _m) in english.items()}
    for key, (_parts, message) in translated.items():
        assert IN_LANGUAGE[language].search(message), (key, message)
        assert message != english[key][1] and not _english_left(message, language), (key, message)


# ---- a course in each language, graded and given back --------------------------------------------------

HOSTILE_ANSWER = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"> 答案 câu"


@pytest.fixture(scope="module")
def graded_in(tmp_path_factory, sandbox, course_copy):
    """
    {language: (course, {student: result})}: the reference, the stubs and the
    typical mistakes (with a hostile written answer), graded in a course of
    each language; a translated course is built with its proof (the reference
    gets full marks, the stubs no code points, every released cell runs).
    """
    from normgrade.build.demo import WRONG_ANSWERS
    from normgrade.build.release import build_course, course_seed
    from normgrade.build.samples import make_submission
    from normgrade.course import paths
    from normgrade.grade.class_run import grade
    from normgrade.score.notebooks import answer_keys

    found = {}
    for language in languages.LANGUAGES:
        root = tmp_path_factory.mktemp(language)
        course = root / "course"
        if language == languages.SOURCE_LANGUAGE:
            course_copy(course)
            seed = course_seed(course)
        else:  # the English course's hidden inputs: a diagnosis depends on them (its proof raises unless it holds)
            build_course(course, language=language, seed=seed)
        release, keys = paths(course)["release"], answer_keys(source_notebooks(paths(course)["source"]))
        submissions = root / "submissions"

        def own(source):  # a student's code under the docstrings of their release's stubs
            return languages.translate_docstrings(source, language) if language != languages.SOURCE_LANGUAGE \
                else source

        make_submission(release, submissions / "reference", own(reference_layers()), keys)
        make_submission(release, submissions / "stubs")
        make_submission(release, submissions / "typical_mistakes", own(mutant_layers(*TYPICAL_MISTAKES)),
                        {**keys, **WRONG_ANSWERS})
        notebook = submissions / "typical_mistakes" / "BatchNormalization.ipynb"
        nb = nbformat.read(notebook, as_version=4)
        answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "inline_weight_scale")
        answer.source = HOSTILE_ANSWER
        nbformat.write(nb, notebook)
        document = grade([submissions], course)
        found[language] = (course, {r["student"]: r for r in document["submissions"]})
    return found


def _tests(result):
    return {t["name"]: t for t in result["tests"]}


@pytest.mark.parametrize("language", TRANSLATED)
def test_a_course_in_each_language_grades_and_diagnoses_as_in_english(graded_in, language):
    english, translated = graded_in["en"][1], graded_in[language][1]
    assert set(english) == set(translated) == {"reference", "stubs", "typical_mistakes"}
    assert translated["reference"]["score"] == translated["reference"]["max_score"] > 0
    for student in english:
        before, after = _tests(english[student]), _tests(translated[student])
        assert {n: (t["score"], t["max_score"]) for n, t in after.items()} == {
            n: (t["score"], t["max_score"]) for n, t in before.items()}, student
        assert translated[student].get("mistakes", []) == english[student].get("mistakes", []), student
    said = [t["message"] for t in translated["typical_mistakes"]["tests"] if t["message"]]
    assert said and all(IN_LANGUAGE[language].search(message) for message in said), said
    assert not _english_left(" ".join(said), language)
    english_said = " ".join(t["message"] for t in english["typical_mistakes"]["tests"])
    assert len(_english_left(english_said, language)) >= 10, "the check can see English where it is"
    assert translated["typical_mistakes"]["mistakes"], "the diagnosis named the typical mistakes"


@functools.cache
def _font_coverage():
    """Every character some installed font has (fontconfig's charsets, as Chromium finds its fonts)."""
    listed = subprocess.run(["fc-list", "--format", "%{charset}\\n"], capture_output=True, text=True, check=True)
    covered = set()
    for ranges in listed.stdout.split():
        start, _dash, end = ranges.partition("-")
        covered.update(range(int(start, 16), int(end or start, 16) + 1))
    return covered


def _page_in_browser(browser, path):
    """(the lang attribute, the text) of a page as Chromium shows it."""
    browser.get(path.as_uri())
    shown = (browser.execute_script("return document.documentElement.lang"),
             browser.execute_script("return document.body.innerText"))
    return shown


def _missing_glyphs(text, covered):
    return sorted({c for c in text if not c.isspace() and ord(c) >= 0x20 and ord(c) not in covered})


@pytest.mark.parametrize("language", languages.LANGUAGES)
def test_feedback_pages_speak_the_course_language_in_a_real_browser(graded_in, browser, language, tmp_path):
    from normgrade.results.feedback import generate_feedback

    course, _results = graded_in[language]
    pages = generate_feedback(course, "typical_mistakes")["typical_mistakes"]
    covered = _font_coverage()
    for page in pages:
        lang, text = _page_in_browser(browser, page)
        assert lang == languages.HTML_LANG[language]
        assert not _missing_glyphs(text, covered), (page.name, _missing_glyphs(text, covered)[:20])
        words = ("Score:", "Grade cell:", "Test cell", "(Top)")
        if language == languages.SOURCE_LANGUAGE:
            assert all(word in text for word in words)
        else:
            assert not any(word in text for word in words), page.name
            assert IN_LANGUAGE[language].search(text)
            prose = browser.execute_script(  # the page without its code (i18n._'s strings are code)
                "const page = document.body.cloneNode(true);"
                "page.querySelectorAll('.input_area, .highlight').forEach(code => code.remove());"
                "return page.innerText")
            assert len(prose) > 1000 and not _english_left(prose, language), page.name
        if page.stem == "BatchNormalization":  # the hostile answer is shown as text, never run
            assert browser.title != "pwned" and "<script>" in text
            source = page.read_text()
            assert "&lt;script&gt;" in source and not re.search(r"<img[^>]*onerror", source)
        browser.save_screenshot(str(tmp_path / f"{page.stem}-{language}.png"))


@pytest.mark.parametrize("language", TRANSLATED)
def test_released_notebooks_render_in_their_language_in_a_real_browser(graded_in, browser, language, tmp_path):
    from nbconvert import HTMLExporter

    from normgrade.course import paths

    course, _results = graded_in[language]
    covered = _font_coverage()
    exporter = HTMLExporter(template_name="lab", language_code=languages.HTML_LANG[language].split("-")[0])
    for notebook in source_notebooks(paths(course)["release"]):
        page = tmp_path / f"{notebook.stem}.html"
        page.write_text(exporter.from_filename(str(notebook))[0], encoding="utf-8")
        lang, text = _page_in_browser(browser, page)
        assert lang == languages.HTML_LANG[language].split("-")[0]
        assert IN_LANGUAGE[language].search(text)
        prose = browser.execute_script(  # the code cells' strings are code (i18n._ translates them as they run)
            "return [...document.querySelectorAll('.jp-MarkdownCell')].map(cell => cell.innerText).join(' ')")
        assert len(prose) > 1000 and not _english_left(prose, language), notebook.name
        assert not _missing_glyphs(text, covered), (notebook.name, _missing_glyphs(text, covered)[:20])


# ---- the grader's feedback in the course's language (tiny catalogs made for these tests) ----------------

ZH = {  # a few messages as a translator might give them
    "the variance is the unbiased one (dividing by N - 1); normalization divides by N":
        "方差用的是无偏估计（除以 N - 1）；归一化除以 N",
    ": {difference}. Diagnosis: {diagnosis}": "：{difference}。诊断：{diagnosis}",
    "{function}: {earned:g} / {total:g} points": "{function}：{earned:g} / {total:g} 分",
    "- lost {points:g} on '{check}': {why}": "- 在“{check}”上失去 {points:g} 分：{why}",
    "train-mode output": "训练模式的输出",
    "raised {error}": "抛出了 {error}",
    STUB_MESSAGE: "{name} 尚未实现：请在 normlab/layers.py 中编写",
    "{score:g} of {out_of:g} auto-graded points": "自动评分 {score:g} / {out_of:g} 分",
    "graded in: {sandbox}": "评分环境：{sandbox}",
    "Points: {points:g} of {max_points:g}": "得分：{points:g} / {max_points:g}",
}


def _translations(messages, locale="zh_CN"):
    """A gettext translations object of `messages` {English: translated}, compiled in memory."""
    catalog = Catalog(locale=locale, domain=languages.DOMAIN)
    for english, translated in messages.items():
        catalog.add(english, translated)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


@pytest.fixture
def catalog(monkeypatch):
    """catalog(messages): zh_CN speaks `messages` (and only those) until the test ends."""
    real = languages.translations

    def use(messages):
        fake = _translations(messages)
        monkeypatch.setattr(languages, "translations", lambda code: fake if code == "zh_CN" else real(code))

    return use


@pytest.fixture
def zh(catalog):
    catalog(ZH)


def _unbiased(data):
    """bn_train_out as code that normalizes with the unbiased variance computes it: a typical mistake."""
    hypotheses, _layer = diagnosis.probe("bn_train_out", data.inputs, checks.CALL_OF["bn_train_out"])
    return next(h.value for h in hypotheses if h.parts == (("variance", "unbiased"),))


def _values(data, function, **changed):
    values = {q: data.expected(q) for check in checks.checks_for(function) for q in check.quantities}
    return {**values, **changed}


def test_a_typical_mistake_is_said_in_the_course_language_and_keeps_its_english_key(data, zh):
    values = _values(data, "batchnorm_forward", bn_train_out=_unbiased(data))
    english = checks.score("batchnorm_forward", values, data)
    with speaking("zh_CN"):
        translated = checks.score("batchnorm_forward", values, data)
        report = " ".join(checks.report("batchnorm_forward", translated).split())
    assert [(r.earned, r.mistake) for r in translated] == [(r.earned, r.mistake) for r in english]
    (lost,) = [r for r in translated if r.message]
    assert lost.mistake == diagnosis.key((("variance", "unbiased"),)) == "variance: unbiased"
    (said,) = [r.message for r in english if r.message]
    assert said.startswith("bn_train_out differs from the expected values: ") and said.endswith(
        ". Diagnosis: the variance is the unbiased one (dividing by N - 1); normalization divides by N")
    # What the catalog translates is said in its words; the rest (not translated yet) stays English.
    assert lost.message.startswith("bn_train_out differs from the expected values：")
    assert lost.message.endswith("。诊断：方差用的是无偏估计（除以 N - 1）；归一化除以 N") and "Diagnosis" not in lost.message
    assert report.startswith("batchnorm_forward：4.5 / 6 分 - 在“训练模式的输出”上失去 1.5 分：bn_train_out")
    assert "lost" not in report and "points" not in report


def test_english_is_spoken_outside_speaking_and_after_it(data, zh):
    values = _values(data, "batchnorm_forward", bn_train_out=_unbiased(data))
    with speaking("zh_CN"):
        pass
    said = checks.report("batchnorm_forward", checks.score("batchnorm_forward", values, data))
    assert said.startswith("batchnorm_forward: 4.5 / 6 points\n  - lost 1.5 on 'train-mode output': bn_train_out")


def test_not_implemented_is_known_by_the_exception_raised_not_by_its_words(data, zh):
    error = "NotImplementedError: " + ZH[STUB_MESSAGE].format(name="batchnorm_forward")
    with speaking("zh_CN"):
        raised = checks.Failure(scorer._describe_error(error, Limits()), raised=scorer._raised(error))
        other = checks.Failure(scorer._describe_error("ValueError: 坏了", Limits()), raised=scorer._raised("ValueError: 坏了"))
        stub = checks.score("batchnorm_forward", {q: raised for q in _values(data, "batchnorm_forward")}, data)
        raising = checks.score("batchnorm_forward", {q: other for q in _values(data, "batchnorm_forward")}, data)
    assert raised.message == "抛出了 " + error and raised.raised == "NotImplementedError"
    assert {r.mistake for r in stub} == {checks.NOT_IMPLEMENTED} and {r.mistake for r in raising} == {"raises"}
    assert all(r.earned == 0 and "抛出了 NotImplementedError: batchnorm_forward 尚未实现" in r.message for r in stub)
    assert scorer._raised("MemoryError: ") == "" and scorer._raised("  ") == "?"


def test_a_stub_s_error_is_known_in_every_language_and_costs_no_budget(catalog):
    catalog({STUB_MESSAGE: ZH[STUB_MESSAGE]})
    chinese = "NotImplementedError: batchnorm_forward 尚未实现：请在 normlab/layers.py 中编写"
    english = "NotImplementedError: batchnorm_forward is not implemented yet: write it in normlab/layers.py"
    assert scorer.is_stub_error(chinese) and scorer.is_stub_error(english)
    for other in ("NotImplementedError: batchnorm_forward 尚未实现", "ValueError: " + chinese[21:],
                  "NotImplementedError: " + "x" * 41 + " is not implemented yet: write it in normlab/layers.py"):
        assert not scorer.is_stub_error(other), other
    said = scorer.StudentText(budget=10)
    assert said(chinese) == chinese and said(english) == english and said.left == 10
    # A translation longer than the worker's cut is known cut where the worker cuts it (worker.error_text).
    catalog({STUB_MESSAGE: "{name} " + "还没有写" * 50})
    long = "NotImplementedError: spatial_groupnorm_backward " + "还没有写" * 50
    assert scorer.is_stub_error(long[:160] + " ...") and not scorer.is_stub_error(long[:150] + " ...")


def test_a_stub_translated_by_the_release_is_graded_in_its_language(tmp_path, data, sandbox, zh):
    english = STUB_LAYERS.read_text()
    stub = re.sub(r'NotImplementedError\("(\w+) is not implemented yet: write it in normlab/layers\.py"\)',
                  lambda m: f'NotImplementedError("{ZH[STUB_MESSAGE].format(name=m[1])}")', english)
    assert stub != english
    path = tmp_path / "layers.py"
    path.write_text(stub, encoding="utf-8")
    with speaking("zh_CN"):
        scores = scorer.score_code(path, ["batchnorm_forward", "layernorm_forward"], data, sandbox,
                                   Limits(call_seconds=3))
    for function, results in scores.items():
        assert {(r.earned, r.mistake) for r in results} == {(0.0, checks.NOT_IMPLEMENTED)}, function
        assert all(f"抛出了 NotImplementedError: {function} 尚未实现" in r.message for r in results), function


def test_every_check_label_is_a_message_and_is_shown_in_the_language(zh):
    from babel.messages.extract import extract_from_file

    found = {message for _line, message, _comments, _context in extract_from_file(
        "python", checks.__file__, keywords={"_": None, "N_": None, "ngettext": (1, 2)})}
    labels = {check.template or check.label for check in checks.CHECKS} - {"dx"}  # "dx" alone is a name
    wheres = {value for check in checks.CHECKS for _name, value in check.fields if isinstance(value, str)}
    assert labels | wheres <= found, sorted((labels | wheres) - found)
    edge = next(check for check in checks.CHECKS if check.template)
    assert edge.said() == edge.label == ("dx, dgamma and dbeta with eps = 0.01 from bn_param, for a square batch "
                                         "(N = D), and for float32 input (dtype and values)")
    with speaking("zh_CN"):
        assert checks.CHECKS[0].said() == "训练模式的输出" and checks.CHECKS[0].label == "train-mode output"


def test_gradescope_and_the_graded_cells_speak_the_course_language(tmp_path, zh):
    from normgrade.grade.preprocessors import _outputs, course_of
    from normgrade.platforms.gradescope import requirements, results_document

    course = tmp_path / "course"
    (course / "source" / "normalization" / "normlab" / "locale").mkdir(parents=True)
    assert languages.course_language(course_of(course / "normgrade" / "expected.npz")) == "en"
    (course / "source" / "normalization" / "normlab" / "locale" / "COURSE_LANGUAGE").write_text("zh_CN\n")
    assert languages.course_language(course_of(course / "normgrade" / "expected.npz")) == "zh_CN"
    with speaking("zh_CN"):
        document = results_document([{"name": "a/test_x", "score": 1.0, "max_score": 2.0, "output": "x"}], [],
                                    "bubblewrap sandbox", "visible", 1.0)
        points = _outputs("x", 1.5, 2)[1]["data"]["text/html"]
    assert document["output"] == "自动评分 1 / 2 分\n评分环境：bubblewrap sandbox"
    assert points == "<strong>得分：1.5 / 2</strong>" and _outputs("x", 1.5, 2)[1]["data"]["text/html"] == (
        "<strong>Points: 1.5 of 2</strong>")
    assert "babel==" in requirements("zh_CN") and "babel" not in requirements()


@pytest.mark.slow
def test_the_demo_runs_in_every_language_with_the_same_grades(tmp_path, sandbox, capsys):
    from normgrade.build.demo import run_demo

    grades = {}
    for language in languages.LANGUAGES:
        run_demo(tmp_path / language, language)
        document = json.loads((tmp_path / language / "grades.json").read_text())
        grades[language] = {s["student"]: (s["score"], [(t["name"], t["score"]) for t in s["tests"]],
                                           s.get("mistakes", [])) for s in document["submissions"]}
        feedback = tmp_path / language / "course" / "feedback" / "typical_mistakes" / "normalization"
        page = (feedback / "BatchNormalization.html").read_text(encoding="utf-8")
        assert f'<html lang="{languages.HTML_LANG[language]}">' in page
        if language != languages.SOURCE_LANGUAGE:
            assert IN_LANGUAGE[language].search(page)
    capsys.readouterr()
    assert {student: score for student, (score, _t, _m) in grades["en"].items()} == {
        "reference": 36, "stubs": 0, "typical_mistakes": 10}
    assert grades["zh_CN"] == grades["vi"] == grades["en"]


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_class_report_says_the_mistakes_in_the_course_language(graded_in, language):
    from normgrade.results.report import class_report

    english, translated = class_report(graded_in["en"][0]), class_report(graded_in[language][0])
    assert [(m["function"], m["mistake"], m["count"]) for m in translated["mistakes"]] == [
        (m["function"], m["mistake"], m["count"]) for m in english["mistakes"]]
    assert translated["mistakes"] and all(IN_LANGUAGE[language].search(m["said"]) for m in translated["mistakes"])
    import warnings

    from normgrade.results.report import figures

    with warnings.catch_warnings(record=True) as said:  # its chart of mistakes draws every character
        warnings.simplefilter("always")
        assert "mistakes" in figures(translated)
    assert not [str(w.message) for w in said if "missing from font" in str(w.message)]


def test_the_worker_s_own_words_reach_the_student_in_the_course_language(tmp_path, data, sandbox):
    """The sandboxed worker has no catalogs: the request brings its messages' words (scorer._request)."""
    source = reference_layers() + ("\n\nimport scipy.special\n\n\ndef layernorm_forward(x, gamma, beta, ln_param):\n"
                                   "    return scipy.special.expit(x), None\n")
    path = tmp_path / "layers.py"
    path.write_text(source, encoding="utf-8")
    said = {}
    for language in languages.LANGUAGES:
        with speaking(language):
            said[language] = " ".join(r.message for r in scorer.score_code(
                path, ["layernorm_forward"], data, sandbox, Limits(call_seconds=5))["layernorm_forward"])
    assert "scipy is not available when grading: use NumPy" in said["en"]
    assert "评分时没有 scipy：请改用 NumPy" in said["zh_CN"]
    assert "khi chấm điểm không có scipy: hãy dùng NumPy" in said["vi"]


@pytest.mark.slow
def test_a_notebook_executed_for_the_feedback_speaks_the_course_language(tmp_path, sandbox):
    """`normgrade grade --execute` runs the notebook in the sandbox: its plots' and messages' words are the course's."""
    from normgrade.grade.preprocessors import execute_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'from normlab import i18n\nprint(i18n._("batch size"), "|", i18n._("training loss"))')])
    layers = tmp_path / "layers.py"
    layers.write_text(STUB_LAYERS.read_text())
    shown = {}
    for language in languages.LANGUAGES:
        executed = execute_notebook(nb, layers, sandbox, 120, 60, language)
        shown[language] = "".join(output.get("text", "") for output in executed.cells[0].outputs)
    for language in languages.LANGUAGES:
        said = languages.translations(language).gettext
        assert shown[language].strip() == f"{said('batch size')} | {said('training loss')}", shown
    assert CJK.search(shown["zh_CN"]) and VIETNAMESE.search(shown["vi"])


def test_the_self_check_and_the_grader_build_a_diagnosis_s_words_alike(monkeypatch):
    """normlab.check rebuilds each clause of mistakes.npz as normgrade.score.diagnosis.sentence says it."""
    from normlab import check

    assert check.PLAIN == diagnosis.PLAIN
    table = check.mistakes_table()
    for probe in check.PROBES:
        layer = check.PROBES[probe][0]
        for key in json.loads(str(table[f"{probe}/clauses"])):
            part = tuple(key.split("|"))
            for language in languages.LANGUAGES:
                monkeypatch.setenv("NORMLAB_LANGUAGE", language)
                with speaking(language):
                    assert check.sentence((part,), probe) == diagnosis.sentence((part,), probe, layer), part


@pytest.mark.parametrize("source", ['def f():\n    r"""a \\\\ b"""\n', 'def f():\n    """ends in a "quote\\""""\n',
                                    "def f():\n    '''single quotes'''\n"])
def test_a_docstring_the_translation_cannot_write_is_refused_not_broken(source):
    with pytest.raises(ValueError, match="cannot write"):
        languages.translate_docstrings(source, "zh_CN")


@pytest.mark.parametrize("asked", ["xx", "de_DE.UTF-8", "../zh_CN", ""])
def test_a_language_without_a_catalog_falls_back_to_english(asked, monkeypatch):
    monkeypatch.setenv("NORMLAB_LANGUAGE", asked)
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert i18n._("not started") == "not started"
    monkeypatch.setenv("NORMLAB_LANGUAGE", "zh_CN")
    assert CJK.search(i18n._("not started")), "the check sees a catalog where there is one"
