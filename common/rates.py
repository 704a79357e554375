"""Parsing CHAT_RATE_LIMIT, free of Django so settings can validate it at start-up."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    count: int
    seconds: int


def parse_rate(value: str) -> Rate | None:
    """`"30/10"` -> Rate(30, 10); `"off"` (or empty) -> None; anything else is a ValueError."""
    value = (value or "").strip().lower()
    if value in ("", "off", "none", "0"):
        return None
    try:
        count, seconds = value.split("/")
        rate = Rate(int(count), int(seconds))
    except ValueError as exc:
        raise ValueError(f"CHAT_RATE_LIMIT must look like N/S or 'off', not {value!r}") from exc
    if rate.count < 1 or rate.seconds < 1:
        raise ValueError(f"CHAT_RATE_LIMIT must be positive, not {value!r}")
    return rate
