"""Server-rendered pages: the room list and a room.

Live traffic (new messages, presence, typing, read markers) goes over the
websocket from static/chat/room.js; these views only render the starting
state and handle the room list's forms (create, join, open a direct message).
"""

import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import User
from accounts.serializers import user_to_dict
from common.errors import ChatError, Forbidden, NotFound
from messaging.selectors import messages_history, messages_to_dicts, with_mention_count
from rooms.models import SLUG_RE
from rooms.selectors import room_check_readable, room_get_visible, rooms_visible_to
from rooms.services import dm_open, room_create, room_join

HISTORY_SIZE = 50


class RoomCreateForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.RegexField(
        regex=SLUG_RE,
        max_length=50,
        help_text="Lowercase letters, digits and hyphens; it becomes the room's address.",
        error_messages={"invalid": "Use 1-50 lowercase letters, digits or hyphens, not starting with a hyphen."},
    )
    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
    is_private = forms.BooleanField(required=False, label="Private (members are added by the owner)")


class DmStartForm(forms.Form):
    usernames = forms.CharField(
        max_length=1000,
        label="People",
        help_text="Usernames, separated by commas or spaces (up to 8).",
        widget=forms.TextInput(attrs={"placeholder": "bob, carol"}),
    )


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@login_required
@require_http_methods(["GET", "POST"])
def home(request: HttpRequest) -> HttpResponse:
    """The rooms the user can see, with unread counts, and a form to create one."""
    user = _user(request)
    form = RoomCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = room_create(creator=user, **form.cleaned_data)
        except ChatError as exc:
            form.add_error("slug" if "slug" in exc.detail else None, exc.detail)
        else:
            return redirect("room", slug=room.slug)
    rooms = list(with_mention_count(rooms_visible_to(user=user), user=user))
    context = {
        "badges_boot": {"me": user_to_dict(user), "current": None},
        "form": form,
        "dm_form": DmStartForm(),
        "my_rooms": [room for room in rooms if getattr(room, "is_member", False) and not room.is_dm],
        "dms": [room for room in rooms if room.is_dm],
        "other_rooms": [room for room in rooms if not getattr(room, "is_member", False)],
    }
    return render(request, "rooms/home.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def join(request: HttpRequest, slug: str) -> HttpResponse:
    """Join a public room from the room list, then open it."""
    user = _user(request)
    try:
        room = room_get_visible(slug=slug, user=user)
        room_join(room=room, user=user)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    except ChatError as exc:
        messages.error(request, exc.detail)
        return redirect("home")
    return redirect("room", slug=room.slug)


@login_required
@require_POST
def dm_start(request: HttpRequest) -> HttpResponse:
    """Open (or reopen) a direct message from the room list's form, then go to it."""
    form = DmStartForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Name at least one person to message.")
        return redirect("home")
    usernames = [name for name in re.split(r"[\s,]+", form.cleaned_data["usernames"]) if name]
    try:
        room, _ = dm_open(actor=_user(request), usernames=usernames)
    except ChatError as exc:
        messages.error(request, exc.detail)
        return redirect("home")
    return redirect("room", slug=room.slug)


@login_required
@require_GET
def room_detail(request: HttpRequest, slug: str) -> HttpResponse:
    """A room: the last messages, then the websocket client takes over."""
    user = _user(request)
    try:
        room = room_get_visible(slug=slug, user=user)
        membership = room_check_readable(room=room, user=user)
    except NotFound as exc:
        raise Http404(exc.detail) from exc
    except Forbidden as exc:
        return render(request, "rooms/forbidden.html", {"room_slug": slug, "detail": exc.detail}, status=403)
    page = messages_history(room=room, limit=HISTORY_SIZE)
    history = page.messages
    can_moderate = user.is_staff or (membership is not None and membership.can_moderate)
    sidebar = [
        r
        for r in with_mention_count(rooms_visible_to(user=user), user=user)
        if getattr(r, "is_member", False) or r.pk == room.pk
    ]
    boot: dict[str, Any] = {
        "room": {
            "slug": room.slug,
            "kind": room.kind,
            "name": room.title,
            "is_private": room.is_private,
            "is_locked": room.is_locked,
            "last_seq": room.last_seq,
        },
        "me": user_to_dict(user),
        # A DM's other participants: "Message" on the only one of them would lead back here.
        "dm_with": [m.user.username for m in getattr(room, "dm_others", [])] if room.is_dm else [],
        "can_moderate": can_moderate,
        "messages": messages_to_dicts(history, viewer_id=user.pk, room_slug=room.slug),
        "has_older": page.has_older,
        "history_size": HISTORY_SIZE,
        # The composer refuses a bigger file before uploading it (the server refuses it anyway: 413).
        "max_upload_bytes": settings.CHAT_MAX_UPLOAD_BYTES,
    }
    context = {
        "room": room,
        "sidebar_rooms": [r for r in sidebar if not r.is_dm],
        "sidebar_dms": [r for r in sidebar if r.is_dm],
        "boot": boot,
        "badges_boot": {"me": user_to_dict(user), "current": room.slug},
    }
    return render(request, "rooms/room.html", context)


@login_required
@require_GET
def user_detail(request: HttpRequest, username: str) -> HttpResponse:
    """A person's page, where a mention in a message links: who they are, and "Message" to open a DM.

    Any signed-in user may see any active user's name (as they can when
    mentioning them); an unknown or deactivated username is 404.
    """
    person = User.objects.filter(username=username, is_active=True).first()
    if person is None:
        raise Http404("No such user.")
    context = {"person": person, "is_me": person.pk == request.user.pk}
    return render(request, "rooms/user.html", context)
