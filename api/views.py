"""REST endpoints under /api/ (see docs/api.md).

Thin by design: authenticate (DRF), validate the request's types, call a
selector or service, and shape the answer with the shared dict functions.
Domain errors propagate as `common.errors.ChatError` and become
`{"detail", "code"}` in `api.exceptions`.
"""

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib.auth import authenticate
from django.db.models import QuerySet
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from accounts.models import User
from accounts.serializers import user_to_dict
from accounts.throttle import login_succeeded, login_throttled, retry_after
from common.errors import BadRequest, NotFound, RateLimited
from messaging.models import Message
from messaging.selectors import (
    mentions_page,
    message_get,
    messages_history,
    messages_search,
    messages_to_dicts,
    with_mention_count,
)
from messaging.serializers import iso
from messaging.services import message_create, message_delete, message_edit, reaction_set
from rooms.models import Ban, Membership, Room
from rooms.presence import presence
from rooms.selectors import (
    membership_get,
    room_check_readable,
    room_get,
    room_get_visible,
    room_members,
    rooms_visible_to,
)
from rooms.serializers import room_to_dict
from rooms.services import (
    dm_open,
    membership_add,
    membership_set_role,
    read_marker_set,
    room_ban,
    room_create,
    room_join,
    room_leave,
    room_unban,
    room_update,
)

from . import serializers as s
from .exceptions import flatten_detail
from .pagination import (
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    LIMIT_SCHEMA,
    MAX_BIGINT,
    SEARCH_DEFAULT_LIMIT,
    SEARCH_MAX_LIMIT,
    history_links,
    int_param,
    int_param_schema,
    limit_param,
    page_url,
)

SEARCH_MAX_QUERY = 500
# Something besides white space, and no NUL (which PostgreSQL text cannot hold).
SEARCH_QUERY_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": SEARCH_MAX_QUERY,
    "pattern": r"^[^\x00]*[^\x00\s][^\x00]*$",
}


# --- helpers -------------------------------------------------------------------


class RequiredPatchSchema(AutoSchema):
    """drf-spectacular documents every PATCH body as partial (all fields optional).

    Editing a message needs its `body` and a role change needs the `role`, so
    these views document their PATCH body as it is validated: with required fields.
    """

    def _get_request_for_media_type(self, serializer: Any, direction: str = "request") -> Any:
        method = self.method
        if method == "PATCH":
            self.method = "PUT"
        try:
            return super()._get_request_for_media_type(serializer, direction)
        finally:
            self.method = method


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Schema entries for the error responses an endpoint can give."""
    return {code: OpenApiResponse(s.ErrorSerializer) for code in statuses}


def validated(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    """Validate the JSON body; a body that is not an object, or a bad field, is 400 bad_request."""
    if not isinstance(request.data, dict):
        raise BadRequest("The request body must be a JSON object.")
    serializer = serializer_class(data=request.data)
    if not serializer.is_valid():
        raise BadRequest("; ".join(flatten_detail(serializer.errors)))
    return dict(serializer.validated_data)


def viewer(request: Request) -> User:
    """The authenticated user (IsAuthenticated has already refused anyone else)."""
    user = request.user
    assert isinstance(user, User)
    return user


def room_for_viewer(room: Room) -> dict[str, Any]:
    """A room annotated by `rooms_visible_to` and `with_mention_count`, with the viewer's counts and `is_member`."""
    return room_to_dict(room) | {
        "unread_count": getattr(room, "unread_count", 0) or 0,
        "mention_count": getattr(room, "mention_count", 0) or 0,
        "is_member": bool(getattr(room, "is_member", False)),
    }


def rooms_for_viewer(user: User) -> QuerySet[Room]:
    """`rooms_visible_to` with `mention_count`: one query for the whole list."""
    return with_mention_count(rooms_visible_to(user=user), user=user)


def visible_room_response(*, slug: str, user: User, status_code: int = status.HTTP_200_OK) -> Response:
    room = rooms_for_viewer(user).filter(slug=slug).first()
    if room is None:
        raise NotFound("No such room.")
    return Response(room_for_viewer(room), status=status_code)


def message_for_viewer(message: Message, user: User) -> dict[str, Any]:
    return messages_to_dicts([message], viewer_id=user.pk)[0]


