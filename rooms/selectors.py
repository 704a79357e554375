"""Reads about rooms and who may do what in them."""

import re

from django.db.models import Exists, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest

from accounts.models import User
from common.errors import Forbidden, NotFound

from .models import SLUG_RE, Ban, Membership, Room

_slug_re = re.compile(SLUG_RE)


def rooms_visible_to(*, user: User) -> QuerySet[Room]:
    """Public rooms and the private rooms (DMs included) the user belongs to, with per-user fields.

    Annotates `is_member` and `unread_count` (last_seq minus the read marker;
    0 for rooms the user has not joined), and gives each DM its other
    participants as `dm_others`, from which `Room.title` names it for this user.
    """
    mine = Membership.objects.filter(room=OuterRef("pk"), user=user)
    return (
        Room.objects.filter(Q(is_private=False) | Q(memberships__user=user))
        .distinct()
        .annotate(
            is_member=Exists(mine),
            read_seq=mine.values("last_read_seq")[:1],
        )
        .annotate(
            unread_count=Greatest(
                Coalesce(F("last_seq") - F("read_seq"), Value(0), output_field=IntegerField()),
                Value(0),
                output_field=IntegerField(),
            )
        )
        .prefetch_related(dm_others_prefetch(user=user))
        .order_by("slug")
    )


def dm_others_prefetch(*, user: User) -> Prefetch:
    """The other participants of each DM among the fetched rooms, as `dm_others`.

    One query for the whole list, whatever its length; it reads only DM
    memberships (a few per DM), never the member lists of public rooms.
    """
    return Prefetch(
        "memberships",
        queryset=Membership.objects.filter(room__kind=Room.Kind.DM).exclude(user=user).select_related("user"),
        to_attr="dm_others",
    )


def room_get_visible(*, slug: str, user: User) -> Room:
    """The room if the user may see it; NotFound for unknown or foreign private rooms."""
    room = rooms_visible_to(user=user).filter(slug=slug).first()
    if room is None:
        raise NotFound("No such room.")
    return room


def dm_get_by_key(*, key: str) -> Room | None:
    """The DM of exactly the participants whose sorted ids make `key`, if it exists."""
    return Room.objects.filter(dm_key=key).first()


def membership_get(*, room: Room, user: User) -> Membership | None:
    return Membership.objects.filter(room=room, user=user).first()


def user_is_banned(*, room: Room, user: User) -> bool:
    return Ban.objects.filter(room=room, user=user).exists()


def room_check_readable(*, room: Room, user: User) -> Membership | None:
    """Raise unless the user may read the room's messages; returns their membership.

    Private rooms are invisible (NotFound) to non-members; a banned user is
    refused (Forbidden) in any room.
    """
    membership = membership_get(room=room, user=user)
    if room.is_private and membership is None:
        raise NotFound("No such room.")
    if user_is_banned(room=room, user=user):
        raise Forbidden("You are banned from this room.")
    return membership


def room_check_moderator(*, room: Room, user: User) -> Membership | None:
    """Raise Forbidden unless the user is the room's owner or a moderator (or staff)."""
    if user.is_staff:
        # Staff moderate every room from the admin, member or not.
        return membership_get(room=room, user=user)
    membership = room_check_readable(room=room, user=user)
    if membership is None or not membership.can_moderate:
        raise Forbidden("Only the room's owner or moderators may do that.")
    return membership


def room_members(*, room: Room) -> QuerySet[Membership]:
    return room.memberships.select_related("user").order_by("joined_at", "pk")


def room_get(*, slug: str) -> Room:
    """The room with this slug, whoever asks; NotFound if there is none."""
    # A string that cannot be a slug (e.g. one with NUL, which PostgreSQL
    # refuses as a parameter) names no room.
    room = Room.objects.filter(slug=slug).first() if _slug_re.match(slug) else None
    if room is None:
        raise NotFound("No such room.")
    return room


def rooms_readable_by(*, user: User) -> QuerySet[Room]:
    """Rooms whose messages the user may read: public ones they are not banned from, and their private ones.

    A DM is private, so its participants (and no one else) read it here too.
    """
    member = Membership.objects.filter(room=OuterRef("pk"), user=user)
    banned = Ban.objects.filter(room=OuterRef("pk"), user=user)
    return Room.objects.filter(Q(is_private=False) | Exists(member)).exclude(Exists(banned))
