"""`/healthz` (the process runs) and `/readyz` (the database and the channel layer answer)."""

import socket

import pytest
from django.db import OperationalError, connections

pytestmark = [pytest.mark.django_db(transaction=True)]


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_is_200_without_authentication(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_when_both_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"database": "ok", "channel_layer": "ok"}


def test_readyz_is_503_naming_a_dead_channel_layer(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{dead_port()}/0"]},
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"] == "ok"
    assert body["channel_layer"].startswith("error: ")


def test_readyz_is_503_naming_a_dead_database(client, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise OperationalError("connection refused")

    # The probe opens its own connection on a pool thread; fail every connection of this backend.
    monkeypatch.setattr(type(connections["default"]), "ensure_connection", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "error: OperationalError: connection refused"
    assert response.json()["channel_layer"] == "ok"
    monkeypatch.undo()
    assert client.get("/readyz").status_code == 200


def test_readyz_with_no_channel_layer(client, settings):
    settings.CHANNEL_LAYERS = {}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["channel_layer"] == "error: no channel layer configured"
