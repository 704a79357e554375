"""Login throttling: 5 failed logins for one username from one address lock that pair out."""

import time
from datetime import timedelta

import pytest
from django.core.cache import caches
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from accounts.throttle import LoginThrottleHandler, client_ip
from tests.api.conftest import assert_error
from tests.factories import PASSWORD, UserFactory

TOKEN_URL = "/api/auth/token/"
WRONG = "not-the-password"
LOCKED_TEXT = "Too many failed logins"


def token(username: str, password: str, address: str = "10.0.0.1", **extra):
    return APIClient().post(
        TOKEN_URL, {"username": username, "password": password}, format="json", REMOTE_ADDR=address, **extra
    )


def fail_token(username: str, times: int = 5, address: str = "10.0.0.1", **extra) -> None:
    for _ in range(times):
        assert_error(token(username, WRONG, address, **extra), 400, "bad_request")


def page_login(client: Client, username: str, password: str, url: str = "/accounts/login/", address: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_token_endpoint_refuses_the_sixth_attempt_even_with_the_right_password(bob):
    fail_token("bob")
    response = token("bob", PASSWORD)
    body = assert_error(response, 429, "rate_limited")
    assert "Too many failed logins" in body["detail"]
    # About the 15 minutes that started with the failure that locked it.
    assert 14 * 60 <= int(response["Retry-After"]) <= 15 * 60


def test_fifth_failure_is_still_an_ordinary_failure(bob):
    fail_token("bob", times=4)
    # The attempt that reaches the limit was checked like any other.
    assert_error(token("bob", WRONG), 400, "bad_request")
    assert_error(token("bob", WRONG), 429, "rate_limited")


def test_login_page_shows_the_lockout_and_does_not_log_in(bob):
    client = Client()
    for _ in range(5):
        response = page_login(client, "bob", WRONG)
        assert response.status_code == 200
        assert LOCKED_TEXT not in response.content.decode()
    response = page_login(client, "bob", PASSWORD)
    assert response.status_code == 200  # the form again, not the redirect of a login
    page = response.content.decode()
    assert LOCKED_TEXT in page and 'role="alert"' in page
    assert "_auth_user_id" not in client.session


def test_one_counter_across_the_page_and_the_token_endpoint(bob):
    fail_token("bob")
    response = page_login(Client(), "bob", PASSWORD)
    assert response.status_code == 200 and LOCKED_TEXT in response.content.decode()


def test_admin_login_is_throttled_the_same_way(alice):
    client = Client()
    for _ in range(5):
        assert page_login(client, "alice", WRONG, url="/admin/login/").status_code == 200
    response = page_login(client, "alice", PASSWORD, url="/admin/login/")
    assert response.status_code == 200 and LOCKED_TEXT in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_another_address_or_another_username_is_unaffected(bob, carol):
    fail_token("bob")
    assert token("bob", PASSWORD, address="10.0.0.2").status_code == 200
    assert token("carol", PASSWORD).status_code == 200
    assert_error(token("bob", PASSWORD), 429, "rate_limited")


def test_usernames_count_case_insensitively(bob):
    for spelling in ("BOB", "Bob", "bOb", "bob", " BOB "):
        token(spelling, WRONG)
    assert_error(token("bob", PASSWORD), 429, "rate_limited")


def test_unknown_usernames_are_throttled_too(db):
    fail_token("nobody")
    assert_error(token("nobody", WRONG), 429, "rate_limited")


def test_lockout_lifts_when_the_window_has_passed(bob, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=1)
    fail_token("bob")
    response = token("bob", PASSWORD)
    assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "1"
    time.sleep(1.3)
    assert token("bob", PASSWORD).status_code == 200


def test_attempts_during_a_lockout_do_not_extend_it(bob, settings):
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)
    fail_token("bob")
    time.sleep(1.0)
    assert_error(token("bob", WRONG), 429, "rate_limited")
    time.sleep(1.3)
    assert token("bob", PASSWORD).status_code == 200


def test_a_successful_login_is_not_a_failure_and_clears_the_count(bob):
    fail_token("bob", times=4)
    assert token("bob", PASSWORD).status_code == 200
    fail_token("bob", times=4)
    assert token("bob", PASSWORD).status_code == 200
    fail_token("bob", times=5)
    assert_error(token("bob", PASSWORD), 429, "rate_limited")


def test_limit_comes_from_the_settings(bob, settings):
    settings.AXES_FAILURE_LIMIT = 2
    fail_token("bob", times=2)
    assert_error(token("bob", PASSWORD), 429, "rate_limited")


def test_forwarded_for_is_ignored_by_default(bob):
    # A client cannot pick a fresh "address" for each attempt by writing the header.
    for n in range(5):
        token("bob", WRONG, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert_error(token("bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99"), 429, "rate_limited")


def test_client_ip_behind_trusted_proxies(settings):
    rf = RequestFactory()
    request = rf.get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7, 10.0.0.5")
    assert client_ip(request) == "10.1.1.1"
    settings.CHAT_TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "10.0.0.5"
    settings.CHAT_TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "203.0.113.7"  # never the client-written 6.6.6.6
    # Fewer hops than proxies: the request did not come through them.
    assert client_ip(rf.get("/", REMOTE_ADDR="10.1.1.1")) == "10.1.1.1"


def test_behind_one_proxy_each_forwarded_client_has_its_own_counter(bob, settings):
    settings.CHAT_TRUSTED_PROXY_COUNT = 1
    fail_token("bob", address="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert_error(token("bob", PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.1"), 429, "rate_limited")
    assert token("bob", PASSWORD, "127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 200


@pytest.mark.redis
def test_counters_are_shared_through_redis(bob, settings):
    """Another process's cache client sees the same lockout (a fresh connection stands in for it)."""
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    fail_token("bob")
    other = caches.create_connection("default")
    try:
        handler = LoginThrottleHandler()
        handler.cache = other
        request = RequestFactory().post(TOKEN_URL, REMOTE_ADDR="10.0.0.1")
        from axes.handlers.proxy import AxesProxyHandler

        AxesProxyHandler.update_request(request)
        assert handler.get_failures(request, {"username": "bob"}) == 5
        assert handler.is_locked(request, {"username": "bob"})
        # Forgetting the count there lifts it here.
        handler.reset_attempts(ip_address="10.0.0.1", username="bob")
    finally:
        other.close()
    assert token("bob", PASSWORD).status_code == 200


def test_test_client_login_without_a_request_still_works(db):
    user = UserFactory(username="erin")
    client = Client()
    assert client.login(username="erin", password=PASSWORD)
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_cache_outage_is_a_clear_refusal_on_every_login_path(bob, alice, monkeypatch):
    """Without the counters nobody is let in unchecked, and nobody gets a 500 page."""
    from axes.helpers import get_cache
    from redis.exceptions import ConnectionError as RedisConnectionError

    def down(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    for name in ("get", "get_many", "set", "add", "incr"):
        # The class of whichever cache is configured: locmem here, Redis in CI.
        monkeypatch.setattr(type(get_cache()), name, down)
    client = Client()
    response = page_login(client, "bob", PASSWORD)
    assert response.status_code == 200
    assert "briefly unavailable" in response.content.decode()
    assert "_auth_user_id" not in client.session
    response = page_login(Client(), "alice", PASSWORD, url="/admin/login/")
    assert response.status_code == 200 and "briefly unavailable" in response.content.decode()
    assert_error(token("bob", PASSWORD), 503, "unavailable")
