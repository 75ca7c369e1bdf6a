"""Speed benchmarks of the pipeline's training and inference paths against the obvious ways.

Not part of the pipeline and not part of the test suite's pass/fail: run them by hand.

    python -m benchmarks.run [--shape tiny|base|both] [--out benchmarks/results]   # CPU or GPU, side by side
    python -m benchmarks.gpu [--tiny]                                              # flan-t5-base shape, bf16, MFU

See the "Benchmarks" section of README.md for what each number means.
"""