def user_by_username(username: str, *, in_body: bool) -> User:
    """An active user; unknown is 400 when named in the body, 404 when named in the path."""
    # PostgreSQL refuses NUL in text parameters; no username contains one.
    user = None if "\x00" in username else User.objects.filter(username=username, is_active=True).first()
    if user is None:
        if in_body:
            raise BadRequest(f"No such user: {username!r}.")
        raise NotFound("No such user.")
    return user


def online_user_ids(slug: str) -> set[int]:
    """Who has a socket in the room right now (the presence store's API is async)."""
    return async_to_sync(presence().online)(slug)


def member_to_dict(membership: Membership, online: set[int]) -> dict[str, Any]:
    return {"user": user_to_dict(membership.user), "role": membership.role, "online": membership.user_id in online}


def ban_to_dict(ban: Ban, room: Room) -> dict[str, Any]:
    return {
        "room": room.slug,
        "user": user_to_dict(ban.user),
        "banned_by": user_to_dict(ban.banned_by) if ban.banned_by is not None else None,
        "created_at": iso(ban.created_at),
    }


def message_by_id(message_id: int) -> Message:
    # Ids beyond bigint would make the database raise; no such message exists.
    if message_id > MAX_BIGINT:
        raise NotFound("No such message.")
    return message_get(message_id=message_id)


# --- auth ----------------------------------------------------------------------


