"""
Student markdown as the staff's browser gets it: through the autograde chain's text-cell steps, then
nbgrader's real formgrade and feedback templates (HTMLExporter, as formgrader and generate_feedback
configure it, with every filter they apply), the page scanned for what a browser would act on.
"""
import functools
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbconvert.exporters import HTMLExporter
from traitlets.config import Config

from normgrade.grade.preprocessors import (MAX_RENDERED_CHARS, MAX_TEXT_CELL_CHARS, BoundMarkdown, CachedSanitizeHTML,
                                     SafeMarkdown, prepare_markup)

# Each would run script on the Jupyter server's origin, with the TA's session, if it reached the page live.
# These pass bleach (SanitizeHTML) and are live on both pages unless SafeMarkdown stops them (tested below).
LIVE_PAST_BLEACH = [
    "[my plots](files/javascript:alert(document.domain))",  # the templates' strip_files_prefix removes files/
    "[x](/files/javascript:alert(1))",
    "![i](files/javascript:alert(1))",
    "[x](files/data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[x](files/&#106;avascript:alert(1))",
    "[x][r]\n\n[r]: files/javascript:alert(1)",
    '<a href="files/javascript:alert(1)">x</a>',
    "<a href='/files/javascript:alert(1)'>x</a>",
    "<a href=files/javascript:alert(1)>x</a>",
    "[x](files/files/javascript:alert(1)) [y](files/vbscript:msgbox(1))",
    "[x](javascript:alert(1))",
    "[a][r]\n\n[r]: jav&#x61;script:alert(1)",
    '<ul>\n<li><a href="http://a" title="\n\n[x](x/autofocus/onfocus=document.title=1337//)\n\n">z</a></li></ul>',
]
# Bleach alone stops these; they stay in the corpus so that a change of the chain is seen.
CAUGHT_BY_BLEACH = [
    '<img src="files/javascript:alert(1)">',
    "<javascript:alert(1)>",
    '<a href="http://a" title="\n\n[x](files/x/autofocus/onfocus=alert(1)//)\n\n">z</a>',
    '<img src=x onerror="alert(1)"> <script>alert(1)</script> <svg onload=alert(1)>',
]
HOSTILE_MARKDOWN = LIVE_PAST_BLEACH + CAUGHT_BY_BLEACH
SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:text", "data:application")


class _Live(HTMLParser):
    """Every (tag, attribute, value) of a page whose URL has a script scheme, or that is an event handler."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            plain = "".join(ch for ch in (value or "") if ch > " ").lower()
            if name.startswith("on") or name == "autofocus" or plain.startswith(SCRIPT_SCHEMES):
                self.found.append((tag, name, value))
        if tag in ("script", "svg", "iframe") and not dict(attrs).get("src", "").startswith("http"):
            self.found.append((tag, "", ""))

    handle_startendtag = handle_starttag


def live(page):
    parser = _Live()
    parser.feed(page)
    return Counter(parser.found)


def _exporter(template):
    """The HTMLExporter formgrader (template formgrade) or generate_feedback (template feedback) renders with."""
    from nbgrader.server_extensions.formgrader import handlers

    config = Config()
    config.HTMLExporter.template_name = template
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    config.HTMLExporter.sanitize_html = True  # as the course's nbgrader_config.py sets it
    bootstrap = Path(handlers.__file__).parent / "static" / "node_modules" / "bootstrap" / "dist" / "css"
    config.HTMLExporter.extra_template_paths = [str(bootstrap)]  # as generate_feedback sets it
    return HTMLExporter(config=config)


RESOURCES = {"assignment_id": "normalization", "notebook_id": "BatchNormalization", "submission_id": "1",
             "index": 0, "total": 1, "base_url": "", "student": "eve", "last_name": None, "first_name": None,
             "notebook_path": "/x", "nbgrader": {"notebook": "BatchNormalization", "score": 0.0, "max_score": 1.0,
                                                   "late_penalty": 0.0}}


def render_pages(nb, templates=("formgrade", "feedback")):
    """{template: the page's HTML} for a notebook, as the staff's browser gets it."""
    return {template: _exporter(template).from_notebook_node(nb, resources=dict(RESOURCES))[0]
            for template in templates}


@functools.lru_cache(maxsize=None)
def _template_own():
    """What the templates' own markup holds that the scan flags (their scripts, a name toggle's onclick)."""
    return {template: live(page) for template, page in render_pages(autograded(["Plain *prose*."])).items()}


def added(pages):
    """{template: what the scan flags on the page beyond the template's own markup}, only non-empty ones."""
    return {template: live(page) - _template_own()[template] for template, page in pages.items()
            if live(page) - _template_own()[template]}


def autograded(cells):
    """A notebook of markdown cells after the autograde chain's text-cell steps (as nbgrader_config.py orders them)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells])
    config = Config({"SanitizeHTML": {"enabled": True}})
    resources = {}
    for step in (BoundMarkdown(config=config), CachedSanitizeHTML(config=config), SafeMarkdown(config=config)):
        nb, resources = step.preprocess(nb, resources)
    return nb


def test_the_templates_own_markup_is_the_baseline():
    own = _template_own()
    assert own["formgrade"][("span", "onclick", "toggle_name(true);")] == 1, "the scan sees event handlers"
    assert added(render_pages(autograded(["Some *prose* with [a link](https://cs231n.github.io/)."]))) == {}


@pytest.mark.parametrize("markdown", HOSTILE_MARKDOWN)
def test_no_hostile_markdown_reaches_formgrader_or_the_feedback_page_live(markdown):
    assert added(render_pages(autograded([markdown]))) == {}, markdown


@pytest.mark.parametrize("markdown", LIVE_PAST_BLEACH)
def test_each_payload_is_live_on_both_pages_without_safe_markdown(markdown):
    """The scan can fail: with bleach alone (the chain before SafeMarkdown), every payload is live on both pages."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown)])
    nb, _ = CachedSanitizeHTML(config=Config({"SanitizeHTML": {"enabled": True}})).preprocess(nb, {})
    assert set(added(render_pages(nb))) == {"formgrade", "feedback"}, markdown


# Each cell is safe alone; on the page, the first one's unfinished attribute runs through the template's markup
# into the second, whose text becomes attributes (a red team's find). Python's parser, alone, sees text.
CROSS_CELL = [
    ["<ul>\n<li><a href=\"http://a\" title='\n\n\"[x](q'>q)</a></li></ul>", "x' autofocus onfocus=alert(1) y="],
    ["<ul>\n<li><a href=\"http://a\" title='\n\n\"[x](q'>q)</a></li></ul>", "Some answer text",
     "x' autofocus onfocus=alert(1) y="],  # a cell between them changes nothing
]


@pytest.mark.parametrize("cells", CROSS_CELL)
def test_a_cell_that_leaves_a_tag_open_is_shown_as_text(cells):
    nb = autograded(cells)
    assert nb.cells[0].source.startswith("<pre>"), nb.cells[0].source
    assert added(render_pages(nb)) == {}


@pytest.mark.parametrize("cells", CROSS_CELL)
def test_the_cross_cell_payload_is_live_without_the_check(cells):
    """The test can fail: with the cells as bleach leaves them, the event handler is live on both pages."""
    nb, _ = CachedSanitizeHTML(config=Config({"SanitizeHTML": {"enabled": True}})).preprocess(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(c) for c in cells]), {})
    assert set(added(render_pages(nb))) == {"formgrade", "feedback"}


