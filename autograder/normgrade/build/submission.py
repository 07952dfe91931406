"""Student packages on disk: assemble the reference submission, import a normlab package in isolation."""
import contextlib
import importlib
import shutil
import sys
from pathlib import Path

from normgrade.paths import SOLUTION_LAYERS, STUDENT_PACKAGE

PACKAGE = "normlab"


def assemble_stubs(dest):
    """Write the bare student package (stubs) into folder `dest`. Returns dest / "normlab"."""
    package = Path(dest) / PACKAGE
    shutil.copytree(STUDENT_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def assemble_reference(dest):
    """
    Write the reference submission into folder `dest`: the student package with
    solutions/normlab/layers.py copied over its stub. Returns dest / "normlab".
    """
    package = assemble_stubs(dest)
    shutil.copyfile(SOLUTION_LAYERS, package / "layers.py")
    return package


@contextlib.contextmanager
def imported_package(parent_dir):
    """
    Import the normlab package found in `parent_dir` for the duration of the
    block, and yield it. Whatever normlab modules were imported before are put
    back afterwards, so several packages can be used one after another.
    """
    parent_dir = Path(parent_dir).resolve()
    if not (parent_dir / PACKAGE / "__init__.py").is_file():
        raise FileNotFoundError(f"no {PACKAGE} package in {parent_dir}")
    saved = {k: v for k, v in sys.modules.items() if k == PACKAGE or k.startswith(PACKAGE + ".")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(parent_dir))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(parent_dir))
        for name in [k for k in sys.modules if k == PACKAGE or k.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sys.modules.update(saved)
