"""normgrade: staff tooling for the normalization assignment (stubs, expected values, releases, trusted grading).

Student code is only ever run by normgrade.run.worker, inside the sandbox of normgrade.run.sandbox;
normgrade.score.scorer and normgrade.score.checks decide points from the raw values it returns.
"""

import sys

# jsonschema registers its "iri" format checks when rfc3987_syntax imports, and that module builds about
# thirty Earley parsers as it is imported: 0.75 s of every process that imports nbformat (each normgrade
# command, each submission graded on its own). No schema that normgrade's processes validate (the notebook
# format) has an "iri" format (tests/test_imports.py checks it), so they do without it: the import raises
# ImportError, which jsonschema expects of an optional checker.
sys.modules.setdefault("rfc3987_syntax", None)
