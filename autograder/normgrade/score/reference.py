"""Import a layers.py file (the reference, or any submission's) as a module of a normlab package."""
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from normgrade.paths import SOLUTION_LAYERS, STUDENT_PACKAGE


def load_layers(path=SOLUTION_LAYERS, package_dir=STUDENT_PACKAGE):
    """
    Import `path` as a submodule of the normlab package in `package_dir`, so
    that its relative imports (`from .backend import ...`) resolve to that
    package's provided helpers. Each distinct file gets its own module name,
    so the reference and a student's layers can be loaded side by side.
    """
    path, package_dir = Path(path).resolve(), Path(package_dir).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no layers file at {path}")
    course_normlab(package_dir)
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"normlab._layers_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def course_normlab(package_dir=STUDENT_PACKAGE):
    """The normlab package in `package_dir` (the course's own), imported; ImportError if another one was."""
    package_dir = Path(package_dir).resolve()
    normlab = sys.modules.get("normlab")
    if normlab is None:
        sys.path.insert(0, str(package_dir.parent))
        normlab = importlib.import_module("normlab")
    if Path(normlab.__file__).resolve().parent != package_dir:
        raise ImportError(
            f"the normlab package already imported lives in {Path(normlab.__file__).parent}, "
            f"not in {package_dir}"
        )
    return normlab
