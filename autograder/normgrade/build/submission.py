"""Student packages on disk: assemble the reference submission, import a normlab package in isolation."""
import contextlib
import importlib
import shutil
import sys
from pathlib import Path

from normgrade import language as languages
from normgrade.paths import SOLUTION_LAYERS, STUDENT_PACKAGE

PACKAGE = "normlab"


def assemble_stubs(dest, language=languages.SOURCE_LANGUAGE):
    """
    Write the bare student package (stubs) into folder `dest`, as a release in
    `language` has it: every language's compiled catalog, `language` as the
    course's (normlab/locale/COURSE_LANGUAGE), and the stubs' docstrings and
    TODOs in it. Returns dest / "normlab".
    """
    package = Path(dest) / PACKAGE
    shutil.copytree(STUDENT_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__", "locale"))
    languages.compile_catalogs(package / "locale", student_side=True)
    (package / "locale" / languages.COURSE_LANGUAGE_FILE).write_text(language + "\n", encoding="utf-8")
    if language != languages.SOURCE_LANGUAGE:
        (package / "layers.py").write_text(stub_layers(language), encoding="utf-8")
    return package


def stub_layers(language=languages.SOURCE_LANGUAGE):
    """
    The stubs' normlab/layers.py in `language`: the stub of the reference,
    its docstrings and comments translated (in English, what `normgrade stubs`
    writes into assignment/normlab/layers.py, which its --check holds equal).
    """
    from normgrade.build.stubs import make_stub

    stub = make_stub(SOLUTION_LAYERS.read_text(encoding="utf-8"), language)
    return stub if language == languages.SOURCE_LANGUAGE else languages.translate_docstrings(stub, language)


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
