"""Demo data for `make run`: alice, bob, carol, #lobby, #random and the private #staff.

Idempotent: what exists is left alone (passwords are set only when a user
is created), so running it on every start changes nothing the second time.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User
from messaging.services import message_create
from rooms.models import Room
from rooms.services import room_create, room_join

PASSWORD = "chatchat123"
PRODUCTION_SETTINGS = "config.settings.production"

USERS = [
    # username, display name, staff and superuser
    ("alice", "Alice Liddell", True),
    ("bob", "Bob Builder", False),
    ("carol", "Carol Danvers", False),
]
ROOMS = [
    # slug, name, description, private
    ("lobby", "Lobby", "Say hello. Everyone starts here.", False),
    ("random", "Random", "Off-topic chatter, links and cat pictures.", False),
    ("staff", "Staff", "Private room for the staff.", True),
]
WELCOME = [
    "Welcome to the lobby!",
    "Messages arrive live over a websocket: open this room in a second window to see it.",
    "Press Enter to send and Shift+Enter for a new line. Your own messages can be edited or deleted.",
]


class Command(BaseCommand):
    help = "Create the demo users and rooms (never under production settings)."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.SETTINGS_MODULE == PRODUCTION_SETTINGS:
            raise CommandError(
                f"seed_demo refuses to run with {PRODUCTION_SETTINGS}: it creates users with a published password."
            )
        with transaction.atomic():
            users = {username: self._user(username, name, staff) for username, name, staff in USERS}
            alice = users["alice"]
            rooms = {
                slug: self._room(alice, slug, name, description, private) for slug, name, description, private in ROOMS
            }
            for room in (rooms["lobby"], rooms["random"]):
                for user in users.values():
                    room_join(room=room, user=user)
            lobby = rooms["lobby"]
            lobby.refresh_from_db()
            if lobby.last_seq == 0:
                for index, body in enumerate(WELCOME):
                    message_create(
                        room=lobby, author=alice, body=body, client_id=f"seed-welcome-{index}", rate_limit=False
                    )
                self.stdout.write("Posted the welcome messages in #lobby.")
        self.stdout.write(self.style.SUCCESS(f"Demo data ready: log in as alice, bob or carol with {PASSWORD}."))

    def _user(self, username: str, display_name: str, staff: bool) -> User:
        user = User.objects.filter(username=username).first()
        if user is not None:
            return user
        user = User(username=username, display_name=display_name, is_staff=staff, is_superuser=staff)
        user.set_password(PASSWORD)
        user.save()
        self.stdout.write(f"Created user {username}.")
        return user

    def _room(self, owner: User, slug: str, name: str, description: str, private: bool) -> Room:
        room = Room.objects.filter(slug=slug).first()
        if room is not None:
            return room
        room = room_create(creator=owner, slug=slug, name=name, description=description, is_private=private)
        self.stdout.write(f"Created room #{slug}.")
        return room
