"""Attachments in the admin: listed on their message's page, and a list of every upload.

Staff look at a file through the admin's own download view (any room, no
membership needed, the same safe headers as the API) and delete it with the
admin's delete, which goes through `messaging.attachments.attachment_delete`
so the stored file goes too. Nothing about an attachment is edited by hand.
"""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponseNotFound
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.urls.resolvers import URLPattern
from django.utils.html import format_html

from common.errors import NotFound

from .attachments import attachment_delete, attachment_response
from .models import Attachment

FIELDS = (
    "name",
    "room",
    "uploader",
    "message",
    "position",
    "size",
    "content_type",
    "is_image",
    "width",
    "height",
    "file",
    "created_at",
)


def download_url(attachment: Attachment) -> str:
    return reverse("admin:messaging_attachment_download", args=[attachment.pk])


class UsedFilter(admin.SimpleListFilter):
    title = "used in a message"
    parameter_name = "used"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Used"), ("no", "Unused")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Attachment]) -> QuerySet[Attachment]:
        if self.value() == "yes":
            return queryset.filter(message__isnull=False)
        if self.value() == "no":
            return queryset.filter(message__isnull=True)
        return queryset


class AttachmentInline(admin.TabularInline):
    """A message's files, in the sender's order, each linked to its own page (where staff delete it)."""

    model = Attachment
    fk_name = "message"
    fields = ("file_link", "human_size", "content_type", "is_image", "admin_link")
    readonly_fields = fields
    ordering = ("position",)
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="file")
    def file_link(self, obj: Attachment) -> str:
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', download_url(obj), obj.name)

    @admin.display(description="size")
    def human_size(self, obj: Attachment) -> str:
        return filesizeformat(obj.size)

    @admin.display(description="")
    def admin_link(self, obj: Attachment) -> str:
        url = reverse("admin:messaging_attachment_change", args=[obj.pk])
        return format_html('<a href="{}">details / delete</a>', url)


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ["name", "room", "uploader", "message_link", "human_size", "content_type", "is_image", "created_at"]
    list_filter = [UsedFilter, "is_image", "content_type", "created_at"]
    list_select_related = ["room", "uploader", "message"]
    search_fields = ["name", "uploader__username"]
    date_hierarchy = "created_at"
    fields = (*FIELDS, "preview")
    readonly_fields = (*FIELDS, "preview")
    show_full_result_count = False
    list_per_page = 50

    @admin.display(description="message")
    def message_link(self, obj: Attachment) -> str:
        if obj.message_id is None:
            return "- (unused)"
        url = reverse("admin:messaging_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message)

    @admin.display(description="size", ordering="size")
    def human_size(self, obj: Attachment) -> str:
        return filesizeformat(obj.size)

    @admin.display(description="file")
    def preview(self, obj: Attachment) -> str:
        url = download_url(obj)
        if obj.is_image:
            # A height attribute, not a style: the admin's pages may run under a CSP without inline styles.
            return format_html(
                '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="{}" height="200"></a>',
                url,
                url,
                obj.name,
            )
        return format_html('<a href="{}">Download {}</a>', url, obj.name)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Attachment | None = None) -> bool:
        # View-only: the one thing staff do to a file is delete it.
        return False

    def delete_model(self, request: HttpRequest, obj: Attachment) -> None:
        attachment_delete(attachment=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Attachment]) -> None:
        for attachment in queryset:
            attachment_delete(attachment=attachment)

    def get_urls(self) -> list[URLPattern]:
        download = path(
            "<int:attachment_id>/download/",
            self.admin_site.admin_view(self.download_view),
            name="messaging_attachment_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, attachment_id: int) -> FileResponse | HttpResponseNotFound:
        """The file for staff, from any room, served exactly as the API serves it."""
        attachment = Attachment.objects.filter(pk=attachment_id).first()
        if attachment is None or not self.has_view_permission(request, attachment):
            return HttpResponseNotFound("No such file.")
        try:
            return attachment_response(attachment)
        except NotFound:
            return HttpResponseNotFound("The stored file is missing.")
