"""Peak memory of one measured block: process RSS on CPU, ``max_memory_allocated`` on GPU.

On CPU the peak is sampled: a thread reads the process RSS every millisecond or so while the
block runs. ``ru_maxrss`` would be simpler but is a lifetime maximum, so it cannot tell apart
strategies measured in one process. Before each block, memory that an earlier block freed is
handed back to the OS (``malloc_trim``): otherwise glibc keeps it and the next block's RSS would
include the previous block's peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time

MB = 2**20


def _malloc_trim() -> None:
    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to trim, the peak is only looser
        pass


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mb``; reuse it to keep the max of several blocks."""

    def __init__(self, device: str, interval_s: float = 0.001):
        self.device = device
        self.interval_s = interval_s
        self.mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        import psutil

        _malloc_trim()
        process = psutil.Process()
        self._stop.clear()

        def sample() -> None:
            while not self._stop.is_set():
                self.mb = max(self.mb, process.memory_info().rss / MB)
                time.sleep(self.interval_s)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.mb = max(self.mb, torch.cuda.max_memory_allocated() / MB)
            return
        self._stop.set()
        self._thread.join()
        import psutil

        self.mb = max(self.mb, psutil.Process().memory_info().rss / MB)
