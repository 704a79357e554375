"""Messages in the admin: a moderation view over a table of millions of rows.

Nothing here rewrites history: a message's room, seq, author and body are
read-only, adding is disabled (messages come from `message_create` alone),
and deleting is the same soft delete users do, through
`messaging.services.message_delete`, so open sockets get `message_deleted`.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from common.errors import ChatError

from .admin_attachments import AttachmentInline
from .models import Mention, Message, Reaction
from .services import message_delete

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
    actions = ["soft_delete_messages"]
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
