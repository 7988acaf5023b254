"""Property-based tests (hypothesis): model checking, replay equivalence, skipping safety."""
