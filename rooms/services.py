"""Writes about rooms: creation, membership, roles, bans, locks, read markers.

Each function owns its transaction and sends its realtime events on commit.
"""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import User
from common.errors import BadRequest, Forbidden, NotFound
from common.realtime import group_send_sync

from .models import Ban, Membership, Room, slug_validator
from .selectors import room_check_moderator, user_is_banned
from .serializers import room_to_dict


def room_create(*, creator: User, slug: str, name: str, description: str = "", is_private: bool = False) -> Room:
    """Create a room; its creator becomes the owner. A taken slug is BadRequest."""
    try:
        slug_validator(slug)
    except ValidationError as exc:
        raise BadRequest(f"Invalid slug: {exc.messages[0]}") from exc
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise BadRequest("A room name of 1-100 characters is required.")
    if len(description) > 2000:
        raise BadRequest("The description is limited to 2000 characters.")
    try:
        with transaction.atomic():
            room = Room.objects.create(
                slug=slug, name=name, description=description, is_private=is_private, created_by=creator
            )
            Membership.objects.create(room=room, user=creator, role=Membership.Role.OWNER)
    except IntegrityError as exc:
        raise BadRequest(f"The slug {slug!r} is taken.") from exc
    return room


def room_join(*, room: Room, user: User) -> Membership:
    """Make the user a member of a public room (no-op if already one).

    The new member's read marker starts at the room's last seq, so joining
    does not flood them with unread messages.
    """
    with transaction.atomic():
        existing = Membership.objects.filter(room=room, user=user).first()
        if user_is_banned(room=room, user=user):
            raise Forbidden("You are banned from this room.")
        if existing is not None:
            return existing
        if room.is_private:
            raise NotFound("No such room.")
        current = Room.objects.get(pk=room.pk)
        membership, _ = Membership.objects.get_or_create(
            room=room, user=user, defaults={"last_read_seq": current.last_seq}
        )
        return membership


def room_leave(*, room: Room, user: User) -> None:
    """Leave a room. The owner cannot leave; they hand the room over first."""
    with transaction.atomic():
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            if room.is_private:
                raise NotFound("No such room.")
            return
        if membership.role == Membership.Role.OWNER:
            raise Forbidden("The owner cannot leave the room.")
        membership.delete()
        # user_id: every process's hub hears many users' groups on one channel.
        event = {"type": "user.left", "user_id": user.pk, "slug": room.slug}
        group = user.group_name
        transaction.on_commit(lambda: group_send_sync(group, event))


def room_update(
    *,
    room: Room,
    actor: User,
    is_locked: bool | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Room:
    """Owner or moderator changes the room; every socket in it gets `room_updated`."""
    room_check_moderator(room=room, user=actor)
    with transaction.atomic():
        locked = Room.objects.select_for_update().get(pk=room.pk)
        before = (locked.is_locked, locked.name, locked.description)
        if is_locked is not None:
            locked.is_locked = is_locked
        if name is not None:
            name = name.strip()
            if not name or len(name) > 100:
                raise BadRequest("A room name of 1-100 characters is required.")
            locked.name = name
        if description is not None:
            if len(description) > 2000:
                raise BadRequest("The description is limited to 2000 characters.")
            locked.description = description
        locked.save(update_fields=["is_locked", "name", "description"])
        # A repeated PATCH is not news to the room's sockets.
        if (locked.is_locked, locked.name, locked.description) != before:
            room_broadcast_updated(room=locked)
    return locked


def room_broadcast_updated(*, room: Room) -> None:
    """Queue `room_updated` for every socket in the room once the transaction commits."""
    event = {"type": "chat.room_updated", "room": room_to_dict(room)}
    group = room.group_name
    transaction.on_commit(lambda: group_send_sync(group, event))


def membership_add(*, room: Room, actor: User, user: User) -> Membership:
    """Owner or moderator adds a member (the way into a private room)."""
    room_check_moderator(room=room, user=actor)
    if user_is_banned(room=room, user=user):
        raise BadRequest("That user is banned from this room; lift the ban first.")
    with transaction.atomic():
        current = Room.objects.get(pk=room.pk)
        membership, _ = Membership.objects.get_or_create(
            room=room, user=user, defaults={"last_read_seq": current.last_seq}
        )
    return membership


def membership_set_role(*, room: Room, actor: User, user: User, role: str) -> Membership:
    """The owner makes a member a moderator, or a moderator a member again."""
    if role not in (Membership.Role.MODERATOR, Membership.Role.MEMBER):
        raise BadRequest("role must be 'moderator' or 'member'.")
    with transaction.atomic():
        actor_membership = Membership.objects.filter(room=room, user=actor).first()
        if not actor.is_staff and (actor_membership is None or actor_membership.role != Membership.Role.OWNER):
            if room.is_private and actor_membership is None:
                raise NotFound("No such room.")
            raise Forbidden("Only the room's owner may change roles.")
        membership = Membership.objects.select_for_update().filter(room=room, user=user).first()
        if membership is None:
            raise NotFound("That user is not a member of this room.")
        if membership.role == Membership.Role.OWNER:
            raise BadRequest("The owner's role cannot be changed.")
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def room_ban(*, room: Room, actor: User, user: User) -> Ban:
    """Ban a user from the room, effective at once on every socket they have open."""
    actor_membership = room_check_moderator(room=room, user=actor)
    if user.pk == actor.pk:
        raise BadRequest("You cannot ban yourself.")
    with transaction.atomic():
        target = Membership.objects.filter(room=room, user=user).first()
        if target is not None and target.role == Membership.Role.OWNER:
            raise Forbidden("The owner cannot be banned.")
        if (
            target is not None
            and target.role == Membership.Role.MODERATOR
            and not actor.is_staff
            and (actor_membership is None or actor_membership.role != Membership.Role.OWNER)
        ):
            raise Forbidden("Only the owner may ban a moderator.")
        ban, _ = Ban.objects.get_or_create(room=room, user=user, defaults={"banned_by": actor})
        Membership.objects.filter(room=room, user=user).delete()
        event = {"type": "user.banned", "user_id": user.pk, "room_id": room.pk, "slug": room.slug}
        group = user.group_name
        transaction.on_commit(lambda: group_send_sync(group, event))
    return ban


def room_unban(*, room: Room, actor: User, user: User) -> None:
    """Lift a ban; the user may join (public) or be added (private) again."""
    room_check_moderator(room=room, user=actor)
    deleted, _ = Ban.objects.filter(room=room, user=user).delete()
    if not deleted:
        raise NotFound("That user is not banned here.")


def read_marker_set(*, room: Room, user: User, seq: int) -> int:
    """Move the user's read marker forward to min(seq, last_seq), never back. Returns the marker."""
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise BadRequest("seq must be a non-negative integer.")
    with transaction.atomic():
        last_seq = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).get()
        target = min(seq, last_seq)
        Membership.objects.filter(room=room, user=user, last_read_seq__lt=target).update(last_read_seq=target)
        marker = Membership.objects.filter(room=room, user=user).values_list("last_read_seq", flat=True).first()
    if marker is None:
        raise Forbidden("Join the room first.")
    return marker
