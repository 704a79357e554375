import pytest

from common.errors import RateLimited
from common.ratelimit import Rate, parse_rate, rate_limit_hit


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30/10", Rate(30, 10)), (" 5/1 ", Rate(5, 1)), ("off", None), ("OFF", None), ("", None)],
)
def test_parse_rate(value, expected):
    assert parse_rate(value) == expected


@pytest.mark.parametrize("value", ["30", "a/b", "0/10", "10/0", "1/2/3"])
def test_parse_rate_rejects_nonsense(value):
    with pytest.raises(ValueError, match="CHAT_RATE_LIMIT"):
        parse_rate(value)


def test_budget_per_user_then_retry_after(settings):
    settings.CHAT_RATE_LIMIT = "3/60"
    for _ in range(3):
        rate_limit_hit(user_id=1)
    rate_limit_hit(user_id=2)  # another user's budget is separate
    with pytest.raises(RateLimited) as info:
        rate_limit_hit(user_id=1)
    assert 1 <= info.value.retry_after <= 60
    assert info.value.code == "rate_limited" and info.value.status == 429


def test_off_never_limits(settings):
    settings.CHAT_RATE_LIMIT = "off"
    for _ in range(1000):
        rate_limit_hit(user_id=1)
