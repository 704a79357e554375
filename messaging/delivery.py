"""Seq order for one room: each message once, in order, no gaps.

The channel layer is at-most-once and may reorder (two processes committing
one after the other publish independently). A `SeqCursor` holds the last seq
delivered: a repeat is dropped, the next seq is due at once, and anything
further ahead is held back until the missing seqs arrive or are fetched from
the database (`messaging.fanout` does the fetching, once per room per
process). It is plain bookkeeping, with no I/O, so it is easy to reason about
and to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SeqCursor:
    delivered: int
    held: dict[int, dict[str, Any]] = field(default_factory=dict)

    def offer(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """Take one message; return those now due, in seq order (possibly none)."""
        seq = message["seq"]
        if seq <= self.delivered or seq in self.held:
            return []
        self.held[seq] = message
        return self._due()

    def fill(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Take messages read from the database (ascending); return those now due."""
        for message in rows:
            if message["seq"] > self.delivered and message["seq"] not in self.held:
                self.held[message["seq"]] = message
        return self._due()

    def _due(self) -> list[dict[str, Any]]:
        due = []
        while self.delivered + 1 in self.held:
            self.delivered += 1
            due.append(self.held.pop(self.delivered))
        return due

    @property
    def has_gap(self) -> bool:
        return bool(self.held)

    def target(self, up_to: int | None) -> int | None:
        """How far a repair must read: the newest held message, else `up_to`."""
        return max(self.held) if self.held else up_to

    def forget_delivered(self) -> None:
        for seq in [s for s in self.held if s <= self.delivered]:
            del self.held[seq]
