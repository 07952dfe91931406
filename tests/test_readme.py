"""
The README's walkthroughs are what the commands print: each block is compared with a real run.

- The students' self-check (`python -m normlab.check`) on the demo's typical
  mistakes, with group norm's backward pass not started yet.
- The demo's table (`make demo`, that is `normgrade.build.demo`), with the seconds
  column and the lines the README elides (`...`) left out of the comparison.
"""
import ast
import re
import shutil
import subprocess
import sys

import pytest

from normgrade.paths import REPO, STUB_LAYERS, STUDENT_PACKAGE
from normgrade.build.samples import TYPICAL_MISTAKES, mutant_layers

README = REPO / "README.md"


def readme_block(first, after=True):
    """The lines of the README's fenced block that holds the line `first`, from it (or the line after it) on."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(first) + after
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("```"))
    return lines[start:end]


def function_source(source, name):
    """The text of function `name` in a module's source."""
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    return ast.get_source_segment(source, node)


def readme_self_check_layers():
    """The README's example: the demo's typical mistakes, group norm's backward pass still the stub."""
    stub = function_source(STUB_LAYERS.read_text(), "spatial_groupnorm_backward")
    return mutant_layers(*TYPICAL_MISTAKES) + "\n\n" + stub + "\n"


def test_the_readme_self_check_is_what_the_command_prints(tmp_path):
    root = tmp_path / "normalization"
    shutil.copytree(STUDENT_PACKAGE, root / "normlab", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "normlab" / "layers.py").write_text(readme_self_check_layers())
    done = subprocess.run([sys.executable, "-m", "normlab.check"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)})
    assert done.returncode == 1 and done.stderr == ""
    assert done.stdout.splitlines() == readme_block("$ python -m normlab.check")


def _without_seconds(line):
    return re.sub(r"(\d+ / \d+)\s+\d+\.\d+\s+", r"\1  (seconds)  ", line).rstrip()


def matches_with_elisions(printed, documented):
    """Whether `printed` is `documented`, where a documented line "  ..." stands for any lines (at least one)."""
    pattern = "".join(r"(?:[^\n]*\n)+?" if line == "  ..." else re.escape(line + "\n") for line in documented)
    return re.fullmatch(pattern, "".join(line + "\n" for line in printed)) is not None


@pytest.mark.slow
def test_the_readme_demo_table_is_what_make_demo_prints(tmp_path, sandbox):
    done = subprocess.run([sys.executable, "-m", "normgrade.cli", "demo", "--dir", "demo"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table = lines[lines.index("graded in: bubblewrap sandbox"):]
    table = table[:next(i for i, line in enumerate(table) if line.startswith("4/4 "))]
    while table and not table[-1]:
        table.pop()
    documented = readme_block("graded in: bubblewrap sandbox", after=False)
    assert matches_with_elisions([_without_seconds(x) for x in table], [_without_seconds(x) for x in documented])



def test_every_file_the_readme_names_exists():
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:tests|autograder|assignment|solutions|benchmarks|docs)/[\w./-]+\.\w+)`", text))
    assert named and sorted(p for p in named if not (REPO / p).exists()) == []


def test_every_make_target_the_readme_names_exists_and_ci_runs_the_test_command():
    text = README.read_text(encoding="utf-8")
    named = {a or b for a, b in re.findall(r"`make ([a-z][\w-]*)|^make ([a-z][\w-]*)", text, re.M)}
    targets = set(re.findall(r"^([a-z][\w-]*):", (REPO / "Makefile").read_text(), re.M))
    assert {"test", "test-fast", "demo", "oracle"} <= named, named
    assert sorted(named - targets) == []
    assert re.search(r"^make test$", (REPO / ".ci" / "run").read_text(), re.M), "CI runs the README's test command"
