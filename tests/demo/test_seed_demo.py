"""`manage.py seed_demo`: the documented demo data, idempotent, never under production settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from accounts.models import User
from messaging.models import Message
from messaging.services import message_create
from rooms.models import Membership, Room

ROOT = Path(__file__).resolve().parents[2]


def _snapshot() -> dict:
    return {
        "users": sorted(User.objects.values_list("username", "display_name", "is_staff", "is_superuser", "password")),
        "rooms": sorted(Room.objects.values_list("slug", "name", "is_private", "last_seq")),
        "memberships": sorted(Membership.objects.values_list("room__slug", "user__username", "role")),
        "messages": sorted(Message.objects.values_list("room__slug", "seq", "body")),
    }


def test_seed_demo_creates_the_documented_data_and_is_idempotent(db):
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    first = _snapshot()
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert _snapshot() == first

    users = {u.username: u for u in User.objects.all()}
    assert set(users) == {"alice", "bob", "carol"}
    assert all(u.check_password("chatchat123") for u in users.values())
    assert users["alice"].is_staff and users["alice"].is_superuser
    assert not users["bob"].is_staff and users["bob"].display_name
    rooms = {r.slug: r for r in Room.objects.all()}
    assert set(rooms) == {"lobby", "random", "staff"}
    assert not rooms["lobby"].is_private and not rooms["random"].is_private and rooms["staff"].is_private
    assert Membership.objects.get(room=rooms["staff"], role="owner").user.username == "alice"
    assert list(Membership.objects.filter(room=rooms["staff"]).values_list("user__username", flat=True)) == ["alice"]
    assert rooms["lobby"].last_seq >= 1 and rooms["random"].last_seq == 0


def test_seed_demo_keeps_changed_passwords_and_existing_messages(db, alice):
    alice.set_password("changed-by-alice")
    alice.save()
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    lobby = Room.objects.get(slug="lobby")
    message_create(room=lobby, author=alice, body="real conversation", rate_limit=False)
    Message.objects.filter(room=lobby).exclude(body="real conversation").delete()
    call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    alice.refresh_from_db()
    assert alice.check_password("changed-by-alice")
    assert list(Message.objects.filter(room=lobby).values_list("body", flat=True)) == ["real conversation"]


def test_seed_demo_refuses_production_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": "x" * 50,
        "DJANGO_ALLOWED_HOSTS": "example.com",
        "DATABASE_URL": "sqlite:////nonexistent/never-touched.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "seed_demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "refuses to run with config.settings.production" in result.stderr


def test_seed_demo_refuses_when_settings_say_production(db, settings):
    from django.core.management.base import CommandError

    settings.SETTINGS_MODULE = "config.settings.production"
    with pytest.raises(CommandError, match="production"):
        call_command("seed_demo")
    assert not User.objects.exists()
    assert settings.SETTINGS_MODULE == "config.settings.production"
