"""The audit trail in the admin: staff read all of it; nobody adds, changes or deletes an entry."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "actor", "action", "target_link", "detail", "room", "path"]
    list_filter = [
        "action",
        "path",
        ("room", admin.RelatedOnlyFieldListFilter),
        ("actor", admin.RelatedOnlyFieldListFilter),
    ]
    list_select_related = ["actor", "room"]
    search_fields = ["target", "actor__username", "detail"]
    date_hierarchy = "at"
    fields = ("at", "actor", "action", "room", "target", "target_user", "message_link", "detail", "path")
    readonly_fields = fields
    show_full_result_count = False
    list_per_page = 100

    @admin.display(description="target", ordering="target")
    def target_link(self, obj: AuditEntry) -> str:
        url = self._message_url(obj)
        return format_html('<a href="{}">{}</a>', url, obj.target) if url else obj.target

    @admin.display(description="message")
    def message_link(self, obj: AuditEntry) -> str:
        url = self._message_url(obj)
        return format_html('<a href="{}">#{}</a>', url, obj.message_id) if url else "-"

    @staticmethod
    def _message_url(obj: AuditEntry) -> str | None:
        if obj.message_id is None:
            return None
        try:
            return reverse("admin:messaging_message_change", args=[obj.message_id])
        except NoReverseMatch:
            return None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
