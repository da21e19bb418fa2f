"""The login throttle's rule (services/user/domain.py)."""
from shop.services.user.domain import LoginLimits, retry_after_s

LIMITS = LoginLimits(max_failures=5, window_ms=300_000)


def test_five_attempts_go_ahead_the_sixth_waits_for_the_window():
    assert [retry_after_s(n, 0, 1_000, LIMITS) for n in range(1, 6)] == [None] * 5
    assert retry_after_s(6, 0, 1_000, LIMITS) == 299
    assert retry_after_s(60, 0, 1_000, LIMITS) == 299  # throttled attempts do not extend the window
    assert retry_after_s(6, 0, 299_999, LIMITS) == 1  # rounded up: never "retry after 0"
    assert retry_after_s(6, 0, 300_000, LIMITS) is None  # the window has passed
