"""Request validation and the documented response shapes.

Input serializers check types only; limits and rules (slug format, body
length, who may do what) live in the services, so REST and the websocket
enforce the same ones. Responses are built by the shared dict functions
(`message_to_dict`, `user_to_dict`, `room_to_dict`); the output serializers
here describe those dicts for the OpenAPI schema, and tests/api check that
the two agree.
"""

from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from audit.models import AuditEntry
from messaging.models import Report
from messaging.services import REPORT_REASON_MAX
from rooms.models import Membership, Room


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """Only JSON true/false; DRF's default also takes "yes", "on", 1 and friends."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """Only JSON integers; refuses strings, floats and booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- requests ----------------------------------------------------------------


class TokenObtainSerializer(serializers.Serializer):
    username = StrictCharField(trim_whitespace=False)
    password = StrictCharField(trim_whitespace=False, style={"input_type": "password"})


class RoomCreateSerializer(serializers.Serializer):
    slug = StrictCharField(help_text="^[a-z0-9][a-z0-9-]{0,49}$, unique.")
    name = StrictCharField(max_length=100)
    description = StrictCharField(required=False, allow_blank=True, max_length=2000, default="")
    is_private = StrictBooleanField(required=False, default=False)


class RoomUpdateSerializer(serializers.Serializer):
    is_locked = StrictBooleanField(required=False)
    name = StrictCharField(required=False, max_length=100)
    description = StrictCharField(required=False, allow_blank=True, max_length=2000)


class DmOpenSerializer(serializers.Serializer):
    # Counts and who may be named are the service's rules (rooms.services.dm_open).
    usernames = serializers.ListField(
        child=StrictCharField(trim_whitespace=False),
        help_text="1 to 8 other active users. Duplicates and your own username are ignored.",
    )


class UsernameSerializer(serializers.Serializer):
    username = StrictCharField(trim_whitespace=False)


class RoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=[Membership.Role.MODERATOR.value, Membership.Role.MEMBER.value])


class MessageCreateSerializer(serializers.Serializer):
    # No length limit here: the service trims and counts code points, and
    # answers `too_long` rather than DRF's generic `bad_request`.
    body = StrictCharField(
        trim_whitespace=False,
        allow_blank=True,
        required=False,
        help_text="1-4000 code points after trimming; may be empty or left out when `attachments` is not empty.",
    )
    client_id = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        min_length=1,
        max_length=64,
        help_text="Idempotency key: a retry with the same client_id returns the original message.",
    )
    reply_to = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Id of the message in this room this one replies to; another room's or an unknown one is 404.",
    )
    attachments = serializers.ListField(
        child=StrictIntegerField(min_value=1),
        required=False,
        max_length=10,
        help_text="Up to 10 ids of your own unused uploads to this room (POST .../attachments/), in the order to "
        "show them; anyone else's, a used one, another room's or a repeat is 400 and nothing is sent.",
    )


class MessageEditSerializer(serializers.Serializer):
    body = StrictCharField(trim_whitespace=False, allow_blank=True, help_text="1-4000 code points after trimming.")


class ReadMarkerSerializer(serializers.Serializer):
    seq = StrictIntegerField(min_value=0)


# --- responses (schema only) ---------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField(
        help_text="bad_request, too_long, not_authenticated, forbidden, not_found, room_locked, rate_limited, ..."
    )


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class UserSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField()


class RoomSerializer(serializers.Serializer):
    slug = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=Room.Kind.choices, help_text='"dm" for a direct message (POST /api/dms/), "room" for any other.'
    )
    name = serializers.CharField(help_text="For a DM, the other participants' display names, as you see it.")
    description = serializers.CharField()
    is_private = serializers.BooleanField()
    is_locked = serializers.BooleanField()
    last_seq = serializers.IntegerField(help_text="seq of the newest message, 0 when there is none.")
    unread_count = serializers.IntegerField(help_text="last_seq minus your read marker; 0 when not a member.")
    mention_count = serializers.IntegerField(
        help_text="Messages mentioning you above your read marker (deleted ones excluded); 0 when not a member."
    )
    is_member = serializers.BooleanField()


class MemberSerializer(serializers.Serializer):
    user = UserSerializer()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    online = serializers.BooleanField()


class BanSerializer(serializers.Serializer):
    room = serializers.CharField()
    user = UserSerializer()
    banned_by = UserSerializer(allow_null=True)
    created_at = serializers.DateTimeField()


class QuoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    seq = serializers.IntegerField()
    author = UserSerializer()
    body = serializers.CharField(help_text='The original\'s first 200 characters as it is now; "" once deleted.')
    deleted = serializers.BooleanField()


