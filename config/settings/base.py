"""Settings shared by every environment.

Everything that differs between machines comes from the environment through
django-environ. With no environment at all the project runs on SQLite and the
in-memory channel layer, so a newcomer needs nothing installed.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from common.rates import parse_rate

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

SECRET_KEY = env("DJANGO_SECRET_KEY", default="django-insecure-local-only-do-not-use-in-production")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # Login throttling (accounts/throttle.py).
    "axes",
    "audit",
    "accounts",
    "rooms",
    "messaging",
    "api",
    "web",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy (CONTENT_SECURITY_POLICY below) and Permissions-Policy.
    "csp.middleware.CSPMiddleware",
    "common.headers.permissions_policy_middleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Which path (REST or admin) a moderation action came by, for the audit trail.
    "audit.middleware.AuditPathMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
# DATABASE_URL=postgres://user@host:5432/name switches to PostgreSQL (psycopg 3).
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue instead of
    # one failing with "database is locked" when it upgrades a read lock.
    _db.setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
    _db["CONN_MAX_AGE"] = 0
else:
    _db.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # Under ASGI every REST request runs its view on a thread of its own, so
    # per-thread connections are unbounded: 16 busy clients once made one
    # process hold 98 of PostgreSQL's 100 slots, and the rest of its requests
    # got "too many clients already". Django's psycopg pool caps a process at
    # DB_POOL_MAX_SIZE; a request or a database_sync_to_async call borrows a
    # connection and hands it back when it ends (close_old_connections), and
    # anything beyond the cap waits up to DB_POOL_TIMEOUT seconds, then fails
    # as an OperationalError: 503 / `unavailable`, retryable. Size it so that
    # server processes x DB_POOL_MAX_SIZE stays below max_connections
    # (docs/development.md). 0 turns the pool off, e.g. behind PgBouncer.
    _pool_max = env.int("DB_POOL_MAX_SIZE", default=20)
    if _pool_max > 0:
        _pool_min = env.int("DB_POOL_MIN_SIZE", default=min(2, _pool_max))
        if not 0 <= _pool_min <= _pool_max:
            raise ImproperlyConfigured(
                f"DB_POOL_MIN_SIZE={_pool_min} must be between 0 and DB_POOL_MAX_SIZE={_pool_max}."
            )
        if env.int("CONN_MAX_AGE", default=0):
            # Django refuses persistent connections with a pool; say which setting to drop.
            raise ImproperlyConfigured("CONN_MAX_AGE applies only with the pool off (DB_POOL_MAX_SIZE=0).")
        # The pool keeps the connections; Django hands each back after use.
        _db["CONN_MAX_AGE"] = 0
        # With the pool this makes Django give it psycopg_pool's
        # check_connection: each connection is tested as it is handed out and
        # a dead one (PostgreSQL restarted) replaced, so a restart heals.
        _db["CONN_HEALTH_CHECKS"] = True
        _db["OPTIONS"]["pool"] = {
            "min_size": _pool_min,
            "max_size": _pool_max,
            # Also how long a request waits while PostgreSQL is unreachable
            # before its 503, like connect_timeout without a pool.
            "timeout": env.float("DB_POOL_TIMEOUT", default=5.0),
            # psycopg_pool retries a failed connect with doubling delays for
            # this long (default 5 minutes, so up to minutes of extra downtime
            # after PostgreSQL is back); a shorter span makes the next request
            # start a fresh attempt, so the pool is whole within seconds.
            "reconnect_timeout": 5.0,
        }
    else:
        # One connection per request (per call on the websocket side), closed
        # after it unless CONN_MAX_AGE says otherwise: only safe for a handful
        # of concurrent requests or with an external pooler in front. Health
        # checks replace a connection the server dropped instead of failing
        # the next query.
        _db["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
        _db["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

# --- Channel layer and cache ------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
# Namespaces every Redis key (channel layer, cache, presence), so several
# deployments or test runs can share one Redis.
CHAT_REDIS_PREFIX = env("CHAT_REDIS_PREFIX", default="chat")
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=2000)


def redis_settings(prefix: str) -> tuple[dict, dict]:
    """CHANNEL_LAYERS and CACHES for REDIS_URL under a key prefix."""
    layers = {
        "default": {
            "BACKEND": "common.layers.WaitingRedisChannelLayer",
            "CONFIG": {
                # A pool of at most this many connections that waits when all
                # are busy (common.layers): a burst of joins or disconnects
                # queues instead of losing group_add/discard calls.
                # redis-py 8 times reads out after 5 s by default, exactly
                # channels-redis' blocking-pop wait: an idle socket's receive
                # loop would die every few seconds. Keep well above it.
                "hosts": [{"address": REDIS_URL, "max_connections": REDIS_MAX_CONNECTIONS, "socket_timeout": 15}],
                "prefix": f"{prefix}:asgi",
                # channels-redis queues every message for one process's sockets in a single
                # list; past capacity it drops (sockets then repair from the
                # database, which is slower), so leave room for bursts.
                "capacity": env.int("CHANNEL_CAPACITY", default=20000),
                "expiry": 60,
                "group_expiry": 86400,
            },
        }
    }
    # The cache holds rate-limit counters, which every server process shares.
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"{prefix}:cache",
        }
    }
    if env("CHANNEL_LAYER_BACKEND", default="pubsub") == "pubsub":
        # One PUBLISH per group send, received once by each process that has a
        # socket in the group. At most once, like the list-based layer; the
        # sockets repair drops from the database (messaging.delivery). About
        # twice the fan-out and saturation throughput of "core" on this
        # workload (docs/performance.md), and a killed process leaves no dead
        # channels behind in groups. CHANNEL_LAYER_BACKEND=core selects the
        # list-based layer above.
        layers = {
            "default": {
                "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{prefix}:asgi"},
            }
        }
    return layers, caches


if REDIS_URL:
    CHANNEL_LAYERS, CACHES = redis_settings(CHAT_REDIS_PREFIX)
else:
    # Each process hears every room through one channel (messaging.fanout),
    # so its queue must hold a burst, not the default 100 messages.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 10000}}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Chat limits ------------------------------------------------------------
# "N/S": N messages per S seconds per user, websocket and REST together; "off".
CHAT_RATE_LIMIT = env("CHAT_RATE_LIMIT", default="30/10")
try:
    parse_rate(CHAT_RATE_LIMIT)
except ValueError as exc:  # refuse to start rather than fail every send later
    raise ImproperlyConfigured(str(exc)) from exc
CHAT_MAX_BODY = 4000
CHAT_MAX_FRAME_BYTES = 64 * 1024
CHAT_REPLAY_LIMIT = 500
CHAT_SIGNUP_ENABLED = env.bool("CHAT_SIGNUP_ENABLED", default=True)
# How long a socket holds back an out-of-order message before it fetches the
# missing ones from the database.
CHAT_GAP_WAIT = env.float("CHAT_GAP_WAIT", default=0.25)
# Every socket checks its rooms' last seq this often, so a message whose
# broadcast the channel layer dropped still arrives when nothing follows it.
CHAT_SWEEP_INTERVAL = env.float("CHAT_SWEEP_INTERVAL", default=5.0)
# A socket that sends no frame for this long is closed (daphne's pings keep
# the TCP side honest; this frees sockets whose client has gone quiet).
CHAT_IDLE_TIMEOUT = env.float("CHAT_IDLE_TIMEOUT", default=3600.0)
# Presence entries not refreshed for this long count as offline. With the
# sweep interval on top, a process that died is announced offline within 60 s.
CHAT_PRESENCE_TTL = env.float("CHAT_PRESENCE_TTL", default=45.0)
# Presence changes in a room are gathered this long per process and sent as
# one batch, so a join storm (200 sockets at once) costs one Redis round trip
# and one broadcast per batch instead of one per socket.
CHAT_PRESENCE_BATCH = env.float("CHAT_PRESENCE_BATCH", default=0.25)

# --- Attachments ------------------------------------------------------------
# The largest file one upload may carry (POST /api/rooms/<slug>/attachments/);
# bigger is 413 too_large, refused by Content-Length before the body is read
# where the client sends one (config.upload_limits).
CHAT_MAX_UPLOAD_BYTES = env.int("CHAT_MAX_UPLOAD_BYTES", default=10 * 1024 * 1024)
# Uploads never used in a message are removed after a day: each server process
# sweeps this often (seconds) on a timer (and when someone uploads, at most as
# often), so the promise holds without cron; `manage.py remove_unused_uploads`
# does the same from a scheduler.
CHAT_UPLOAD_SWEEP_INTERVAL = env.float("CHAT_UPLOAD_SWEEP_INTERVAL", default=3600.0)
# Uploads go through Django's storage API: a local folder by default, never
# served directly (every download passes the API's access checks), or an
# S3-compatible bucket in production (config/settings/production.py).
MEDIA_ROOT = env("DJANGO_MEDIA_ROOT", default=str(BASE_DIR / "media"))
STORAGES: dict[str, dict[str, object]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Uploads above this are spooled to a temporary file rather than held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Auth -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (accounts/throttle.py, django-axes): after
# CHAT_LOGIN_FAILURE_LIMIT failed logins for one username from one address,
# that pair is refused, whatever the password, for CHAT_LOGIN_LOCKOUT_MINUTES.
# The counters live in the default cache: Redis, shared by every process, when
# REDIS_URL is set.
CHAT_LOGIN_FAILURE_LIMIT = env.int("CHAT_LOGIN_FAILURE_LIMIT", default=5)
CHAT_LOGIN_LOCKOUT_MINUTES = env.float("CHAT_LOGIN_LOCKOUT_MINUTES", default=15.0)
# How many reverse proxies of ours add to X-Forwarded-For in front of the
# server. 0 (the default) uses the peer address and ignores the header, which
# any client can write; behind one nginx that appends $remote_addr, set 1.
CHAT_TRUSTED_PROXY_COUNT = env.int("CHAT_TRUSTED_PROXY_COUNT", default=0)
AUTHENTICATION_BACKENDS = [
    "accounts.throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "accounts.throttle.LoginThrottleHandler"
AXES_FAILURE_LIMIT = CHAT_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=CHAT_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "accounts.throttle.login_username"
AXES_CLIENT_IP_CALLABLE = "accounts.throttle.client_ip"
# Attempts refused during a lockout do not extend it: it ends when the window
# that started with the locking failure has passed.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A successful login clears that username's and address's failures.
AXES_RESET_ON_SUCCESS = True
# The cache handler keeps nothing in axes' tables; their admin pages would be empty.
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False
SILENCED_SYSTEM_CHECKS = [
    # axes' middleware would replace each login path's answer with its own
    # lockout page; the token endpoint and the login forms answer themselves
    # (429 rate_limited, a form error).
    "axes.W002",
]
if not REDIS_URL:
    # Without Redis the cache is per process: right for the single process
    # that a deployment without REDIS_URL is (it has no shared channel layer
    # either); several processes need REDIS_URL anyway.
    SILENCED_SYSTEM_CHECKS.append("axes.W001")

# --- REST -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Chat API",
    "DESCRIPTION": "Rooms, history and moderation for the chat server. "
    "Realtime traffic goes over the websocket at /ws/chat/ (see docs/protocol.md); "
    "the JSON Schema of its frames is at [/api/ws-schema/](/api/ws-schema/).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and Redoc from the drf-spectacular-sidecar package's static
    # files rather than a CDN, so /api/docs/ works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Fields named "action" and a choice set used twice (reports, audit trail) get one name each.
    "ENUM_NAME_OVERRIDES": {
        "ReportResolutionEnum": "messaging.models.Report.Resolution",
        "AuditActionEnum": "audit.models.AuditEntry.Action",
    },
}

# --- Security headers -------------------------------------------------------
# The pages load only their own scripts, styles and images: no inline script,
# no inline style attribute, no other origin. A script that slipped into the
# page through a rendering bug could neither run inline nor send data away.
# Per-view exceptions use django-csp's decorators (the API docs page, api/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        # data: for small inline icons; blob: so a page can preview a picked
        # file from an object URL. Attachments are served from /api/ (same origin).
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF],
        # 'self' covers ws:// and wss:// to this host in CSP Level 3 browsers
        # (Chromium, Firefox, Safari); tests/web/test_security_browser.py checks it.
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# Django's defaults, stated because the contract relies on them.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
CHAT_PERMISSIONS_POLICY = env(
    "CHAT_PERMISSIONS_POLICY",
    default="accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "payment=(), usb=()",
)

# --- i18n / static ----------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
