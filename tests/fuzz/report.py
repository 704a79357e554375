"""Lines the fuzz tests leave for the run's summary (tests/fuzz/conftest.py)."""

LINES: list[str] = []
