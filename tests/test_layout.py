"""The staff package's shape: its modules import one another in one direction (no import cycle)."""
import ast

from normgrade.paths import REPO

PACKAGE = REPO / "autograder" / "normgrade"


def package_imports(path):
    """The sibling modules a module of normgrade imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("normgrade."):
            names.add(node.module.split(".")[1])
    return names


def find_cycle(graph):
    """One import cycle of graph {module: {module...}} as a list, or None."""
    state = {}

    def visit(module, trail):
        state[module] = "open"
        for other in sorted(graph.get(module, ())):
            if state.get(other) == "open":
                return trail[trail.index(other):] + [other]
            if other not in state:
                found = visit(other, trail + [other])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"autograde": {"release"}, "release": {"course", "autograde"}}) == [
        "autograde", "release", "autograde"]
    assert find_cycle({"release": {"autograde"}, "autograde": {"course"}}) is None


def test_the_staff_package_has_no_import_cycle():
    graph = {path.stem: package_imports(path) for path in PACKAGE.glob("*.py")}
    assert graph["release"] >= {"class_run"}, "the scan sees the imports it should"
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
