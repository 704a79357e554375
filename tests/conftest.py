"""Shared fixtures. Real services come from the environment:

- DATABASE_URL (PostgreSQL) and REDIS_URL select the real backends;
- tests marked `redis`, `postgres`, `browser` are skipped without them, and
  REQUIRE_SERVICES=1 (CI) turns each such skip into a failure.
"""

import os
import shutil

import pytest
from django.conf import settings

from rooms.presence import reset_presence

from .factories import DmFactory, RoomFactory, UserFactory

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def _missing(marker: str) -> str | None:
    if marker == "redis" and not settings.REDIS_URL:
        return "REDIS_URL is not set"
    if marker == "postgres" and settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "DATABASE_URL does not point at PostgreSQL"
    if marker == "browser" and chromium_path() is None:
        return "Chromium is not installed"
    if marker == "multiprocess" and (
        not settings.REDIS_URL or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"
    ):
        return "several processes need PostgreSQL and Redis"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in ("redis", "postgres", "browser", "multiprocess"):
        if item.get_closest_marker(marker) is None:
            continue
        reason = _missing(marker)
        if reason is None:
            continue
        if REQUIRE_SERVICES:
            pytest.fail(f"REQUIRE_SERVICES=1 but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _fresh_state(settings):
    """Each test starts with empty presence and rate-limit state."""
    from channels.layers import channel_layers

    _clear_redis_namespace()
    reset_presence()
    # Layers hold asyncio locks bound to one event loop, and each test has its own.
    channel_layers.backends.clear()
    yield
    reset_presence()
    channel_layers.backends.clear()


def _clear_redis_namespace() -> None:
    """Forget rate-limit counters and presence; only this run's keys, never FLUSHDB."""
    from django.core.cache import cache

    if not settings.REDIS_URL:
        cache.clear()
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{settings.CHAT_REDIS_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def alice(db):
    return UserFactory(username="alice", display_name="Alice", is_staff=True, is_superuser=True)


@pytest.fixture
def bob(db):
    return UserFactory(username="bob", display_name="Bob")


@pytest.fixture
def carol(db):
    return UserFactory(username="carol", display_name="Carol")


@pytest.fixture
def lobby(db, alice):
    return RoomFactory(slug="lobby", name="Lobby", created_by=alice)


@pytest.fixture
def private_room(db, alice):
    return RoomFactory(slug="staff", name="Staff", created_by=alice, is_private=True)


@pytest.fixture
def dave(db):
    return UserFactory(username="dave", display_name="Dave")


@pytest.fixture
def bob_carol_dm(db, bob, carol):
    """The direct message of bob and carol (alice, staff, is not in it)."""
    return DmFactory(participants=[bob, carol])


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, whose teardown first ends stray connections.

    A socket's task cancelled at the end of a test can leave a connection open
    on database_sync_to_async's worker thread, which would make dropping the
    test database fail and leave it behind on a shared server.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def media_root(settings, tmp_path):
    """Stored uploads go to this test's own folder (Django's file storage follows MEDIA_ROOT)."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
