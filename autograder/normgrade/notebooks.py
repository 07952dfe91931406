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
