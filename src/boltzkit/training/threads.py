"""How many CPU threads torch uses for a piece of work.

Small RBM updates (a batch of B rows through a V × H model: B·V·H multiply-adds per matrix
product) gain nothing from a second thread, and when another process holds a core every
parallel region waits for the descheduled thread: 784 × 20 at batch 100 was measured 12×
slower on two threads than on one on a busy 2-core machine (BENCHMARKS.md, section 2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..validation import check_int

#: B·V·H below which an update runs on one thread (784 × 20 × 100 ≈ 2^20.6; 784 × 500 × 100 ≈ 2^25.2)
SINGLE_THREAD_BELOW = 1 << 23


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: leave the setting), then restore it."""
    if n is None:
        yield
        return
    check_int("threads", n, least=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def threads_for_update(rows: int, n_visible: int, n_hidden: int, device: torch.device) -> int | None:
    """1 for CPU updates of fewer than :data:`SINGLE_THREAD_BELOW` multiply-adds per product,
    else None (torch's own setting)."""
    if device.type == "cpu" and rows * n_visible * n_hidden < SINGLE_THREAD_BELOW:
        return 1
    return None
