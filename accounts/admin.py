"""Users in the admin. Deactivating a user closes their sockets (accounts/signals.py) and is audited."""

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import User
from .services import user_set_active


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = ("username", "display_name", "email", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("username", "display_name", "email")
    ordering = ("username",)
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("display_name", "first_name", "last_name", "email")}),
        (
            "Status and permissions",
            {
                "fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions"),
                "description": "Clearing “active” logs the user out of every open chat socket at once.",
            },
        ),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("username", "display_name", "password1", "password2")}),)
    actions = ["deactivate_users", "activate_users"]

    @admin.action(description="Deactivate selected users (closes their sockets)", permissions=["change"])
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # One save per user, not queryset.update(): the post_save signal is
        # what closes the user's sockets on every server process.
        me = request.user.get_username()
        count = 0
        for user in queryset.filter(is_active=True).exclude(username=me):
            count += user_set_active(user=user, actor=request.user, active=False)  # type: ignore[arg-type]
        if queryset.filter(username=me).exists():
            self.message_user(request, "You cannot deactivate yourself.", messages.WARNING)
        self.message_user(request, f"Deactivated {count} user(s).", messages.SUCCESS)

    @admin.action(description="Activate selected users", permissions=["change"])
    def activate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        count = 0
        for user in queryset.filter(is_active=False):
            count += user_set_active(user=user, actor=request.user, active=True)  # type: ignore[arg-type]
        self.message_user(request, f"Activated {count} user(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        """The change form's "active" box goes through `user_set_active`, so it is audited like the actions.

        The admin wraps the form in one transaction: the rest of the form and
        the audit entry commit together.
        """
        if not (change and "is_active" in form.changed_data):
            super().save_model(request, obj, form, change)
            return
        active = obj.is_active
        obj.is_active = not active
        super().save_model(request, obj, form, change)
        user_set_active(user=obj, actor=request.user, active=active)  # type: ignore[arg-type]
