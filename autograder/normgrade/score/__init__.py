"""What decides points: the checks, the diagnosis of wrong values, the trusted scorer, the expected values and answer keys, the known mistakes that test them."""
