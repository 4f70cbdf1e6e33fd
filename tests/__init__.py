"""imgprov test suite."""
