"""normgrade: staff tooling for the normalization assignment (stubs, expected values, releases, trusted grading).

Student code is only ever run by normgrade.worker, inside the sandbox of normgrade.sandbox;
normgrade.scorer and normgrade.checks decide points from the raw values it returns.
"""
