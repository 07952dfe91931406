"""The source notebooks: where they are, their graded cells and their answer keys."""
import ast
import re
from pathlib import Path

import nbformat

from normgrade.paths import NOTEBOOKS

_SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def source_notebooks(folder=NOTEBOOKS):
    return sorted(folder.glob("*.ipynb"))


def cell_name(path, index):
    """How a message names a cell: its notebook's file and its place counted from 1, as people count cells."""
    return f"{Path(path).name} cell {index + 1}"


def unreadable(paths):
    """A problem, naming the file and where, for each notebook at `paths` that is not JSON or not a valid notebook."""
    import json

    problems = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
            json.loads(text)  # nbformat's own error shows the file's first characters, not where it breaks
            nbformat.validate(nbformat.reads(text, as_version=4))
        except json.JSONDecodeError as err:
            problems.append(f"{Path(path).name} is not JSON: {err.msg} at line {err.lineno}, column {err.colno}")
        except Exception as err:  # noqa: BLE001 - not a notebook nbformat can read, or invalid by its schema
            lines = str(err).strip().splitlines()
            problems.append(f"{Path(path).name} is not a valid notebook: {type(err).__name__}: "
                            f"{lines[0][:300] if lines else ''}")
    return problems


def nbgrader_cells(path):
    """(cell, nbgrader metadata) for every nbgrader cell of the notebook at path."""
    nb = nbformat.read(path, as_version=4)
    return [(cell, cell.metadata["nbgrader"]) for cell in nb.cells if "nbgrader" in cell.metadata]


def answer_keys(paths=None):
    """
    The keys of the auto-graded inline questions: in each code solution cell
    whose grade_id starts with 'answer_', the solution region assigns one
    literal to the question's variable. That assignment is the only copy of the key.
    """
    keys = {}
    for path in paths or source_notebooks():
        for cell, meta in nbgrader_cells(path):
            if cell.cell_type != "code" or not meta.get("solution") or not meta.get("grade_id", "").startswith("answer_"):
                continue
            match = _SOLUTION.search(cell.source)
            if not match:
                raise ValueError(f"{path.name}: answer cell {meta['grade_id']} has no solution region")
            tree = ast.parse(match.group(1))
            if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
                raise ValueError(f"{path.name}: answer cell {meta['grade_id']} must assign exactly one value")
            target = tree.body[0].targets[0].id
            keys[target] = ast.literal_eval(tree.body[0].value)
    return keys


_POINTS_TEXT = re.compile(r"\((\d+(?:\.\d+)?) points?\)")
_RUBRIC_ITEM = re.compile(r"^\s*- (\d+(?:\.\d+)?) points?:", re.M)


def derive_points(nb):
    """
    Write the points of `nb`'s graded cells where they are derived, in place;
    return what changed, as lines. Points have one place a TA edits: for a
    function's test cell (test_<function>), its checks in normgrade/score/checks.py;
    for any other graded cell (a written answer, an inline question), its
    nbgrader metadata. From it come the cell's metadata points and every
    "(N points)" in the cell's text.
    """
    from normgrade.score.checks import FUNCTIONS, total_points

    changed = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade"):
            continue
        gid = meta.get("grade_id", "")
        function = gid.removeprefix("test_")
        if gid.startswith("test_") and function in FUNCTIONS and float(meta.get("points", 0)) != total_points(function):
            changed.append(f"{gid}: {float(meta.get('points', 0)):g} -> {total_points(function):g} points "
                           "(its checks in normgrade/score/checks.py)")
            meta["points"] = total_points(function)
        points = float(meta.get("points", 0))
        said = f"({points:g} point{'' if points == 1 else 's'})"
        text = _POINTS_TEXT.sub(said, cell.source)
        if text != cell.source:
            changed.append(f"{gid}: its text says {said}")
            cell.source = text
    return changed


def point_problems(paths):
    """
    What stops the points of the notebooks at `paths` from being derived,
    before anything is built: a graded cell worth nothing, rubric items
    ("- N point: ...") that do not add up to their cell's points, a graded
    function without exactly one test cell test_<function>. Returns the
    problems, each naming the cell (points are derived first: derive_points).
    """
    from normgrade.score.checks import FUNCTIONS

    problems, cells_of = [], {}
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        derive_points(nb)
        for index, cell in enumerate(nb.cells):
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("grade"):
                continue
            where = f"{cell_name(path, index)} ({meta.get('grade_id')})"
            points = float(meta.get("points", 0))
            if points <= 0:
                problems.append(f"{where} is graded but worth {points:g} points")
            function = meta.get("grade_id", "").removeprefix("test_")
            if meta.get("grade_id", "").startswith("test_") and function in FUNCTIONS:
                cells_of.setdefault(function, []).append(where)
            items = [float(x) for x in _RUBRIC_ITEM.findall(cell.source)]
            if items and abs(sum(items) - points) > 1e-9:
                problems.append(f"{where}: its rubric items add up to {sum(items):g} points, but the cell is worth "
                                f"{points:g}: change the items or the cell's points")
    for function in FUNCTIONS:
        found = cells_of.get(function, [])
        if len(found) != 1:
            problems.append(f"{function} is graded by normgrade/score/checks.py, and needs exactly one test cell "
                            f"test_{function} in the notebooks; found {len(found)}" + (f": {', '.join(found)}" if found else ""))
    return problems


