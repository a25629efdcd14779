"""Per-clip stages: setup() loads models once per worker, __call__(batch) -> batch."""
