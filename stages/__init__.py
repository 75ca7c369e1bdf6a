"""The pipeline's stages (``python -m stages.<name>``) and the modules they share.

This runs before any stage module, so before torch starts its OpenMP runtime, which reads
``OMP_WAIT_POLICY`` once, when it loads: idle OpenMP threads then sleep instead of spinning. On a
machine where another job uses the CPU, spinning threads take the cores the working ones need
(``python -m benchmarks.busy`` times a training stage beside a CPU-bound job both ways).

Progress bars (tqdm's, under the Trainer, datasets and transformers alike) are drawn on a
terminal only: in a log file each redraw is a line (``TQDM_DISABLE``).

The CPU kernels' instruction set is pinned to AVX2 (``CPU_KERNELS``), so that a run on CPU
computes the same bits on x86-64 machines whatever wider instructions they have. Unpinned,
torch's own kernels and MKL's matrix products take the widest vector instructions the CPU has
(AVX-512 on many servers, AVX2 on most laptops), and those sum floats in another order: over the
demo's 400 training steps the LoRA adapter came out otherwise, and its ROUGE-L moved from 0.345
to 0.333 between two x86-64 machines. Pinned, an AVX-512 Xeon scored what the other machine
scored, to every digit, on the same number of threads (another thread count splits sums
otherwise too: the demo fixes its own, ``demo/run.py``). Both settings are needed: torch's alone,
or MKL's alone, still trains another adapter; oneDNN's (``ONEDNN_MAX_CPU_ISA``) changed nothing.
It costs speed only where a CPU does the heavy work; a GPU's results do not depend on it.
``ATEN_CPU_CAPABILITY=avx512 MKL_ENABLE_INSTRUCTIONS=AVX512`` in the environment unpins them on
an AVX-512 CPU. Only an x86-64 CPU with AVX2 is pinned, never one that lacks it; ARM's kernels
are other ones (expect other bits there).

Values already set in the environment are kept.

At exit the garbage collector's objects are frozen (``gc.freeze``): Python's own finalization
otherwise runs full collections over every object torch, transformers and datasets created when
imported, and that took 1.4 s of every stage process's end on an idle 2-core machine (0.3 s
frozen), paid by each stage of each experiment, on a GPU box too. What is freed at exit is
freed all the same (reference counts); only garbage in reference cycles is left to the OS, as it
would be by any process that ends.
"""

import atexit
import gc
import os
import platform
import sys

CPU_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def has_avx2(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """An x86-64 CPU with AVX2, as Linux lists its flags (elsewhere: not known, so no)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx2" in flags.split()


os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if has_avx2():
    for _name, _value in CPU_KERNELS.items():
        os.environ.setdefault(_name, _value)
if not (sys.stderr and sys.stderr.isatty()):
    os.environ.setdefault("TQDM_DISABLE", "1")

atexit.register(gc.freeze)  # before torch & co. register theirs, so it runs after them
