"""Counting host synchronisations without a GPU: the operations that make the host wait for a CUDA device, counted as
they are dispatched (on any device). On a GPU, ``torch.cuda.set_sync_debug_mode`` reports the same events."""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING = {
    "aten._local_scalar_dense": "a tensor read as a Python number (item, bool, int, float, tolist)",
    "aten.nonzero": "nonzero (data-dependent output size)",
    "aten.masked_select": "masked_select (data-dependent output size)",
    "aten.unique_consecutive": "unique (data-dependent output size)",
    "aten._unique2": "unique (data-dependent output size)",
    "aten.unique_dim": "unique (data-dependent output size)",
    "aten.lift_fresh": "a tensor made from host data (a copy to the device, synchronous unless pinned)",
}


class SyncCounter(TorchDispatchMode):
    """Counts, by operation, what would synchronise the host with a CUDA device; also boolean-mask indexing and
    repeat_interleave with tensor repeats, whose output sizes depend on the data."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = f"aten.{func.overloadpacket.__name__}"
        if name in SYNCING:
            self.counts[name] += 1
        elif name == "aten.index" and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]):
            self.counts["aten.index (boolean mask)"] += 1
        elif name == "aten.repeat_interleave" and func._overloadname in ("Tensor", "self_Tensor") and kwargs.get("output_size") is None:
            self.counts["aten.repeat_interleave (tensor repeats)"] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
