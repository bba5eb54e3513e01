"""The matrix-product roofline of RBM sampling and training, timed alone.

The speed benchmarks divide the time of these products (and, for the "floor", the uniform
random numbers the Gibbs half-steps must draw from torch's generator) by boltzkit's time for
the same work, measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


class GemmWorkload:
    """Preallocated tensors of a rows × V × H model and the GEMMs an RBM spends them on."""

    def __init__(self, rows: int, v: int, h: int, device: torch.device) -> None:
        self.device = device
        self.x = torch.rand(rows, v, device=device)
        self.w = torch.rand(v, h, device=device)
        self.hid = torch.empty(rows, h, device=device)
        self.vis = torch.empty(rows, v, device=device)
        self.grad = torch.empty(v, h, device=device)
        self.generator = torch.Generator(device).manual_seed(0)

    def sweep(self, draws: bool = False) -> None:
        """One Gibbs sweep: v→h and h→v, 2 GEMMs of 2·rows·V·H flops (+ their uniforms)."""
        torch.mm(self.x, self.w, out=self.hid)
        if draws:
            self.hid.uniform_(generator=self.generator)
        torch.mm(self.hid, self.w.t(), out=self.vis)
        if draws:
            self.vis.uniform_(generator=self.generator)

    def field(self) -> None:
        """One hidden field v→h: 1 GEMM."""
        torch.mm(self.x, self.w, out=self.hid)

    def gradient(self) -> None:
        """Model-side hidden means and the two outer products vᵀμ: 3 GEMMs."""
        self.field()
        torch.mm(self.x.t(), self.hid, out=self.grad)
        self.grad.addmm_(self.vis.t(), self.hid)

    def seconds(self, work: Callable[[], None], repeats: int = 1) -> float:
        """Fastest of ``repeats`` timed calls of ``work``, after one warm-up call."""
        work()
        return min(timed(work, self.device) for _ in range(repeats))


def timed(work: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``work``, with the device's queued work finished (CUDA)."""
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start
