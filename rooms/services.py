"""Writes about rooms: creation, direct messages, membership, roles, bans, locks, read markers.

Each function owns its transaction and sends its realtime events on commit.

A direct message (`Room.Kind.DM`) is a private room whose members are fixed
by its participants: it has no owner or moderators, so every owner power
(adding members, locking or editing, banning, role changes) is refused here,
whichever path (websocket, REST, admin) asks.
"""

import secrets
from collections.abc import Iterable, Sequence

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from accounts.models import User
from audit.services import Action, audit_record, user_target
from common.errors import BadRequest, Forbidden, NotFound, Unavailable
from common.realtime import group_send_sync

from .models import Ban, Membership, Room, slug_validator
from .selectors import dm_get_by_key, room_check_moderator, room_check_readable, user_is_banned
from .serializers import room_to_dict

# Other people in one DM, besides the one who opens it (the contract's "1 to 8").
DM_MAX_OTHERS = 8
# A request naming more entries than this is refused before any lookup, duplicates or not.
DM_MAX_USERNAMES = 100
# Attempts at a free random slug; 48 random bits make a second attempt already unlikely.
DM_SLUG_ATTEMPTS = 5


def _check_owner_power(*, room: Room, actor: User, action: str) -> Membership | None:
    """Raise unless the actor may use an owner's or moderator's power in the room.

    In a DM nobody may: outsiders still learn nothing (NotFound, as for any
    private room), participants and staff are told why (Forbidden).
    """
    if room.is_dm:
        if not actor.is_staff:
            room_check_readable(room=room, user=actor)
        raise Forbidden(f"A direct message has no owner or moderators: {action} is not possible in it.")
    return room_check_moderator(room=room, user=actor)


def dm_key_for(user_ids: Iterable[int]) -> str:
    """The `dm_key` of a set of participants: their distinct ids, sorted, comma-separated."""
    return ",".join(str(pk) for pk in sorted(set(user_ids)))


def _dm_stored_name(participants: Sequence[User]) -> str:
    # What the admin and `room_updated` show; each participant sees only the others' names.
    name = ", ".join(sorted((u.get_display_name() for u in participants), key=str.casefold))
    return name if len(name) <= 100 else name[:99] + "…"


def dm_open(*, actor: User, usernames: Sequence[str]) -> tuple[Room, bool]:
    """Open the direct-message room of `actor` and the named users; returns (room, created).

    `usernames` names 1 to 8 other active users (duplicates and the actor's own
    name are ignored); anything else is BadRequest, an unknown or inactive name
    included, as for every username given in a request body. Exactly the same
    set of people always gets the same room: the first call creates it (all
    participants members with role "member", read markers at 0), later ones,
    by any participant and in any order, return it. Safe when several open it
    at once: the unique `dm_key` lets one insert win, the others return its room.
    """
    if len(usernames) > DM_MAX_USERNAMES:
        raise BadRequest(f"A direct message has at most {DM_MAX_OTHERS} other people.")
    if any(not isinstance(name, str) for name in usernames):
        raise BadRequest("usernames must be strings.")
    others = [name for name in dict.fromkeys(usernames) if name != actor.username]
    if not others:
        raise BadRequest("Name at least one other person: a direct message with yourself alone is not possible.")
    if len(others) > DM_MAX_OTHERS:
        raise BadRequest(f"A direct message has at most {DM_MAX_OTHERS} other people (got {len(others)}).")
    # PostgreSQL refuses NUL in text parameters; no username contains one.
    found = {
        user.username: user
        for user in User.objects.filter(username__in=[n for n in others if "\x00" not in n], is_active=True)
    }
    missing = [name for name in others if name not in found]
    if missing:
        raise BadRequest(f"No such user: {missing[0]!r}.")
    participants = [actor, *(found[name] for name in others)]
    key = dm_key_for(user.pk for user in participants)

    for _ in range(DM_SLUG_ATTEMPTS):
        room = dm_get_by_key(key=key)
        if room is not None:
            return room, False
        try:
            with transaction.atomic():
                room = Room.objects.create(
                    kind=Room.Kind.DM,
                    dm_key=key,
                    slug=f"dm-{secrets.token_hex(6)}",
                    name=_dm_stored_name(participants),
                    is_private=True,
                    created_by=actor,
                )
                Membership.objects.bulk_create(
                    [Membership(room=room, user=user, role=Membership.Role.MEMBER) for user in participants]
                )
        except IntegrityError:
            # Another participant's request created this DM first (the dm_key is
            # taken: the next lookup finds its room), or the random slug was taken.
            continue
        return room, True
    # Not reached in practice (see DM_SLUG_ATTEMPTS); a retry draws new slugs.
    raise Unavailable("Could not open the direct message; try again.")


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
    """Leave a room. The owner cannot leave; they hand the room over first.

    Nobody leaves a DM: its members are its participants, and the same people
    opening it again must find the same room with the same history.
    """
    with transaction.atomic():
        membership = Membership.objects.filter(room=room, user=user).first()
        if membership is None:
            if room.is_private:
                raise NotFound("No such room.")
            return
        if room.is_dm:
            raise Forbidden("You cannot leave a direct message.")
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
    """Owner or moderator changes the room; every socket in it gets `room_updated`. Never a DM."""
    _check_owner_power(room=room, actor=actor, action="changing or locking the room")
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
        if locked.is_locked != before[0]:
            _audit_lock(room=locked, actor=actor)
    return locked


