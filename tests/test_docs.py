"""
The documentation: the README and the site built from docs/ (mkdocs.yml).

- The site builds with MkDocs in strict mode: a broken link or anchor, or a
  page left out of the navigation, fails.
- Every `normgrade` command line a page shows parses with the command's own
  parser, and every option a page names is one of its command's; every
  `nbgrader` subcommand, make target, repository file and `normgrade.` or
  `normlab.` name a page names exists.
- The walkthroughs are what the commands print, each compared with a real
  run: the students' self-check (`python -m normlab.check`) on the demo's
  typical mistakes, with group norm's backward pass not started yet
  (docs/students.md), and the demo's table (`make demo`, that is
  `normgrade.build.demo`; docs/index.md), with the seconds column and the
  lines the page elides (`...`) left out of the comparison.
"""
import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from normgrade.paths import REPO, STUB_LAYERS, STUDENT_PACKAGE
from normgrade.build.samples import TYPICAL_MISTAKES, mutant_layers

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README] + sorted(DOCS.glob("*.md"))
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)  # a fenced block; group 1: its lines
SPAN = re.compile(r"`([^`\n]+)`")  # an inline code span
FILE_SUFFIXES = {"py", "npz", "ipynb", "txt", "html", "json", "csv", "md", "db", "zip", "lock", "po", "pot", "mo"}


def page_block(page, first, after=True):
    """The lines of the page's fenced block that holds the line `first`, from it (or the line after it) on."""
    lines = page.read_text(encoding="utf-8").splitlines()
    start = lines.index(first) + after
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return lines[start:end]


def function_source(source, name):
    """The text of function `name` in a module's source."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(source, node)


def self_check_layers():
    """The students' page's example: the demo's typical mistakes, group norm's backward pass still the stub."""
    stub = function_source(STUB_LAYERS.read_text(), "spatial_groupnorm_backward")
    return mutant_layers(*TYPICAL_MISTAKES) + "\n\n" + stub + "\n"


def test_the_students_pages_self_check_is_what_the_command_prints(tmp_path):
    root = tmp_path / "normalization"
    shutil.copytree(STUDENT_PACKAGE, root / "normlab", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "normlab" / "layers.py").write_text(self_check_layers())
    done = subprocess.run([sys.executable, "-m", "normlab.check"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.splitlines() == page_block(DOCS / "students.md", "$ python -m normlab.check")


def _without_seconds(line):
    return re.sub(r"(\d+ / \d+)\s+\d+\.\d+\s+", r"\1  (seconds)  ", line).rstrip()


def matches_with_elisions(printed, documented):
    """Whether `printed` is `documented`, where a documented line "  ..." stands for any lines (at least one)."""
    pattern = "".join(r"(?:[^\n]*\n)+?" if line == "  ..." else re.escape(line + "\n") for line in documented)
    return re.fullmatch(pattern, "".join(line + "\n" for line in printed)) is not None


@pytest.mark.slow
def test_the_demo_table_on_the_home_page_is_what_make_demo_prints(tmp_path, sandbox):
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "demo", "--dir", "demo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table = lines[lines.index("graded in: bubblewrap sandbox"):]
    table = table[:next(i for i, line in enumerate(table) if line.startswith("4/4 "))]
    while table and not table[-1]:
        table.pop()
    documented = page_block(DOCS / "index.md", "graded in: bubblewrap sandbox", after=False)
    assert matches_with_elisions([_without_seconds(x) for x in table], [_without_seconds(x) for x in documented])


def _code(page):
    """(fenced lines, inline spans) of a page: its code, where commands, files and names are written."""
    text = page.read_text(encoding="utf-8")
    fenced = [line for block in FENCED.findall(text) for line in block.splitlines()]
    return fenced, SPAN.findall(FENCED.sub("", text))


def _command_lines(page):
    """Each command a fenced block of the page runs: its words (a `$ ` prompt, comments and `cd ... &&` left out)."""
    fenced, _ = _code(page)
    for line in fenced:
        try:
            words = shlex.split(line.removeprefix("$ "), comments=True)
        except ValueError:
            continue  # not a shell line (a printed table)
        while words:
            cut = next((i for i, w in enumerate(words) if w in ("&&", ";", "|", "||")), len(words))
            yield line, words[:cut]
            words = words[cut + 1:]


def _options(command):
    """The option strings of `normgrade command`'s parser (None if there is no such command)."""
    from normgrade import cli

    if command not in cli.COMMANDS:
        return None
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[command]
    return set(sub._option_string_actions)


def test_the_site_builds_with_no_warning(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "WARNING" not in done.stderr, done.stderr
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("*.html")}
    assert {f"{p.stem}/index.html" for p in DOCS.glob("*.md") if p.stem != "index"} <= built
    images = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", "".join(p.read_text(encoding="utf-8") for p in PAGES)))
    assert images and all((tmp_path / "site" / image).is_file() for image in images if not image.startswith("docs/"))


