"""normgrade: staff tooling for the normalization assignment (stubs, expected values, releases, grading)."""
