from __future__ import annotations

import pytest

from anb.worker.backoff import retry_delay


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 10), (2, 20), (3, 40), (6, 300), (40, 300)])
def test_the_delay_doubles_per_attempt_up_to_the_cap_and_never_below_half(
    attempt: int, ceiling: float
) -> None:
    delays = [retry_delay(attempt, base=10, cap=300) for _ in range(200)]
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 100, "jittered, not one value"
