"""The source notebooks: where they are, their graded cells and their answer keys."""
import ast
import re

import nbformat

from .paths import NOTEBOOKS

_SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def source_notebooks(folder=NOTEBOOKS):
    return sorted(folder.glob("*.ipynb"))


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
                problems.append(f"{path.name} cell {index}: a line indented by 4 spaces renders as a code block, "
                                f"not prose: {cell.source.strip().splitlines()[0][:60]!r}")
    return problems
