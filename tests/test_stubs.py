"""The stub file is the reference with the solution bodies removed, and nothing else."""
import ast
import re

import numpy as np
import pytest

from normgrade.build import stubs
from normgrade.language import STUB_MESSAGE
from normgrade.paths import SOLUTION_LAYERS, STUB_LAYERS

STUDENT_FUNCTIONS = [
    "batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt",
    "layernorm_forward", "layernorm_backward",
    "spatial_batchnorm_forward", "spatial_batchnorm_backward",
    "spatial_groupnorm_forward", "spatial_groupnorm_backward",
]


def test_solution_marks_exactly_the_student_api():
    assert stubs.student_functions(SOLUTION_LAYERS.read_text()) == STUDENT_FUNCTIONS


def test_committed_stub_is_generated_from_reference():
    assert stubs.check_stub(SOLUTION_LAYERS, STUB_LAYERS), "run `make stubs` and commit the result"


def _strip_student_bodies(tree):
    """Module AST dump with the whole body of each student function replaced by a placeholder."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in STUDENT_FUNCTIONS:
            node.body = [ast.Constant("<student body>")]
    return ast.dump(tree)


def _student_bodies(tree):
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in STUDENT_FUNCTIONS}


def test_files_differ_only_inside_student_function_bodies():
    solution = ast.parse(SOLUTION_LAYERS.read_text())
    stub = ast.parse(STUB_LAYERS.read_text())
    # Everything outside the student functions is identical ...
    assert _strip_student_bodies(solution) == _strip_student_bodies(stub)
    # ... and so are the signatures and docstrings of the student functions.
    sol_funcs, stub_funcs = _student_bodies(solution), _student_bodies(stub)
    for name in STUDENT_FUNCTIONS:
        assert ast.dump(sol_funcs[name].args) == ast.dump(stub_funcs[name].args), name
        assert ast.get_docstring(sol_funcs[name]) == ast.get_docstring(stub_funcs[name]), name


def test_stub_contains_no_solution_code():
    source, stub_source = SOLUTION_LAYERS.read_text(), STUB_LAYERS.read_text()
    lines = source.splitlines()
    stub_funcs = _student_bodies(ast.parse(stub_source))
    for region in stubs.solution_regions(source):
        stub_body = {
            line.strip()
            for line in ast.get_source_segment(stub_source, stub_funcs[region.function]).splitlines()
        }
        solution = [l.strip() for l in lines[region.begin : region.end - 1]]
        leaked = [l for l in solution if l and not l.startswith("#") and l in stub_body]
        assert not leaked, f"{region.function}: solution lines in the stub: {leaked}"
    assert "BEGIN SOLUTION" not in stub_source


@pytest.mark.parametrize("name", STUDENT_FUNCTIONS)
def test_every_stub_raises_not_implemented_naming_itself(name):
    from normlab import layers

    x2, x4 = np.ones((4, 3)), np.ones((2, 4, 3, 3))
    calls = {
        "batchnorm_forward": lambda: layers.batchnorm_forward(x2, np.ones(3), np.zeros(3), {"mode": "train"}),
        "layernorm_forward": lambda: layers.layernorm_forward(x2, np.ones(3), np.zeros(3), {}),
        "spatial_batchnorm_forward": lambda: layers.spatial_batchnorm_forward(
            x4, np.ones(4), np.zeros(4), {"mode": "train"}
        ),
        "spatial_groupnorm_forward": lambda: layers.spatial_groupnorm_forward(
            x4, np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1)), 2, {}
        ),
    }
    call = calls.get(name, lambda: getattr(layers, name)(x2, {}))
    with pytest.raises(NotImplementedError, match=f"^{re.escape(STUB_MESSAGE.format(name=name))}$"):
        call()


@pytest.mark.parametrize(
    "source, message",
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without a BEGIN"),
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "inside a top-level function"),
        ("def f():\n    x = 1  ### BEGIN SOLUTION\n", "stand alone"),
        (
            "def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n",
            "inside the region",
        ),
    ],
)
def test_malformed_markers_are_rejected(source, message):
    with pytest.raises(stubs.StubError, match=message):
        stubs.make_stub(source)


def test_make_stub_replaces_region_and_keeps_the_rest():
    source = 'def f(x):\n    """Doc."""\n    y = None\n    ### BEGIN SOLUTION\n    y = x + 1\n    ### END SOLUTION\n    return y\n'
    stub = stubs.make_stub(source)
    assert "x + 1" not in stub
    assert '"""Doc."""' in stub and "return y" in stub
    namespace = {}
    exec(stub, namespace)
    with pytest.raises(NotImplementedError, match="f is not implemented"):
        namespace["f"](1)


def test_cli_check_detects_an_outdated_stub(tmp_path, capsys):
    from normgrade.cli import main

    stale = tmp_path / "layers.py"
    stale.write_text(STUB_LAYERS.read_text() + "\n# edited by hand\n")
    table = tmp_path / "mistakes.npz"  # never the package's own: other tests read it meanwhile
    table.write_bytes(b"not a table")
    assert main(["stubs", "--check", "--stub", str(stale), "--mistakes", str(table)]) == 1
    assert main(["stubs", "--stub", str(stale), "--mistakes", str(table)]) == 0
    assert main(["stubs", "--check", "--stub", str(stale), "--mistakes", str(table)]) == 0
    assert "out of date" in capsys.readouterr().out
