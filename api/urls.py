from django.urls import path, re_path
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2
from drf_spectacular.views import SpectacularJSONAPIView

from . import attachments, frames, moderation, views
from .docs import docs_view
from .exceptions import not_found_view

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="api-token"),
    path("rooms/", views.RoomListView.as_view(), name="api-rooms"),
    path("dms/", views.DmOpenView.as_view(), name="api-dms"),
    path("rooms/<slug:slug>/", views.RoomDetailView.as_view(), name="api-room"),
    path("rooms/<slug:slug>/join/", views.RoomJoinView.as_view(), name="api-room-join"),
    path("rooms/<slug:slug>/leave/", views.RoomLeaveView.as_view(), name="api-room-leave"),
    path("rooms/<slug:slug>/members/", views.MemberListView.as_view(), name="api-room-members"),
    path("rooms/<slug:slug>/members/<str:username>/", views.MemberDetailView.as_view(), name="api-room-member"),
    path("rooms/<slug:slug>/bans/", views.BanListView.as_view(), name="api-room-bans"),
    path("rooms/<slug:slug>/bans/<str:username>/", views.BanDetailView.as_view(), name="api-room-ban"),
    path("rooms/<slug:slug>/messages/", views.MessageListView.as_view(), name="api-room-messages"),
    path("rooms/<slug:slug>/read/", views.ReadMarkerView.as_view(), name="api-room-read"),
    path("rooms/<slug:slug>/attachments/", attachments.AttachmentUploadView.as_view(), name="api-room-attachments"),
    path(
        "attachments/<int:attachment_id>/<str:name>",
        attachments.AttachmentDownloadView.as_view(),
        name="api-attachment",
    ),
    # Downloads have no trailing slash: anything else under attachments/ is a JSON 404
    # at once, not an APPEND_SLASH redirect to one (a non-numeric id, a slash in the name).
    re_path(r"^attachments/[\s\S]*[^/]$", not_found_view),
    path("messages/<int:message_id>/", views.MessageDetailView.as_view(), name="api-message"),
    path("messages/<int:message_id>/reactions/<str:emoji>/", views.ReactionView.as_view(), name="api-message-reaction"),
    path("messages/<int:message_id>/report/", moderation.MessageReportView.as_view(), name="api-message-report"),
    path("rooms/<slug:slug>/reports/", moderation.RoomReportListView.as_view(), name="api-room-reports"),
    path(
        "rooms/<slug:slug>/reports/<int:report_id>/resolve/",
        moderation.RoomReportResolveView.as_view(),
        name="api-room-report-resolve",
    ),
    path("rooms/<slug:slug>/audit/", moderation.RoomAuditView.as_view(), name="api-room-audit"),
    path("search/", views.SearchView.as_view(), name="api-search"),
    path("mentions/", views.MentionListView.as_view(), name="api-mentions"),
    # Plain application/json first, so browsers show it and any client parses it;
    # Accept: application/vnd.oai.openapi+json still gets that media type.
    path(
        "schema/",
        SpectacularJSONAPIView.as_view(renderer_classes=[OpenApiJsonRenderer2, OpenApiJsonRenderer]),
        name="api-schema",
    ),
    path("ws-schema/", frames.WsSchemaView.as_view(), name="api-ws-schema"),
    path("docs/", docs_view, name="api-docs"),
    # Only paths ending in "/": a path without one still resolves nowhere, so
    # APPEND_SLASH redirects it (e.g. /api/rooms -> /api/rooms/) before it lands here.
    # [\s\S], not ".", which misses a newline: /api/rooms/a%0Ab/ got Django's HTML 404.
    re_path(r"^[\s\S]*/$", not_found_view),
]
