"""Test runs (pytest-django sets this module)."""

import os
import tempfile

from .base import *  # noqa: F403
from .base import BASE_DIR, DATABASES, REDIS_URL, env, redis_settings

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Short waits keep the delivery-repair tests quick; behaviour is the same.
CHAT_GAP_WAIT = 0.05
CHAT_SWEEP_INTERVAL = 1.0
CHAT_PRESENCE_BATCH = 0.05
CHAT_RATE_LIMIT = "off"

# Several test runs may share this machine's PostgreSQL and Redis (developers
# side by side, CI): each run gets its own test database and Redis key space.
_run = f"t{os.getpid()}"
CHAT_REDIS_PREFIX = _run
# Uploads of a test run never land in the project's media/ folder (tests that
# store files point MEDIA_ROOT at their own tmp_path; this is the safety net).
MEDIA_ROOT = env("DJANGO_MEDIA_ROOT", default=os.path.join(tempfile.gettempdir(), f"chat-test-media-{_run}"))
if REDIS_URL:
    CHANNEL_LAYERS, CACHES = redis_settings(_run)
if DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": f"test_chat_{_run}"}
    # Connections opened on database_sync_to_async's worker thread would
    # otherwise outlive the run and block dropping the test database. (With
    # the pool, the default, it is 0 already; Django closes the pool before
    # dropping the test database and tests/conftest.py ends any connection
    # still borrowed.)
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A file, not memory: the browser tests' daphne process must see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test-db-{_run}.sqlite3")}
