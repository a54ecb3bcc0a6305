"""The client-side rate limiter: Stripe-style "N requests per second", bursts allowed."""

from __future__ import annotations

from invoice_source.http import RateLimiter


class FakeClock:
    """A clock that only moves when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def send_times(limiter: RateLimiter, clock: FakeClock, count: int) -> list[float]:
    """When each of ``count`` back-to-back requests was let through."""
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(round(clock.now - 100.0, 6))
    return times


def test_given_a_limit_of_20_per_second_when_60_requests_queue_then_no_second_holds_over_20() -> (
    None
):
    clock = FakeClock()
    limiter = RateLimiter(20, sleep=clock.sleep, clock=clock)

    times = send_times(limiter, clock, 60)

    assert times[:20] == [0.0] * 20, "a burst up to the limit goes at once"
    for index in range(20, 60):
        assert times[index] >= times[index - 20] + 1.0 - 1e-9
    assert times[-1] == 2.0, "the long-run rate is the limit"


def test_given_a_limit_below_one_per_second_when_requests_queue_then_the_window_stretches() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.5, sleep=clock.sleep, clock=clock)

    assert send_times(limiter, clock, 3) == [0.0, 2.0, 4.0]


def test_given_a_429_pause_when_requests_queue_then_all_wait_for_it_and_the_limit_still_holds() -> (
    None
):
    clock = FakeClock()
    limiter = RateLimiter(5, sleep=clock.sleep, clock=clock)
    send_times(limiter, clock, 5)

    limiter.pause(3.0)
    times = send_times(limiter, clock, 6)

    assert times[0] == 3.0
    assert times[5] >= times[0] + 1.0 - 1e-9


def test_given_no_limit_when_requests_queue_then_none_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, sleep=clock.sleep, clock=clock)

    assert send_times(limiter, clock, 50) == [0.0] * 50
    assert clock.sleeps == []
