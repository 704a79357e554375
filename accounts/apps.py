from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from django.contrib import admin

        from . import signals  # noqa: F401
        from .throttle import AdminLoginForm

        # The admin's login is throttled like the login page (axes counts every
        # authenticate()); this form also says so when the lockout refused it.
        admin.site.login_form = AdminLoginForm
