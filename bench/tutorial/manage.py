#!/usr/bin/env python
"""The tutorial project's manage.py (the harness runs `migrate --run-syncdb` with it)."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tutorial_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