class TokenView(APIView):
    """Exchange a username and password for an API token."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=s.TokenObtainSerializer,
        responses={200: s.TokenSerializer, **errors(400, 429)},
        auth=[],
        summary="Get an API token",
        description="After too many failed logins for one username from one address, every attempt "
        "for that pair is refused with 429 `rate_limited`, whatever the password, until `Retry-After` has passed.",
    )
    def post(self, request: Request) -> Response:
        data = validated(s.TokenObtainSerializer, request)
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if login_throttled(request._request):
            wait = retry_after(request._request, data["username"])
            raise RateLimited(retry_after=wait, detail="Too many failed logins; try again later.")
        if user is None or not user.is_active:
            raise BadRequest("Unable to log in with the provided credentials.")
        login_succeeded(request._request, user)
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


# --- rooms ---------------------------------------------------------------------


class RoomListView(APIView):
    @extend_schema(
        responses={200: s.RoomSerializer(many=True), **errors(401)}, summary="Rooms you can see, your DMs included"
    )
    def get(self, request: Request) -> Response:
        rooms = rooms_for_viewer(viewer(request))
        return Response([room_for_viewer(room) for room in rooms])

    @extend_schema(
        request=s.RoomCreateSerializer,
        responses={201: s.RoomSerializer, **errors(400, 401)},
        summary="Create a room (you become its owner)",
    )
    def post(self, request: Request) -> Response:
        data = validated(s.RoomCreateSerializer, request)
        user = viewer(request)
        room = room_create(creator=user, **data)
        return visible_room_response(slug=room.slug, user=user, status_code=status.HTTP_201_CREATED)


class DmOpenView(APIView):
    @extend_schema(
        request=s.DmOpenSerializer,
        responses={
            201: OpenApiResponse(s.RoomSerializer, description="A new direct message."),
            200: OpenApiResponse(s.RoomSerializer, description="Exactly these people already have one: that room."),
            **errors(400, 401),
        },
        summary="Open the direct message of you and 1 to 8 other people",
        description=(
            "The same set of people always gets the same room (kind `dm`, private, server-chosen slug), "
            "whoever opens it and in whatever order the names come. Everyone in it is a member; there is "
            "no owner or moderator, so adding members, locking, banning, role changes and leaving are 403. "
            "An unknown or deactivated username, your own alone, or more than 8 others is 400."
        ),
    )
    def post(self, request: Request) -> Response:
        data = validated(s.DmOpenSerializer, request)
        user = viewer(request)
        room, created = dm_open(actor=user, usernames=data["usernames"])
        return visible_room_response(
            slug=room.slug, user=user, status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class RoomDetailView(APIView):
    @extend_schema(responses={200: s.RoomSerializer, **errors(401, 404)}, summary="One room")
    def get(self, request: Request, slug: str) -> Response:
        return visible_room_response(slug=slug, user=viewer(request))

    @extend_schema(
        request=s.RoomUpdateSerializer,
        responses={200: s.RoomSerializer, **errors(400, 401, 403, 404)},
        summary="Rename, describe, lock or unlock a room (owner or moderator)",
    )
    def patch(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        data = validated(s.RoomUpdateSerializer, request)
        room = room_get_visible(slug=slug, user=user)
        room_update(room=room, actor=user, **data)
        return visible_room_response(slug=slug, user=user)


class RoomJoinView(APIView):
    @extend_schema(request=None, responses={200: s.RoomSerializer, **errors(401, 403, 404)}, summary="Join a room")
    def post(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        room = room_get_visible(slug=slug, user=user)
        room_join(room=room, user=user)
        return visible_room_response(slug=slug, user=user)


class RoomLeaveView(APIView):
    @extend_schema(
        request=None, responses={204: None, **errors(401, 403, 404)}, summary="Leave a room (not the owner, not a DM)"
    )
    def post(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        room = room_get_visible(slug=slug, user=user)
        room_leave(room=room, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberListView(APIView):
    @extend_schema(
        responses={200: s.MemberSerializer(many=True), **errors(401, 403, 404)},
        summary="Members with their role and whether they are online in the room",
    )
    def get(self, request: Request, slug: str) -> Response:
        room = room_get(slug=slug)
        room_check_readable(room=room, user=viewer(request))
        online = online_user_ids(room.slug)
        return Response([member_to_dict(m, online) for m in room_members(room=room)])

    @extend_schema(
        request=s.UsernameSerializer,
        responses={
            201: OpenApiResponse(s.MemberSerializer, description="Added."),
            200: OpenApiResponse(s.MemberSerializer, description="Already a member."),
            **errors(400, 401, 403, 404),
        },
        summary="Add a member (owner or moderator)",
    )
    def post(self, request: Request, slug: str) -> Response:
        actor = viewer(request)
        data = validated(s.UsernameSerializer, request)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=actor)
        user = user_by_username(data["username"], in_body=True)
        existed = membership_get(room=room, user=user) is not None
        membership = membership_add(room=room, actor=actor, user=user)
        membership.user = user
        return Response(
            member_to_dict(membership, online_user_ids(room.slug)),
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )


class MemberDetailView(APIView):
    schema = RequiredPatchSchema()

    @extend_schema(
        request=s.RoleSerializer,
        responses={200: s.MemberSerializer, **errors(400, 401, 403, 404)},
        summary="Make a member a moderator, or a moderator a member (owner only)",
    )
    def patch(self, request: Request, slug: str, username: str) -> Response:
        actor = viewer(request)
        data = validated(s.RoleSerializer, request)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=actor)
        user = user_by_username(username, in_body=False)
        membership = membership_set_role(room=room, actor=actor, user=user, role=data["role"])
        membership.user = user
        return Response(member_to_dict(membership, online_user_ids(room.slug)))


class BanListView(APIView):
    @extend_schema(
        request=s.UsernameSerializer,
        responses={201: s.BanSerializer, **errors(400, 401, 403, 404)},
        summary="Ban a user from the room (owner or moderator)",
    )
    def post(self, request: Request, slug: str) -> Response:
        actor = viewer(request)
        data = validated(s.UsernameSerializer, request)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=actor)
        user = user_by_username(data["username"], in_body=True)
        ban = room_ban(room=room, actor=actor, user=user)
        ban.user = user
        return Response(ban_to_dict(ban, room), status=status.HTTP_201_CREATED)


class BanDetailView(APIView):
    @extend_schema(responses={204: None, **errors(401, 403, 404)}, summary="Lift a ban (owner or moderator)")
    def delete(self, request: Request, slug: str, username: str) -> Response:
        actor = viewer(request)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=actor)
        user = user_by_username(username, in_body=False)
        room_unban(room=room, actor=actor, user=user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReadMarkerView(APIView):
    @extend_schema(
        request=s.ReadMarkerSerializer,
        responses={200: s.ReadMarkerResponseSerializer, **errors(400, 401, 403, 404)},
        summary="Move your read marker forward (never back)",
    )
    def post(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        data = validated(s.ReadMarkerSerializer, request)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=user)
        marker = read_marker_set(room=room, user=user, seq=data["seq"])
        last_seq = Room.objects.filter(pk=room.pk).values_list("last_seq", flat=True).get()
        return Response({"room": room.slug, "seq": marker, "unread_count": max(last_seq - marker, 0)})


# --- messages ------------------------------------------------------------------


class MessageListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("before", int_param_schema(), description="Newest messages with seq below this."),
            OpenApiParameter("after", int_param_schema(), description="Oldest messages with seq above this."),
            OpenApiParameter(
                "limit",
                LIMIT_SCHEMA,
                description=f"Page size, default {HISTORY_DEFAULT_LIMIT}; above {HISTORY_MAX_LIMIT} is clamped.",
            ),
        ],
        responses={200: s.MessagePageSerializer, **errors(400, 401, 403, 404)},
        summary="History by seq (keyset pages)",
    )
    def get(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        params = request.query_params
        before = int_param(params, "before")
        after = int_param(params, "after")
        limit = limit_param(params, default=HISTORY_DEFAULT_LIMIT, maximum=HISTORY_MAX_LIMIT)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=user)
        page = messages_history(room=room, before=before, after=after, limit=limit)
        links = history_links(
            request,
            messages=page.messages,
            before=before,
            after=after,
            limit=limit,
            has_older=page.has_older,
            has_newer=page.has_newer,
        )
        return Response(
            {
                "results": messages_to_dicts(page.messages, viewer_id=user.pk, room_slug=room.slug),
                "previous": links.previous,
                "next": links.next,
            }
        )

    @extend_schema(
        request=s.MessageCreateSerializer,
        responses={
            201: OpenApiResponse(s.MessageSerializer, description="Sent."),
            200: OpenApiResponse(s.MessageSerializer, description="Repeat of a client_id: the original message."),
            **errors(400, 401, 403, 404, 409, 429),
        },
        summary="Send a message",
    )
    def post(self, request: Request, slug: str) -> Response:
        user = viewer(request)
        data = validated(s.MessageCreateSerializer, request)
        room = room_get(slug=slug)
        room_check_readable(room=room, user=user)
        reply_to = data.get("reply_to")
        if reply_to is not None and reply_to > MAX_BIGINT:
            raise NotFound("No such message to reply to in this room.")
        message, created = message_create(
            room=room,
            author=user,
            body=data.get("body"),
            client_id=data.get("client_id"),
            reply_to=reply_to,
            attachments=data.get("attachments"),
        )
        return Response(
            message_for_viewer(message, user), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class MessageDetailView(APIView):
    schema = RequiredPatchSchema()

    @extend_schema(responses={200: s.MessageSerializer, **errors(401, 403, 404)}, summary="One message")
    def get(self, request: Request, message_id: int) -> Response:
        user = viewer(request)
        message = message_by_id(message_id)
        room_check_readable(room=message.room, user=user)
        return Response(message_for_viewer(message, user))

    @extend_schema(
        request=s.MessageEditSerializer,
        responses={200: s.MessageSerializer, **errors(400, 401, 403, 404, 409)},
        summary="Edit your message",
    )
    def patch(self, request: Request, message_id: int) -> Response:
        user = viewer(request)
        data = validated(s.MessageEditSerializer, request)
        message = message_by_id(message_id)
        if message.author_id != user.pk:
            # Someone who cannot see the room learns nothing about the message.
            room_check_readable(room=message.room, user=user)
        edited = message_edit(message=message, actor=user, body=data["body"])
        return Response(message_for_viewer(edited, user))

    @extend_schema(
        responses={200: s.MessageSerializer, **errors(401, 403, 404)},
        summary="Delete a message (soft; author, room owner or moderator, staff)",
    )
    def delete(self, request: Request, message_id: int) -> Response:
        user = viewer(request)
        message = message_delete(message=message_by_id(message_id), actor=user)
        return Response(message_for_viewer(message, user))


EMOJI_PARAMETER = OpenApiParameter(
    "emoji",
    str,
    OpenApiParameter.PATH,
    description="One fully-qualified Unicode emoji sequence, URL-encoded UTF-8 (%F0%9F%91%8D is 👍).",
)


class ReactionView(APIView):
    """Your reaction `emoji` (URL-encoded in the path) on a message: PUT adds it, DELETE removes it."""

    def _set(self, request: Request, message_id: int, emoji: str, on: bool) -> Response:
        user = viewer(request)
        if message_id > MAX_BIGINT:
            raise NotFound("No such message.")
        message = reaction_set(user=user, message_id=message_id, emoji=emoji, on=on)
        return Response(message_for_viewer(message_get(message_id=message.pk), user))

    @extend_schema(
        request=None,
        parameters=[EMOJI_PARAMETER],
        responses={200: s.MessageSerializer, **errors(400, 401, 403, 404, 409)},
        summary="React to a message (adding twice counts once)",
        description=(
            "`emoji` is one fully-qualified Unicode emoji sequence, URL-encoded (e.g. `%F0%9F%91%8D` for 👍); "
            "anything else is 400, and so is a 21st different emoji on the message. Anyone who can read the room "
            "and is not banned may react; a locked room is 409, a deleted message 400. Every socket in the room "
            "gets a `reaction` event. Answers the message with its `reactions`."
        ),
    )
    def put(self, request: Request, message_id: int, emoji: str) -> Response:
        return self._set(request, message_id, emoji, True)

    @extend_schema(
        request=None,
        parameters=[EMOJI_PARAMETER],
        responses={200: s.MessageSerializer, **errors(400, 401, 403, 404, 409)},
        summary="Remove your reaction (a no-op when you have none)",
    )
    def delete(self, request: Request, message_id: int, emoji: str) -> Response:
        return self._set(request, message_id, emoji, False)


# --- search --------------------------------------------------------------------


class SearchView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q",
                SEARCH_QUERY_SCHEMA,
                required=True,
                description=f"Search words (PostgreSQL websearch syntax), 1..{SEARCH_MAX_QUERY} characters "
                "after trimming.",
            ),
            OpenApiParameter("room", str, description="Only this room (slug)."),
            OpenApiParameter(
                "limit",
                LIMIT_SCHEMA,
                description=f"default {SEARCH_DEFAULT_LIMIT}; above {SEARCH_MAX_LIMIT} is clamped.",
            ),
            OpenApiParameter("offset", int_param_schema(), description="Set by the `next` link."),
        ],
        responses={200: s.SearchPageSerializer, **errors(400, 401, 403, 404)},
        summary="Search messages you can read",
    )
    def get(self, request: Request) -> Response:
        user = viewer(request)
        params = request.query_params
        query = (params.get("q") or "").strip()
        if not query:
            raise BadRequest("q must not be empty.")
        if "\x00" in query:
            raise BadRequest("q must not contain NUL characters.")
        if len(query) > SEARCH_MAX_QUERY:
            raise BadRequest(f"q is limited to {SEARCH_MAX_QUERY} characters.")
        limit = limit_param(params, default=SEARCH_DEFAULT_LIMIT, maximum=SEARCH_MAX_LIMIT)
        offset = int_param(params, "offset") or 0
        room = None
        slug = params.get("room")
        if slug:
            room = room_get(slug=slug)
            room_check_readable(room=room, user=user)
        rows = messages_search(user=user, query=query, room=room, limit=limit + 1, offset=offset)
        following = None
        if len(rows) > limit:
            link: dict[str, int | str] = {"q": query}
            if room is not None:
                link["room"] = room.slug
            following = page_url(request, **link, limit=limit, offset=offset + limit)
        return Response({"results": messages_to_dicts(rows[:limit], viewer_id=user.pk), "next": following})


# --- mentions ------------------------------------------------------------------


class MentionListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "before", int_param_schema(), description="Only messages with an id below this (set by `next`)."
            ),
            OpenApiParameter(
                "limit",
                LIMIT_SCHEMA,
                description=f"Page size, default {HISTORY_DEFAULT_LIMIT}; above {HISTORY_MAX_LIMIT} is clamped.",
            ),
        ],
        responses={200: s.MentionPageSerializer, **errors(400, 401)},
        summary="Messages that mention you, newest first",
        description=(
            "Only rooms you can still read (not a private room you left, not a room you are banned from). "
            "A deleted message no longer mentions anyone, so it is not listed."
        ),
    )
    def get(self, request: Request) -> Response:
        user = viewer(request)
        params = request.query_params
        before = int_param(params, "before")
        limit = limit_param(params, default=HISTORY_DEFAULT_LIMIT, maximum=HISTORY_MAX_LIMIT)
        rows = mentions_page(user=user, before=before, limit=limit + 1)
        page = rows[:limit]
        following = page_url(request, before=page[-1].pk, limit=limit) if len(rows) > limit else None
        return Response({"results": messages_to_dicts(page, viewer_id=user.pk), "next": following})
