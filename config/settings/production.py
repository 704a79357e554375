"""Production: secrets come from the environment and have no defaults."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import STORAGES, env

SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 30)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Uploaded files ---------------------------------------------------------
# DJANGO_STORAGE_BACKEND=s3 keeps attachments in an S3-compatible bucket (AWS
# S3, MinIO, Cloudflare R2, ...) through django-storages (requirements/
# production.txt); "local" (the default) keeps them under MEDIA_ROOT. Either
# way files are never served from the storage directly: every download passes
# the API's access checks. Credentials come from boto3's usual sources
# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the machine's role) and have
# no defaults here; the bucket must not be public.
STORAGE_BACKEND = env("DJANGO_STORAGE_BACKEND", default="local")
if STORAGE_BACKEND == "s3":
    STORAGES = {
        **STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
                "endpoint_url": env("AWS_S3_ENDPOINT_URL", default=None),
                "region_name": env("AWS_S3_REGION_NAME", default=None),
                "location": env("AWS_LOCATION", default=""),
                # No ACL on the objects: they inherit the (private) bucket's policy.
                "default_acl": None,
                # Random names never collide; never overwrite a stored file anyway.
                "file_overwrite": False,
            },
        },
    }
elif STORAGE_BACKEND != "local":
    raise ImproperlyConfigured(f'DJANGO_STORAGE_BACKEND must be "local" or "s3", not {STORAGE_BACKEND!r}.')
