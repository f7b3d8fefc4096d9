"""BlobBudget: room for small blobs held whole, waited for first come first served."""

from __future__ import annotations

import asyncio

import pytest

from mirrorlab.proxy.blobs import BlobBudget

# id, limit, held at the start, then (size, seconds, released after s, amount): whether
# the wait got room, and the bytes in use at the end.
WAITS = [
    ("room-now", 10, 0, 6, 0.0, None, True, 6),
    ("larger-than-the-budget", 10, 0, 11, 1.0, None, False, 0),
    ("times-out", 10, 8, 6, 0.05, None, False, 8),
    ("room-comes", 10, 8, 6, 1.0, (0.02, 8), True, 6),
    ("too-little-comes", 10, 8, 6, 0.1, (0.02, 2), False, 6),
]


@pytest.mark.parametrize(("limit", "held", "size", "seconds", "release", "got", "used"),
                         [w[1:] for w in WAITS], ids=[w[0] for w in WAITS])
def test_wait_for(limit: int, held: int, size: int, seconds: float,
                  release: tuple[float, int] | None, got: bool, used: int) -> None:
    async def scenario() -> tuple[bool, int]:
        budget = BlobBudget(limit)
        assert budget.reserve(held) or held == 0
        if release is not None:
            asyncio.get_running_loop().call_later(release[0], budget.release, release[1])
        result = await budget.wait_for(size, seconds)
        await asyncio.sleep(0.05)
        return result, budget.used

    assert asyncio.run(scenario()) == (got, used)


def test_first_come_first_served() -> None:
    """A waiter that fits is not served before an earlier one that does not; nor does a
    request that does not wait (`reserve`) take room while others wait."""
    async def scenario() -> list[str]:
        budget = BlobBudget(10)
        assert budget.reserve(10)
        order: list[str] = []

        async def wait(name: str, size: int) -> None:
            if await budget.wait_for(size, 1.0):
                order.append(name)

        tasks = [asyncio.create_task(wait("big", 8)), asyncio.create_task(wait("small", 2))]
        await asyncio.sleep(0.01)
        budget.release(4)  # 4 free: "small" fits, but "big" came first
        await asyncio.sleep(0.01)
        assert order == [] and not budget.reserve(1)
        budget.release(6)  # 10 free: "big", then "small"
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["big", "small"]


@pytest.mark.parametrize("woken", [False, True])
def test_a_cancelled_wait_holds_nothing(woken: bool) -> None:
    async def scenario() -> int:
        budget = BlobBudget(10)
        assert budget.reserve(10)
        task = asyncio.create_task(budget.wait_for(5, 1.0))
        await asyncio.sleep(0.01)
        if woken:
            budget.release(10)  # room given to the waiter, which is cancelled at once
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return budget.used

    assert asyncio.run(scenario()) == (0 if woken else 10)
