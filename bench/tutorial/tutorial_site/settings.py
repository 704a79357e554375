"""Reference (1): the Channels tutorial design, as its docs describe it.

A tiny Django project of its own (not the chat server): one app, `chat`, whose
`AsyncWebsocketConsumer` saves each message with `database_sync_to_async` and
then `group_send`s it through channels-redis. Defaults are the tutorial's and
Django's: `CONN_MAX_AGE` 0 (a new PostgreSQL connection per message), so the
harness also measures it with persistent connections (TUTORIAL_CONN_MAX_AGE).

Environment: TUTORIAL_DATABASE_URL (its own database, e.g. bench_tutorial),
REDIS_URL, TUTORIAL_CONN_MAX_AGE (seconds, default 0).
"""

import os

import environ

env = environ.Env()

SECRET_KEY = "bench-tutorial-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# As `startproject` makes them, minus admin/messages/staticfiles: the tutorial's
# AuthMiddlewareStack needs auth, contenttypes and sessions.
INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "chat",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tutorial_site.urls"
ASGI_APPLICATION = "tutorial_site.asgi.application"

DATABASES = {"default": env.db("TUTORIAL_DATABASE_URL", default="postgres://root@127.0.0.1:5432/bench_tutorial")}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("TUTORIAL_CONN_MAX_AGE", "0"))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Its own key prefix, so it never meets the chat server's groups.
        "CONFIG": {"hosts": [env("REDIS_URL", default="redis://127.0.0.1:6379/0")], "prefix": "benchtut"},
    }
}
USE_TZ = True
TIME_ZONE = "UTC"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"handlers": [], "level": "WARNING"},
}
