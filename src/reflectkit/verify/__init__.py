"""Is the endpoint what it claims? Tiered checks, publishable fingerprints, canaries during runs."""