def test_safe_links_and_the_assignments_text_stay_live_html():
    nb = autograded(["[notes](https://cs231n.github.io/) and [a file](files/plot.png) and ![p](plot.png)"])
    page = render_pages(nb)["feedback"]
    assert '<a href="https://cs231n.github.io/">notes</a>' in page
    assert '<a href="plot.png">a file</a>' in page, "strip_files_prefix still does its job on a safe link"


def test_long_text_cells_are_shown_as_text_not_rendered():
    long_cell = "<a " * (MAX_TEXT_CELL_CHARS // 3 + 1)
    many = ["word " * (MAX_TEXT_CELL_CHARS // 5 - 1)] * (MAX_RENDERED_CHARS // MAX_TEXT_CELL_CHARS + 2)
    nb = autograded([long_cell, "[x](files/javascript:alert(1))" * 400, *many])
    assert nb.cells[0].source.startswith("<pre>(this cell has"), nb.cells[0].source[:80]
    assert "characters in all" in nb.cells[-1].source and nb.cells[2].source.startswith("word")
    assert added(render_pages(nb)) == {}


def test_a_huge_markdown_cell_costs_a_moment_not_minutes():
    """A 15 MiB answer cell took SafeMarkdown 442 s (about 9 s per MiB); bleach is quadratic on '<a ' runs."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("<a " * (5 << 20)),
                                         nbformat.v4.new_markdown_cell("[" * (10 << 20))])
    start = time.perf_counter()
    prepared = prepare_markup(nb)
    seconds = time.perf_counter() - start
    assert all(c.source.startswith("<pre>") for c in prepared.cells)
    assert sum(len(c.source) for c in prepared.cells) < 2 * 200_000 * 6  # shown text is capped too (escaped)
    assert seconds < 30, seconds  # a bound, not a benchmark: unbounded, this is hours


def test_results_are_computed_once_per_content(monkeypatch):
    """`normgrade grade` prepares text cells while staging; under the gradebook lock the chain finds them done."""
    import normgrade.grade.preprocessors as pre

    cell = "An answer with a [link](https://a.b) " + str(time.time())
    prepare_markup(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(cell)]))
    monkeypatch.setattr(pre, "rendered_markdown", lambda *a: pytest.fail("rendered again"))
    monkeypatch.setattr(pre.SanitizeHTML, "sanitize_html_tags", lambda *a: pytest.fail("bleached again"))
    nb = autograded([cell])
    assert nb.cells[0].source.startswith("An answer")


def test_the_students_code_shown_to_the_grader_is_text_on_both_pages():
    from normgrade.grade.preprocessors import student_code_cells

    hostile = (b'def batchnorm_forward(x, gamma, beta, bn_param):\n'
               b'    """</pre></div><script>alert(1)</script><img src=x onerror=alert(2)>"""\n'
               b'    return x, None\n\n\ndef helper():\n    pass\n')
    cells = student_code_cells(hostile, {"batchnorm_forward": (1.5, 6.0), "batchnorm_backward": (0.0, 4.0)})
    assert [c.source.splitlines()[0] for c in cells] == [
        "# batchnorm_forward: 1.5 / 6 points. The student's normlab/layers.py, as graded (not run here).",
        "# batchnorm_backward: 0 / 4 points. The student's normlab/layers.py, as graded (not run here)."]
    assert "def helper" not in cells[0].source and "no function batchnorm_backward" in cells[1].source
    nb = nbformat.v4.new_notebook(cells=cells)
    pages = render_pages(nb)
    assert added(pages) == {}, "the student's code reached a page as markup"
    for page in pages.values():
        assert "&lt;script&gt;" in page and "batchnorm_forward" in page
    unparsable = student_code_cells(b"def batchnorm_forward(:\n  <script>", {"batchnorm_forward": (0.0, 6.0)})
    assert len(unparsable) == 1 and "does not parse" in unparsable[0].source
    assert added(render_pages(nbformat.v4.new_notebook(cells=unparsable))) == {}
