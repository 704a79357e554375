"""Test runs (pytest-django sets this module)."""

from .base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Short waits keep the delivery-repair tests quick; behaviour is the same.
CHAT_GAP_WAIT = 0.05
CHAT_SWEEP_INTERVAL = 1.0
CHAT_RATE_LIMIT = "off"
