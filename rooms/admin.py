"""Rooms in the admin. Changes that sockets must hear of go out as `room_updated`.

Staff may lock any room, including private rooms they are not in, so the
lock actions write the flag here and broadcast with `room_broadcast_updated`
(the same event `room_update` sends) rather than through `room_update`,
whose access check is a member's view of the room.
"""

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from common.errors import ChatError

from .models import Ban, Membership, Room
from .services import room_ban, room_broadcast_updated, room_unban

# Fields whose change every socket in the room is told about.
BROADCAST_FIELDS = {"name", "description", "is_locked", "is_private"}


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["joined_at", "last_read_seq"]
    fields = ["user", "role", "joined_at", "last_read_seq"]


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


def _set_locked(request: HttpRequest, queryset: QuerySet[Room], locked: bool) -> int:
    changed = 0
    with transaction.atomic():
        # Not the changelist's queryset: its outer join to created_by cannot be locked.
        pks = list(queryset.values_list("pk", flat=True))
        for room in Room.objects.select_for_update().filter(pk__in=pks, is_locked=not locked):
            room.is_locked = locked
            room.save(update_fields=["is_locked"])
            room_broadcast_updated(room=room)
            changed += 1
    return changed


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "is_private", "is_locked", "last_seq", "created_by", "created_at"]
    list_filter = ["is_private", "is_locked"]
    search_fields = ["slug", "name"]
    list_select_related = ["created_by"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["last_seq", "created_at"]
    inlines = [MembershipInline, BanInline]
    actions = ["lock_rooms", "unlock_rooms"]
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Room | None = None) -> list[str]:
        # The slug names the room's channel-layer group and its URLs.
        fields = list(super().get_readonly_fields(request, obj))
        return [*fields, "slug"] if obj is not None else fields

    @admin.action(description="Lock selected rooms (refuse new messages)", permissions=["change"])
    def lock_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        count = _set_locked(request, queryset, True)
        self.message_user(request, f"Locked {count} room(s).", messages.SUCCESS)

    @admin.action(description="Unlock selected rooms", permissions=["change"])
    def unlock_rooms(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        count = _set_locked(request, queryset, False)
        self.message_user(request, f"Unlocked {count} room(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Room, form: ModelForm, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        if change and BROADCAST_FIELDS & set(form.changed_data):
            room_broadcast_updated(room=obj)

    def save_related(self, request: HttpRequest, form: ModelForm, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        room = form.instance
        # Every room has an owner; a room made here belongs to its creator
        # unless the memberships inline named one.
        if room.created_by_id and not room.memberships.filter(role=Membership.Role.OWNER).exists():
            Membership.objects.update_or_create(
                room=room,
                user_id=room.created_by_id,
                defaults={"role": Membership.Role.OWNER, "last_read_seq": room.last_seq},
            )

    def save_formset(self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool) -> None:
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
