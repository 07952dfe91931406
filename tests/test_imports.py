"""
What a normgrade process imports: not rfc3987_syntax, whose import alone costs about 0.75 s (it builds
about thirty Earley parsers), for format checks no schema of ours has (normgrade/__init__.py).
"""
import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import normgrade, nbformat, jsonschema
print(sys.modules.get("rfc3987_syntax") is None)
nb = nbformat.v4.new_notebook()
nbformat.validate(nb)
nb.cells.append({"cell_type": "code", "source": 1})  # not a notebook: validation still says so
try:
    nbformat.validate(nb)
except nbformat.ValidationError:
    print("refused")
"""


def test_a_normgrade_process_does_without_rfc3987_syntax_and_still_validates_notebooks():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "refused"]


def _formats(node):
    if isinstance(node, dict):
        yield from ([node["format"]] if isinstance(node.get("format"), str) else [])
        for value in node.values():
            yield from _formats(value)
    elif isinstance(node, list):
        for value in node:
            yield from _formats(value)


def test_no_notebook_schema_has_a_format_that_needs_rfc3987_syntax():
    import nbformat

    schemas = sorted((Path(nbformat.__file__).parent).rglob("*.schema.json"))
    assert schemas, "nbformat's schemas were not found"
    used = {fmt for path in schemas for fmt in _formats(json.loads(path.read_text()))}
    assert not used & {"iri", "iri-reference"}, used
