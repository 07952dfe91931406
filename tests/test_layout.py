"""
The staff package's shape is its architecture: its folders import one another in one direction.

    run        what runs next to student code (the sandbox, the worker): imports only normgrade.paths
    score      what decides points: run and the base
    platforms  where submissions come from and grades go: score, run, the base
    grade      what grades a class: platforms, score, run, the base
    results    what people read: grade and everything below it
    build      what builds a course (its proof grades one): everything but the CLI
    cli        the `normgrade` command: imported by nothing

The base modules (paths, course, files) import none of the folders. And no module imports another in a cycle.
"""
import ast

from normgrade.paths import REPO

PACKAGE = REPO / "autograder" / "normgrade"
ORDER = ["run", "score", "platforms", "grade", "results", "build"]
BASE = {"paths", "course", "files", "__init__"}


def module_name(path):
    """A module's name under normgrade: 'grade.ledger', 'paths', 'run' (a folder's __init__)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def package_imports(path):
    """The normgrade modules a module imports, at its top or inside a function (names as module_name gives)."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.relative_to(PACKAGE)}: a relative import (normgrade imports by full name)")
        found = []
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "normgrade":
            base = node.module.split(".", 1)[1] if "." in node.module else ""
            found = [f"{base}.{a.name}".strip(".") for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            found = [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("normgrade.")]
        names |= {name for name in found if name in modules}
    return names


def group(module):
    top = module.split(".")[0]
    return top if top in ORDER or top == "cli" else "base"


def allowed(importer, imported):
    """Whether a module of group `importer` may import one of group `imported` (see the module docstring)."""
    if imported == importer:
        return True
    if importer == "base":
        return False
    if importer == "run":
        return imported == "base"  # paths only: checked below
    if importer == "cli":
        return True
    if imported == "cli":
        return False
    return imported == "base" or ORDER.index(imported) < ORDER.index(importer)


def graph():
    return {module_name(path): package_imports(path) for path in PACKAGE.rglob("*.py")}


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
    modules = graph()
    assert modules["build.release"] >= {"grade.class_run"}, "the scan sees the imports it should"
    assert modules["run.sandbox"] >= {"run.worker", "paths"}
    assert find_cycle(modules) is None, f"import cycle: {' -> '.join(find_cycle(modules))}"


def test_the_folders_import_one_another_in_one_direction():
    wrong = sorted(f"{module} ({group(module)}) imports {other} ({group(other)})" for module, others in graph().items()
                   for other in others if not allowed(group(module), group(other)))
    assert not wrong, "\n".join(wrong)


def test_the_sandbox_side_imports_nothing_of_the_rest_and_the_worker_nothing_at_all():
    modules = graph()
    for module in ("run.sandbox", "run.worker", "run"):  # the base: paths, and the messages' language
        assert modules[module] <= {"run.worker", "run", "paths", "language"}, (module, modules[module])
    assert modules["language"] <= {"paths", "course"}, "the messages' module reaches nothing secret"
    assert modules["run.worker"] == set(), "the worker is copied alone into the sandbox: it imports no normgrade module"


def test_the_direction_check_can_fail():
    assert not allowed("run", "score") and not allowed("score", "grade") and not allowed("grade", "results")
    assert not allowed("base", "grade") and not allowed("build", "cli") and allowed("cli", "build")
    assert allowed("results", "grade") and allowed("build", "results") and allowed("platforms", "score")