def test_the_site_check_fails_on_a_broken_link_or_anchor(tmp_path):
    """The check above can fail: a copy of the site with one broken link, then one broken anchor, does not build."""
    for broken in ("[a page](no-such-page.md)", "[a section](students.md#no-such-section)"):
        shutil.rmtree(tmp_path / "copy", ignore_errors=True)
        shutil.copytree(DOCS, tmp_path / "copy" / "docs")
        shutil.copy(REPO / "mkdocs.yml", tmp_path / "copy")
        with open(tmp_path / "copy" / "docs" / "index.md", "a", encoding="utf-8") as page:
            page.write(f"\n{broken}\n")
        done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path / "copy",
                              capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "WARNING" in done.stderr, broken


def test_every_normgrade_command_line_a_page_shows_parses():
    from normgrade import cli

    shown = 0
    for page in PAGES:
        for line, words in _command_lines(page):
            if words[:1] != ["normgrade"]:
                continue
            shown += 1
            assert len(words) > 1 and words[1] in cli.COMMANDS, f"{page.name}: {line}"
            try:
                cli.build_parser(words[1]).parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{page.name}: `normgrade` refuses the line {line!r}")
    assert shown >= 20


def test_every_normgrade_option_a_page_names_is_its_commands():
    named = 0
    for page in PAGES:
        _, spans = _code(page)
        lines = [" ".join(words) for _, words in _command_lines(page)]
        for text in spans + lines:
            for command, rest in re.findall(r"\bnormgrade (\w+)((?: [^`]*)?)", text):
                options = _options(command)
                assert options is not None, f"{page.name}: no command `normgrade {command}` ({text})"
                for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
                    named += 1
                    assert option in options, f"{page.name}: `normgrade {command}` has no option {option} ({text})"
    assert named >= 40


def test_every_nbgrader_command_a_page_names_exists():
    from nbgrader.apps import NbGraderApp

    named = set()
    for page in PAGES:
        _, spans = _code(page)
        named |= {words[1] for _, words in _command_lines(page) if words[:1] == ["nbgrader"] and len(words) > 1}
        named |= {span.split()[1] for span in spans if span.startswith("nbgrader ")}
    assert {"autograde", "collect", "release_assignment", "release_feedback"} <= named
    assert sorted(named - set(NbGraderApp.subcommands)) == []


def test_every_file_a_page_names_exists():
    named, linked = set(), set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        named |= set(re.findall(r"`((?:tests|autograder|assignment|solutions|benchmarks|docs|notebooks)/[\w./-]+\.\w+)`",
                                text))
        prose = SPAN.sub("", FENCED.sub("", text))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if not re.match(r"[a-z]+:", target):
                linked.add((page.parent / target).resolve())
    assert named and sorted(p for p in named if not (REPO / p).exists()) == []
    assert linked and sorted(str(p) for p in linked if not p.exists()) == []


def test_every_module_and_name_a_page_names_exists():
    named = set()
    for page in PAGES:
        fenced, spans = _code(page)
        for text in spans + fenced:
            named |= {name for name in re.findall(r"\b((?:normgrade|normlab)(?:\.[A-Za-z_]\w*)+)", text)
                      if name.rsplit(".", 1)[1] not in FILE_SUFFIXES}  # `normgrade.py`: a file, not a module
    assert len(named) >= 10
    probe = """
import importlib, json, sys
missing = []
for name in json.loads(sys.argv[1]):
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
            break
        except ModuleNotFoundError:
            continue
    else:
        missing.append(name)
        continue
    try:
        for part in parts[cut:]:
            found = getattr(found, part)
    except AttributeError:
        missing.append(name)
print(json.dumps(missing))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STUDENT_PACKAGE.parent), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(sorted(named))], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_every_make_target_a_page_names_exists_and_ci_runs_the_test_command():
    text = "".join(page.read_text(encoding="utf-8") for page in PAGES)
    named = {a or b for a, b in re.findall(r"`make ([a-z][\w-]*)|^make ([a-z][\w-]*)", text, re.M)}
    targets = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
    assert {"test", "test-fast", "demo", "oracle"} <= named, named
    assert sorted(named - targets) == []
    readme = README.read_text(encoding="utf-8")
    assert "make demo" in readme and re.search(r"^make test ", readme, re.M), "the README gives the two commands"
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M), "CI runs the README's test command"


def test_the_readme_fits_on_two_screens_and_links_every_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 60
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", "\n".join(lines)))
    assert linked == {p.name for p in DOCS.glob("*.md")} - {"index.md"}
