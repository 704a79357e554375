"""Rooms in the admin. Changes that sockets must hear of go out as `room_updated`.

Staff may lock any room, including private rooms they are not in, so the
lock actions go through `rooms_set_locked` (which broadcasts the same event
`room_update` sends) rather than `room_update`, whose access check is a
member's view of the room.

Direct messages are listed here as rooms of kind "dm" (staff need them to act
on reports), but what makes them DMs stays fixed: their name, privacy, lock,
members and bans are read-only, and no owner is ever added to one.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from common.errors import ChatError

from .models import Ban, Membership, Room
from .services import (
    memberships_record,
    room_ban,
    room_broadcast_updated,
    room_lock_record,
    room_unban,
    rooms_set_locked,
)

# Fields whose change every socket in the room is told about.
BROADCAST_FIELDS = {"name", "description", "is_locked", "is_private"}
# What a DM's change form may not touch: a DM has no owner, name or lock of its own.
DM_READONLY_FIELDS = ["name", "description", "is_private", "is_locked", "created_by", "dm_key"]


def _is_dm(obj: Any) -> bool:
    return isinstance(obj, Room) and obj.is_dm


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at", "last_read_seq"]
    fields = ["user", "role", "joined_at", "last_read_seq"]

    # A DM's members are its participants, fixed when it was opened.
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_dm(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_dm(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return not _is_dm(obj) and super().has_delete_permission(request, obj)


class BanInline(admin.TabularInline):
    """Bans are added and lifted through rooms.services, so they take effect on live sockets."""

    model = Ban
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["banned_by", "created_at"]
    fields = ["user", "banned_by", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An existing ban is lifted (deleted) and re-added, never re-pointed at another user.
        return False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Nobody bans in a DM (rooms.services refuses it too); no empty form to fill in vain.
        return not _is_dm(obj) and super().has_add_permission(request, obj)


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "kind", "is_private", "is_locked", "last_seq", "created_by", "created_at"]
    list_filter = ["kind", "is_private", "is_locked"]
    # A DM's stored name lists all its participants, so searching names finds DMs by person.
    search_fields = ["slug", "name"]
    list_select_related = ["created_by"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["kind", "last_seq", "created_at"]
    inlines = [MembershipInline, BanInline]
    actions = ["lock_rooms", "unlock_rooms"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        # The slug names the room's channel-layer group and its URLs.
        fields = list(super().get_readonly_fields(request, obj))
        if obj is None:
            return fields
        fields.append("slug")
        if obj.is_dm:
            fields += [f for f in DM_READONLY_FIELDS if f not in fields]
        return fields

    def _set_locked(self, request: HttpRequest, queryset: QuerySet[Room], locked: bool) -> None:
        # Not the changelist's queryset itself: its outer join to created_by cannot be locked.
        pks = list(queryset.values_list("pk", flat=True))
        count = rooms_set_locked(actor=request.user, room_ids=pks, locked=locked)  # type: ignore[arg-type]
        verb = "Locked" if locked else "Unlocked"
        self.message_user(request, f"{verb} {count} room(s).", messages.SUCCESS)
        dms = queryset.filter(kind=Room.Kind.DM).count()
        if dms:
            self.message_user(request, f"Skipped {dms} direct message(s): a DM cannot be locked.", messages.WARNING)

    @admin.action(description="Lock selected rooms (refuse new messages)", permissions=["change"])
    def lock_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        self._set_locked(request, queryset, True)

    @admin.action(description="Unlock selected rooms", permissions=["change"])
    def unlock_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        self._set_locked(request, queryset, False)

    def save_model(self, request: HttpRequest, obj: Room, form: ModelForm, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        if change and BROADCAST_FIELDS & set(form.changed_data):
            room_broadcast_updated(room=obj)
        if change and "is_locked" in form.changed_data:
            # In the admin's transaction for this form, like the save itself.
            room_lock_record(room=obj, actor=request.user)  # type: ignore[arg-type]

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        room = form.instance
        # Every room has an owner; a room made here belongs to its creator
        # unless the memberships inline named one. A DM has none, ever.
        if room.is_dm:
            return
        if room.created_by_id and not room.memberships.filter(role=Membership.Role.OWNER).exists():
            Membership.objects.update_or_create(
                room=room,
                user_id=room.created_by_id,
                defaults={"role": Membership.Role.OWNER, "last_read_seq": room.last_seq},
            )

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool) -> None:
        if formset.model is Membership:
            self._save_memberships(request, form, formset, change)
            return
        if formset.model is not Ban:
            super().save_formset(request, form, formset, change)
            return
        room = form.instance
        new_bans = formset.save(commit=False)
        for ban in formset.deleted_objects:
            try:
                room_unban(room=room, actor=request.user, user=ban.user)  # type: ignore[arg-type]
            except ChatError as exc:
                self.message_user(request, f"Could not lift the ban on {ban.user}: {exc.detail}", messages.ERROR)
        for ban in new_bans:
            try:
                room_ban(room=room, actor=request.user, user=ban.user)  # type: ignore[arg-type]
            except ChatError as exc:
                self.message_user(request, f"Could not ban {ban.user}: {exc.detail}", messages.ERROR)

    def _save_memberships(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        """Save the members inline, and audit what it added, re-roled or removed (same transaction).

        The owner the admin gives a new room (save_related) is how a room is
        made, not a moderation action, so only changes to an existing room count.
        """
        before = {
            f.instance.pk: f.initial.get("role")
            for f in formset.initial_forms
            if f.instance.pk is not None and "role" in f.changed_data
        }
        super().save_formset(request, form, formset, change)
        if not change:
            return
        memberships_record(
            room=form.instance,
            actor=request.user,  # type: ignore[arg-type]
            added=formset.new_objects,
            role_changes=[(m, str(before[m.pk])) for m, _fields in formset.changed_objects if m.pk in before],
            removed=formset.deleted_objects,
        )