def _indented_code(tokens):
    """True if a mistune AST holds an indented code block (4 leading spaces: shown as code, not prose)."""
    return any(t.get("type") == "block_code" and t.get("style") == "indent" or _indented_code(t.get("children", []))
               for t in tokens)


def rendering_problems(paths):
    """
    What a student would see wrong in the notebooks at `paths`: a notebook that
    does not validate, or a markdown cell with an indented code block (text
    that Jupyter shows as code). Markdown is parsed with mistune, nbconvert's parser.
    """
    import mistune

    parse = mistune.create_markdown(renderer=None)
    problems = []
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=4)
            nbformat.validate(nb)
        except Exception as err:  # not JSON, not a valid notebook
            problems.append(f"{path.name} is not a valid notebook: {type(err).__name__}: {err}")
            continue
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown" and _indented_code(parse(cell.source)):
                problems.append(f"{cell_name(path, index)}: a line indented by 4 spaces renders as a code block, "
                                f"not prose: {cell.source.strip().splitlines()[0][:60]!r}")
    return problems


def graded_cells(paths):
    """{grade_id: (notebook name, points, text)} of the graded cells of the notebooks at `paths`."""
    cells = {}
    for path in paths:
        for cell, meta in nbgrader_cells(path):
            if meta.get("grade"):
                cells[meta["grade_id"]] = (path.name, float(meta.get("points", 0)), cell.source)
    return cells


def changes(old_source, new_source, old_release=(), new_release=()):
    """
    What a rebuild changes for students, as lines: from the source notebooks,
    graded cells added or removed, their points, the assignment's total,
    inline answer keys added, removed or changed (the keys themselves are not
    printed); from the released notebooks (what students see: no solution,
    no hidden test, no rubric), every cell whose text changed, added or
    removed, markdown included.
    """
    old, new = graded_cells(old_source), graded_cells(new_source)
    lines = [f"new graded cell {gid} in {new[gid][0]} ({new[gid][1]:g} points)" for gid in sorted(set(new) - set(old))]
    lines += [f"graded cell {gid} removed from {old[gid][0]}" for gid in sorted(set(old) - set(new))]
    lines += [f"{gid}: {old[gid][1]:g} -> {new[gid][1]:g} points" for gid in sorted(set(old) & set(new))
              if old[gid][1] != new[gid][1]]
    old_total, new_total = (sum(points for _, points, _ in cells.values()) for cells in (old, new))
    if old_total != new_total:
        lines.append(f"the assignment is worth {old_total:g} -> {new_total:g} points")
    old_keys, new_keys = answer_keys(old_source), answer_keys(new_source)
    lines += [f"answer key of {name}: {'added' if name not in old_keys else 'removed' if name not in new_keys else 'changed'}"
              for name in sorted(set(old_keys) | set(new_keys)) if old_keys.get(name, ...) != new_keys.get(name, ...)]
    return lines + seen_changes(old_release, new_release)


def seen_changes(old_paths, new_paths):
    """Cells of the released notebooks whose text students see changed, was added or removed (matched by cell id)."""
    old = {path.name: path for path in old_paths}
    lines = []
    for path in new_paths:
        if path.name not in old:
            lines.append(f"new notebook {path.name}")
            continue
        before = {cell.get("id"): cell for cell in nbformat.read(old[path.name], as_version=4).cells}
        after = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(after):
            was = before.pop(cell.get("id"), None)
            if was is None:
                lines.append(f"{cell_name(path, index)}: a new {cell.cell_type} cell ({first_line(cell)})")
            elif was.source != cell.source:
                lines.append(f"{cell_name(path, index)} ({first_line(cell)}): its text changed")
        lines += [f"{path.name}: the {cell.cell_type} cell {first_line(cell)} was removed" for cell in before.values()]
    lines += [f"notebook {name} removed" for name in sorted(set(old) - {path.name for path in new_paths})]
    return lines


def first_line(cell):
    """A cell's first line, quoted (a code cell's first line of code, comments aside), to find it by: 'x = 1'."""
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()
             and not (cell.cell_type == "code" and line.lstrip().startswith("#"))]
    return repr(lines[0][:60]) if lines else "empty"
