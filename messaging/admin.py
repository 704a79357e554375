"""Messages in the admin: a moderation view over a table of millions of rows.

Nothing here rewrites history: a message's room, seq, author and body are
read-only, adding is disabled (messages come from `message_create` alone),
and deleting is the same soft delete users do, through
`messaging.services.message_delete`, so open sockets get `message_deleted`.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from common.errors import ChatError, NotFound

from .admin_attachments import AttachmentInline
from .models import Mention, Message, Reaction, Report
from .services import message_delete, message_restore, report_resolve

FIELDS = ("room", "seq", "author", "body", "client_id", "created_at", "edited_at", "deleted_at", "deleted_by")
# Shown on a message's page: what it replies to, and its reactions (read-only, like the rest).
CONVERSATION_FIELDS = ("reply_to_link", "reactions_summary", "mentions_list")


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Deleted"), ("no", "Not deleted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() == "yes":
            return queryset.filter(deleted_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(deleted_at__isnull=True)
        return queryset


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["room", "seq", "author", "excerpt", "created_at", "is_deleted_flag"]
    list_display_links = ["seq"]
    list_filter = [DeletedFilter, "room", "author"]
    list_select_related = ["room", "author"]
    search_fields = ["body"]
    date_hierarchy = "created_at"
    raw_id_fields = ["room", "author", "deleted_by"]
    fields = (*FIELDS, *CONVERSATION_FIELDS)
    readonly_fields = (*FIELDS, *CONVERSATION_FIELDS)
    actions = ["soft_delete_messages", "restore_messages"]
    # Its files, each linked to its own page, where staff delete one (the stored file goes too).
    inlines = [AttachmentInline]
    # Counting millions of rows on every page view is the slow part of a changelist.
    show_full_result_count = False
    list_per_page = 50

    @admin.display(description="body")
    def excerpt(self, obj: Message) -> str:
        return Truncator(obj.body).chars(80)

    @admin.display(description="reply to")
    def reply_to_link(self, obj: Message) -> str:
        original = obj.reply_to
        if original is None:
            return "-"
        url = reverse("admin:messaging_message_change", args=[original.pk])
        text = "(deleted)" if original.deleted_at is not None else Truncator(original.body).chars(80)
        return format_html('<a href="{}">#{} by {}</a>: {}', url, original.seq, original.author, text)

    @admin.display(description="reactions")
    def reactions_summary(self, obj: Message) -> str:
        """Each emoji with its count and who reacted, in order of first use."""
        reactions = Reaction.objects.filter(message=obj).select_related("user").order_by("rank", "id")
        by_emoji: dict[str, list[str]] = {}
        for reaction in reactions:
            by_emoji.setdefault(reaction.emoji, []).append(reaction.user.username)
        if not by_emoji:
            return "-"
        return format_html_join(
            mark_safe("<br>"),
            "{} {}: {}",
            ((emoji, len(users), ", ".join(users)) for emoji, users in by_emoji.items()),
        )

    @admin.display(description="mentions")
    def mentions_list(self, obj: Message) -> str:
        """The users the message mentions, in order of first appearance, linked to their admin page.

        None once deleted: a deleted message's mentions are removed with it.
        """
        mentions = Mention.objects.filter(message=obj).select_related("user").order_by("position")
        if not mentions:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">@{}</a>',
            (
                (reverse("admin:accounts_user_change", args=[mention.user_id]), mention.user.username)
                for mention in mentions
            ),
        )

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def is_deleted_flag(self, obj: Message) -> bool:
        return obj.deleted_at is not None

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        # View-only: moderation is deletion, which has its own permission.
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # Our own action says what it does; it is the same soft delete.
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Soft-delete selected messages", permissions=["delete"])
    def soft_delete_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        count = self._soft_delete(request, queryset)
        self.message_user(request, f"Deleted {count} message(s); open sockets were told.", messages.SUCCESS)

    @admin.action(description="Restore selected deleted messages", permissions=["delete"])
    def restore_messages(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        """Undo soft deletes (messaging.services.message_restore): open sockets get `message_updated`."""
        count = 0
        for message in queryset.filter(deleted_at__isnull=False):
            try:
                message_restore(message=message, actor=request.user)  # type: ignore[arg-type]
            except ChatError as exc:
                self.message_user(request, f"Could not restore {message}: {exc.detail}", messages.ERROR)
            else:
                count += 1
        self.message_user(request, f"Restored {count} message(s); open sockets were told.", messages.SUCCESS)

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        self._soft_delete(request, [obj])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        self._soft_delete(request, queryset)

    def _soft_delete(self, request: HttpRequest, messages_: Any) -> int:
        count = 0
        for message in messages_:
            if message.deleted_at is not None:
                continue
            try:
                message_delete(message=message, actor=request.user)  # type: ignore[arg-type]
            except ChatError as exc:
                self.message_user(request, f"Could not delete {message}: {exc.detail}", messages.ERROR)
            else:
                count += 1
        return count


class OpenFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Report]) -> QuerySet[Report]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Report)
class ReportAdmin(admin.ModelAdmin):
    """The moderators' queue: every room's reports, open ones first, oldest first among them.

    Resolving goes through `messaging.services.report_resolve` (audited, and
    a deletion reaches open sockets as `message_deleted`); nothing else about
    a report can be changed here, and reports are made by readers, not staff.
    """

    list_display = ["id", "is_open_flag", "message_excerpt", "room", "reporter", "reason_excerpt", "created_at"]
    list_display_links = ["id"]
    list_filter = [OpenFilter, "resolution", ("room", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["message__author", "room", "reporter"]
    search_fields = ["reason", "message__body", "reporter__username"]
    date_hierarchy = "created_at"
    fields = (
        "message_link",
        "message_body",
        "room",
        "reporter",
        "reason",
        "created_at",
        "resolved_at",
        "resolved_by",
        "resolution",
    )
    readonly_fields = fields
    actions = ["dismiss_reports", "delete_reported_messages"]
    show_full_result_count = False
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet[Report]:
        # Open first (resolved_at NULL sorts first whatever the database), then the oldest.
        qs = super().get_queryset(request)
        return qs.order_by(F("resolved_at").desc(nulls_first=True), "created_at", "pk")

    @admin.display(description="open", boolean=True, ordering="resolved_at")
    def is_open_flag(self, obj: Report) -> bool:
        return obj.resolved_at is None

    @admin.display(description="message")
    def message_excerpt(self, obj: Report) -> str:
        message = obj.message
        url = reverse("admin:messaging_message_change", args=[message.pk])
        text = Truncator(message.body).chars(80)
        if message.deleted_at is not None:
            text = f"(deleted) {text}"
        return format_html('<a href="{}">#{} by {}</a>: {}', url, message.seq, message.author, text)

    @admin.display(description="message")
    def message_link(self, obj: Report) -> str:
        return self.message_excerpt(obj)

    @admin.display(description="body")
    def message_body(self, obj: Report) -> str:
        return obj.message.body

    @admin.display(description="reason")
    def reason_excerpt(self, obj: Report) -> str:
        return Truncator(obj.reason).chars(80)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Report | None = None) -> bool:
        # Resolving (the actions below) is the only change there is.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Report | None = None) -> bool:
        return False

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        # Staff moderate every room; the actions themselves go through report_resolve.
        return bool(request.user.is_active and request.user.is_staff)

    @admin.action(description="Dismiss selected reports", permissions=["resolve"])
    def dismiss_reports(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        self._resolve(request, queryset, Report.Resolution.DISMISS)

    @admin.action(description="Delete the reported messages (closes their reports)", permissions=["resolve"])
    def delete_reported_messages(self, request: HttpRequest, queryset: QuerySet[Report]) -> None:
        self._resolve(request, queryset, Report.Resolution.DELETE)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Report], action: str) -> None:
        count = skipped = 0
        for report_id in queryset.filter(resolved_at__isnull=True).values_list("pk", flat=True):
            try:
                report_resolve(report_id=report_id, actor=request.user, action=action)  # type: ignore[arg-type]
            except NotFound:
                # Closed meanwhile: by another moderator, or by deleting its message for an earlier one.
                skipped += 1
            except ChatError as exc:
                self.message_user(request, f"Could not resolve report {report_id}: {exc.detail}", messages.ERROR)
            else:
                count += 1
        verb = "Dismissed" if action == Report.Resolution.DISMISS else "Deleted the messages of"
        note = f" ({skipped} were closed already)" if skipped else ""
        self.message_user(request, f"{verb} {count} report(s){note}.", messages.SUCCESS)