class ReactionSerializer(serializers.Serializer):
    emoji = serializers.CharField(help_text="One fully-qualified Unicode emoji sequence.")
    count = serializers.IntegerField(help_text="How many people reacted with it.")
    me = serializers.BooleanField(help_text="Whether you did (false in broadcast message_updated/_deleted events).")


class AttachmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(
        help_text="The uploaded file's name, cleaned (no path, control characters or leading dots)."
    )
    size = serializers.IntegerField(help_text="Bytes.")
    content_type = serializers.CharField(
        help_text="image/png, image/jpeg, image/gif or image/webp only for files whose content was verified "
        "(shown inline); otherwise from the name, application/octet-stream when unknown."
    )
    url = serializers.CharField(help_text="Path of the download on this server (/api/attachments/<id>/<name>).")


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    room = serializers.CharField()
    seq = serializers.IntegerField()
    author = UserSerializer()
    body = serializers.CharField(help_text='"" when deleted.')
    html = serializers.CharField(
        help_text="The body as CommonMark rendered to sanitized HTML: only p, br, em, strong, code, pre, "
        'blockquote, ul, ol (start), li and a (href to http, https or mailto, rel="nofollow noopener noreferrer"; '
        'mentions as class="mention" href="/u/<username>/"); the sender\'s own HTML is escaped. "" when deleted.'
    )
    client_id = serializers.CharField(allow_null=True, help_text="Shown to the author only; null for others.")
    created_at = serializers.DateTimeField()
    edited_at = serializers.DateTimeField(allow_null=True)
    deleted = serializers.BooleanField()
    reply_to = QuoteSerializer(allow_null=True, help_text="The message this one replies to, as it is now; or null.")
    reactions = ReactionSerializer(many=True, help_text="In order of first use; at most 20.")
    mentions = UserSerializer(
        many=True,
        help_text="Users mentioned as @username who can read the room, in order of first appearance; "
        "never the author; [] once deleted.",
    )
    attachments = AttachmentSerializer(
        many=True, help_text="Files, in the order the sender listed them; [] when none or deleted."
    )


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, help_text="Ascending by seq.")
    previous = serializers.URLField(allow_null=True, help_text="Older page; null when nothing is older.")
    next = serializers.URLField(allow_null=True, help_text="Newer page; null when this page ends at the newest.")


class MentionPageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, help_text="Messages that mention you, newest first.")
    next = serializers.URLField(allow_null=True, help_text="Older mentions; null when there are none.")


class SearchPageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True, help_text="Best match first (newest first on SQLite).")
    next = serializers.URLField(allow_null=True)


class ReadMarkerResponseSerializer(serializers.Serializer):
    room = serializers.CharField()
    seq = serializers.IntegerField(help_text="Your read marker after the update.")
    unread_count = serializers.IntegerField()


# --- reports and the audit trail (api/moderation.py) ----------------------------


class ReportCreateSerializer(serializers.Serializer):
    # Trimmed before it is counted, so the bounds hold for the stored reason; the
    # pattern (as the search `q`'s) tells clients that white space alone and NUL are
    # refused. The service (messaging.services.clean_reason) checks it all again.
    reason = StrictCharField(
        min_length=1,
        max_length=REPORT_REASON_MAX,
        validators=[RegexValidator(r"^[^\x00]*[^\x00\s][^\x00]*$", "reason must not be blank or contain NUL.")],
        help_text="1-500 characters after trimming.",
    )


class ReportResolveSerializer(serializers.Serializer):
    action = serializers.ChoiceField(
        choices=Report.Resolution.choices, help_text="`delete` deletes the message (live `message_deleted`)."
    )


class ReportSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    message = MessageSerializer(help_text="The reported message as the caller sees it now.")
    reporter = UserSerializer()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class ResolvedReportSerializer(ReportSerializer):
    resolved_at = serializers.DateTimeField()
    resolved_by = UserSerializer()
    resolution = serializers.ChoiceField(choices=Report.Resolution.choices)


class AuditEntrySerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    actor = UserSerializer(allow_null=True, help_text="Who acted; null if that account is gone or nobody did.")
    action = serializers.ChoiceField(choices=AuditEntry.Action.choices)
    target = serializers.CharField(
        help_text='Whom or what, as text: "@bob", "message #12 (seq 3) by @bob", "#lobby"; what changed follows '
        'in parentheses when the action alone does not say: "@carol (member → moderator)".'
    )
    path = serializers.ChoiceField(
        choices=AuditEntry.Path.choices,
        help_text="How it came: websocket, rest or admin (a shell or command on the server counts as admin).",
    )
