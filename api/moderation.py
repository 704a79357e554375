"""Reports and the audit trail under /api/ (see docs/api.md, "Moderation").

Thin like api/views.py: check who may look, call a selector or service, and
shape the answer. Owner-and-moderator endpoints answer as the others do: 404
to someone who cannot read the room, 403 to a reader who does not moderate it.
"""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.serializers import user_to_dict
from audit.models import AuditEntry
from audit.selectors import audit_page
from common.errors import NotFound
from messaging.models import Report
from messaging.selectors import messages_to_dicts, reports_open
from messaging.serializers import iso
from messaging.services import report_create, report_resolve
from rooms.models import Room
from rooms.selectors import room_check_moderator, room_check_readable, room_get

from . import serializers as s
from .pagination import (
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    LIMIT_SCHEMA,
    MAX_BIGINT,
    int_param,
    int_param_schema,
    limit_param,
    page_url,
)
from .views import errors, message_by_id, message_for_viewer, validated, viewer


def report_to_dict(report: Report, message: dict[str, Any]) -> dict[str, Any]:
    data = {
        "id": report.pk,
        "message": message,
        "reporter": user_to_dict(report.reporter),
        "reason": report.reason,
        "created_at": iso(report.created_at),
    }
    if report.resolved_at is not None:
        data["resolved_at"] = iso(report.resolved_at)
        data["resolved_by"] = user_to_dict(report.resolved_by) if report.resolved_by is not None else None
        data["resolution"] = report.resolution
    return data


def audit_entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    """The contract's five fields; what changed, when the action alone does not say, follows the target."""
    target = f"{entry.target} ({entry.detail})" if entry.detail else entry.target
    return {
        "at": iso(entry.at),
        "actor": user_to_dict(entry.actor) if entry.actor is not None else None,
        "action": entry.action,
        "target": target,
        "path": entry.path,
    }


def moderated_room(slug: str, user: User) -> Room:
    """The room, if `user` moderates it: NotFound when they cannot read it, Forbidden when they only read it."""
    room = room_get(slug=slug)
    room_check_readable(room=room, user=user)
    room_check_moderator(room=room, user=user)
    return room


class MessageReportView(APIView):
    @extend_schema(
        request=s.ReportCreateSerializer,
        responses={
            201: OpenApiResponse(s.ReportSerializer, description="Reported."),
            200: OpenApiResponse(s.ReportSerializer, description="You already have an open report on it: that one."),
            **errors(400, 401, 403, 404),
        },
        summary="Report a message to the room's moderators",
        description=(
            "Anyone who can read the room may report one of its messages, with a reason of 1-500 characters "
            "(trimmed). While your report is open, reporting the same message again answers it unchanged (200). "
            "A deleted message cannot be reported (400). 404 when you cannot read the room, 403 when banned."
        ),
    )
    def post(self, request: Request, message_id: int) -> Response:
        user = viewer(request)
        data = validated(s.ReportCreateSerializer, request)
        if message_id > MAX_BIGINT:
            raise NotFound("No such message.")
        report, created = report_create(message_id=message_id, reporter=user, reason=data["reason"])
        report.reporter = user
        return Response(
            report_to_dict(report, message_for_viewer(message_by_id(report.message_id), user)),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class RoomReportListView(APIView):
    @extend_schema(
        responses={200: s.ReportSerializer(many=True), **errors(401, 403, 404)},
        summary="The room's open reports, oldest first (owner or moderator)",
        description=(
            "Every open report of the room in one list, not paged: resolving a report removes it, so the "
            "queue stays as short as the moderators keep it. A reader who does not moderate the room gets 403, "
            "someone who cannot read it 404."
        ),
    )
    def get(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        room = moderated_room(slug, user)
        reports = reports_open(room=room)
        messages = messages_to_dicts([report.message for report in reports], viewer_id=user.pk, room_slug=room.slug)
        return Response([report_to_dict(r, m) for r, m in zip(reports, messages, strict=True)])


class RoomReportResolveView(APIView):
    @extend_schema(
        request=s.ReportResolveSerializer,
        responses={200: s.ResolvedReportSerializer, **errors(400, 401, 403, 404)},
        summary="Resolve an open report: dismiss it, or delete the message (owner or moderator)",
        description=(
            "`dismiss` closes this report. `delete` deletes the message (every socket in the room gets "
            "`message_deleted`) and closes every open report on it. A report of another room, or one that is "
            "resolved already (by another moderator, say), is 404. Both are recorded in the audit trail."
        ),
    )
    def post(self, request: Request, slug: str, report_id: int) -> Response:
        user = viewer(request)
        room = moderated_room(slug, user)
        data = validated(s.ReportResolveSerializer, request)
        if report_id > MAX_BIGINT:
            raise NotFound("No such report.")
        report = report_resolve(report_id=report_id, actor=user, action=data["action"], room=room)
        return Response(report_to_dict(report, message_for_viewer(message_by_id(report.message_id), user)))


class RoomAuditView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "before", int_param_schema(), description="Only entries older than this one (set by `next`)."
            ),
            OpenApiParameter(
                "limit",
                LIMIT_SCHEMA,
                description=f"Page size, default {HISTORY_DEFAULT_LIMIT}; above {HISTORY_MAX_LIMIT} is clamped.",
            ),
        ],
        responses={
            200: OpenApiResponse(
                s.AuditEntrySerializer(many=True),
                description='Newest first. When older entries exist, a `Link: <url>; rel="next"` header.',
            ),
            **errors(400, 401, 403, 404),
        },
        summary="The room's moderation audit trail, newest first (owner or moderator)",
        description=(
            "Every moderation action in the room, by whichever path it came: messages deleted or restored by "
            "someone other than their author, locks, bans, role changes, members added or removed, reports "
            'resolved. The body is a list; the `Link` header\'s `rel="next"` URL pages to older entries.'
        ),
    )
    def get(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        params = request.query_params
        before = int_param(params, "before")
        limit = limit_param(params, default=HISTORY_DEFAULT_LIMIT, maximum=HISTORY_MAX_LIMIT)
        room = moderated_room(slug, user)
        rows = audit_page(room_id=room.pk, before=before, limit=limit + 1)
        page = rows[:limit]
        following = page_url(request, before=page[-1].pk, limit=limit) if len(rows) > limit else None
        # The contract's body is the list itself, so the next page travels as an
        # RFC 8288 link, as GitHub's API pages its lists.
        headers = {"Link": f'<{following}>; rel="next"'} if following else None
        return Response([audit_entry_to_dict(e) for e in page], headers=headers)
