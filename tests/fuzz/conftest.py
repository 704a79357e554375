"""The fuzzers' counts, printed at the end of the run (see `make fuzz`)."""

from .report import LINES


def pytest_terminal_summary(terminalreporter) -> None:
    if LINES:
        terminalreporter.section("fuzzing")
        for line in LINES:
            terminalreporter.write_line(line)
