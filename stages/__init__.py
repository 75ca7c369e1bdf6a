"""The pipeline's stages (``python -m stages.<name>``) and the modules they share.

This runs before any stage module, so before torch starts its OpenMP runtime, which reads
``OMP_WAIT_POLICY`` once, when it loads: idle OpenMP threads then sleep instead of spinning. On a
machine where another job uses the CPU, spinning threads take the cores the working ones need
(``python -m benchmarks.busy`` times a training stage beside a CPU-bound job both ways).

Progress bars (tqdm's, under the Trainer, datasets and transformers alike) are drawn on a
terminal only: in a log file each redraw is a line (``TQDM_DISABLE``). Values already set in the
environment are kept.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if not (sys.stderr and sys.stderr.isatty()):
    os.environ.setdefault("TQDM_DISABLE", "1")
