"""
Student stubs derived from the reference: the one source of truth is
solutions/normlab/layers.py.

Inside each function students implement, the reference marks the solution with
`### BEGIN SOLUTION` / `### END SOLUTION` lines (nbgrader's own markers). The
stub is the reference with every marked region replaced by a TODO comment and
a `raise NotImplementedError` naming the function; everything else (imports,
signatures, docstrings, provided functions, the input checks around each
region) is copied as it is. `normgrade stubs` writes assignment/normlab/layers.py;
`normgrade stubs --check` fails when the committed stub is out of date.
"""
import ast
import re
from dataclasses import dataclass
from pathlib import Path

from normgrade.language import N_, STUB_MESSAGE, SOURCE_LANGUAGE, translations
from normgrade.paths import SOLUTION_LAYERS, STUB_LAYERS

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_MARKER = re.compile(r"^(?P<indent>[ \t]*)### (?P<kind>BEGIN|END) SOLUTION[ \t]*$")
# What a stub says in place of its solution (translated in a release in another language).
TODO = N_("TODO: implement {name}, as described in its docstring.")  # and it raises language.STUB_MESSAGE


class StubError(ValueError):
    """The reference's solution markers are malformed."""


@dataclass(frozen=True)
class Region:
    function: str
    begin: int  # 1-based line of the BEGIN marker
    end: int  # 1-based line of the END marker
    indent: str


def solution_regions(source):
    """Return the marked regions of `source`, each inside exactly one top-level function."""
    functions = [
        node for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    regions, open_marker = [], None
    for lineno, line in enumerate(source.splitlines(), start=1):
        match = _MARKER.match(line)
        if not match:
            if BEGIN in line or END in line:
                raise StubError(f"line {lineno}: a solution marker must stand alone on its line")
            continue
        if match["kind"] == "BEGIN":
            if open_marker is not None:
                raise StubError(f"line {lineno}: BEGIN SOLUTION inside the region opened at line {open_marker[0]}")
            open_marker = (lineno, match["indent"])
            continue
        if open_marker is None:
            raise StubError(f"line {lineno}: END SOLUTION without a BEGIN SOLUTION")
        begin, indent = open_marker
        owner = [f for f in functions if f.lineno < begin and lineno <= f.end_lineno]
        if not owner:
            raise StubError(f"lines {begin}-{lineno}: a solution region must lie inside a top-level function")
        regions.append(Region(owner[0].name, begin, lineno, indent))
        open_marker = None
    if open_marker is not None:
        raise StubError(f"line {open_marker[0]}: BEGIN SOLUTION is never closed")
    names = [r.function for r in regions]
    if len(set(names)) != len(names):
        raise StubError(f"a function holds more than one solution region: {names}")
    return regions


def student_functions(source):
    """Names of the functions students implement, in file order."""
    return [r.function for r in solution_regions(source)]


def make_stub(source, language=SOURCE_LANGUAGE):
    """Return the stub file for a reference source (see module docstring), its TODOs in `language`."""
    gettext = translations(language).gettext
    lines = source.splitlines(keepends=True)
    for region in reversed(solution_regions(source)):
        name, indent = region.function, region.indent
        message = gettext(STUB_MESSAGE).format(name=name)
        literal = f'"{message}"' if '"' not in message and "\\" not in message else repr(message)
        todo = [
            f"{indent}# {gettext(TODO).format(name=name)}\n",
            f"{indent}raise NotImplementedError({literal})\n",
        ]
        lines[region.begin - 1 : region.end] = todo
    return "".join(lines)


def check_stub(solution_path, stub_path):
    """Return True when the file at stub_path is exactly the stub of solution_path."""
    expected = make_stub(Path(solution_path).read_text())
    return Path(stub_path).is_file() and Path(stub_path).read_text() == expected


def write_stub(solution_path, stub_path):
    """Write the stub of solution_path to stub_path; return True if the file changed."""
    if check_stub(solution_path, stub_path):
        return False
    Path(stub_path).write_text(make_stub(Path(solution_path).read_text()))
    return True


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "stubs", help="generate assignment/normlab/layers.py from the reference, and mistakes.npz from the diagnosis",
        description=__doc__,
    )
    parser.add_argument("--check", action="store_true", help="only check that the stub is up to date")
    parser.add_argument("--solution", type=Path, default=SOLUTION_LAYERS)
    parser.add_argument("--stub", type=Path, default=STUB_LAYERS)
    parser.add_argument("--mistakes", type=Path, default=None,
                        help="the students' table of mistakes (default: normlab/mistakes.npz beside the stubs)")
    parser.set_defaults(run=run)


def run(args):
    from normgrade.score import mistakes

    table = args.mistakes or mistakes.MISTAKES_FILE
    if args.check:
        stale = [] if check_stub(args.solution, args.stub) else [f"{args.stub} (from {args.solution})"]
        stale += [] if mistakes.is_current(table) else [f"{table} (from normgrade.score.diagnosis)"]
        for path in stale:
            print(f"out of date: {path}: run `normgrade stubs`")
        if not stale:
            print(f"{args.stub} and {table.name} are up to date")
        return 1 if stale else 0
    changed = write_stub(args.solution, args.stub)
    print(f"{'wrote' if changed else 'unchanged:'} {args.stub}")
    changed = mistakes.write(table)
    print(f"{'wrote' if changed else 'unchanged:'} {table}")
    return 0
