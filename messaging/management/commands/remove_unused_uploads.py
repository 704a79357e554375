"""Remove uploads that were never attached to a message, with their stored files.

    manage.py remove_unused_uploads                    # older than a day (the contract's promise)
    manage.py remove_unused_uploads --older-than 6h    # units: s, m, h, d; a bare number is hours

Run it from cron or a scheduler, e.g. hourly; a run is safe alongside live
sends (messaging.attachments.attachments_remove_unused).
"""

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from messaging.attachments import attachments_remove_unused

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 3600}


def parse_duration(value: str) -> timedelta:
    """ "90s", "30m", "6h", "2d", or a bare number of hours."""
    match = _DURATION.match(value)
    if match is None:
        raise CommandError(f"--older-than: expected a number with an optional unit s, m, h or d, not {value!r}.")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


class Command(BaseCommand):
    help = "Delete uploads never used in a message (and their stored files) older than --older-than (default 24h)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            default="24h",
            help='Age of the uploads to remove: "90s", "30m", "6h", "2d"; a bare number is hours. Default 24h.',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        age = parse_duration(options["older_than"])
        removed = attachments_remove_unused(older_than=age)
        self.stdout.write(f"Removed {removed} unused upload(s) older than {age}.")