def _audit_lock(*, room: Room, actor: User) -> None:
    action = Action.ROOM_LOCKED if room.is_locked else Action.ROOM_UNLOCKED
    audit_record(actor=actor, action=action, target=f"#{room.slug}", room_id=room.pk)


def room_broadcast_updated(*, room: Room) -> None:
    """Queue `room_updated` for every socket in the room once the transaction commits."""
    event = {"type": "chat.room_updated", "room": room_to_dict(room)}
    group = room.group_name
    transaction.on_commit(lambda: group_send_sync(group, event))


def membership_add(*, room: Room, actor: User, user: User) -> Membership:
    """Owner or moderator adds a member (the way into a private room). Never to a DM."""
    _check_owner_power(room=room, actor=actor, action="adding members")
    if user_is_banned(room=room, user=user):
        raise BadRequest("That user is banned from this room; lift the ban first.")
    with transaction.atomic():
        current = Room.objects.get(pk=room.pk)
        membership, created = Membership.objects.get_or_create(
            room=room, user=user, defaults={"last_read_seq": current.last_seq}
        )
        if created:
            audit_record(
                actor=actor,
                action=Action.MEMBER_ADDED,
                target=user_target(user),
                room_id=room.pk,
                target_user_id=user.pk,
            )
    return membership


def membership_set_role(*, room: Room, actor: User, user: User, role: str) -> Membership:
    """The owner makes a member a moderator, or a moderator a member again. A DM has no roles to change."""
    if room.is_dm:
        _check_owner_power(room=room, actor=actor, action="changing roles")
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
        previous = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        if previous != role:
            audit_record(
                actor=actor,
                action=Action.ROLE_CHANGED,
                target=user_target(user),
                room_id=room.pk,
                target_user_id=user.pk,
                detail=f"{previous} → {role}",
            )
    return membership


def room_lock_record(*, room: Room, actor: User) -> None:
    """Audit a lock or unlock written elsewhere (the admin's change form), inside that write's transaction."""
    _audit_lock(room=room, actor=actor)


def memberships_record(
    *,
    room: Room,
    actor: User,
    added: Sequence[Membership] = (),
    role_changes: Sequence[tuple[Membership, str]] = (),
    removed: Sequence[Membership] = (),
) -> None:
    """Audit membership changes written elsewhere (the admin's members inline), inside that write's transaction.

    `role_changes` pairs each changed membership with its role before.
    """
    for membership in added:
        audit_record(
            actor=actor,
            action=Action.MEMBER_ADDED,
            target=user_target(membership.user),
            room_id=room.pk,
            target_user_id=membership.user_id,
            detail="" if membership.role == Membership.Role.MEMBER else f"as {membership.role}",
        )
    for membership, previous in role_changes:
        if previous != membership.role:
            audit_record(
                actor=actor,
                action=Action.ROLE_CHANGED,
                target=user_target(membership.user),
                room_id=room.pk,
                target_user_id=membership.user_id,
                detail=f"{previous} → {membership.role}",
            )
    for membership in removed:
        audit_record(
            actor=actor,
            action=Action.MEMBER_REMOVED,
            target=user_target(membership.user),
            room_id=room.pk,
            target_user_id=membership.user_id,
        )


def room_ban(*, room: Room, actor: User, user: User) -> Ban:
    """Ban a user from the room, effective at once on every socket they have open. Not in a DM."""
    actor_membership = _check_owner_power(room=room, actor=actor, action="banning")
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
        ban, created = Ban.objects.get_or_create(room=room, user=user, defaults={"banned_by": actor})
        Membership.objects.filter(room=room, user=user).delete()
        if created:
            audit_record(
                actor=actor,
                action=Action.USER_BANNED,
                target=user_target(user),
                room_id=room.pk,
                target_user_id=user.pk,
            )
        event = {"type": "user.banned", "user_id": user.pk, "room_id": room.pk, "slug": room.slug}
        group = user.group_name
        transaction.on_commit(lambda: group_send_sync(group, event))
    return ban


def room_unban(*, room: Room, actor: User, user: User) -> None:
    """Lift a ban; the user may join (public) or be added (private) again."""
    _check_owner_power(room=room, actor=actor, action="banning")
    with transaction.atomic():
        deleted, _ = Ban.objects.filter(room=room, user=user).delete()
        if not deleted:
            raise NotFound("That user is not banned here.")
        audit_record(
            actor=actor, action=Action.USER_UNBANNED, target=user_target(user), room_id=room.pk, target_user_id=user.pk
        )


def rooms_set_locked(*, actor: User, room_ids: Iterable[int], locked: bool) -> int:
    """Staff lock or unlock many rooms at once (the admin's actions); returns how many changed.

    Staff may lock private rooms they are not in, so this does not go through
    `room_update`, whose access check is a member's view of the room. DMs are
    left as they are: nobody locks a DM. Each changed room's sockets get `room_updated`.
    """
    if not actor.is_staff:
        raise Forbidden("Only staff may lock rooms in bulk.")
    changed = 0
    with transaction.atomic():
        rooms = Room.objects.select_for_update().filter(
            pk__in=list(room_ids), kind=Room.Kind.ROOM, is_locked=not locked
        )
        for room in rooms:
            room.is_locked = locked
            room.save(update_fields=["is_locked"])
            room_broadcast_updated(room=room)
            _audit_lock(room=room, actor=actor)
            changed += 1
    return changed


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
