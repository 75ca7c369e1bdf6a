"""The demo's numbers in README.md, written from recorded runs so that they cannot drift.

    python -m demo.readme record [--threads 1 2]   # the demo once per thread count (~3 min each)
    python -m demo.readme write                    # README.md's demo block from the records

``record`` runs ``python -m demo.run --force`` in a scratch folder per thread count, with
``OMP_NUM_THREADS=N`` so that torch computes with N threads, and keeps in
``demo/recorded/threads-<N>.json`` the run's scores record (``stages/records.py``), the
pipeline's wall time, and what the numbers depend on: a digest of the demo's params (the tiny
model's pin included), the torch version, the date. ``write`` renders the block between
README.md's ``demo-numbers`` markers from those files. ``tests/test_demo.py`` renders it again
and compares, and checks that the recorded digest is that of today's demo params: a change to
``params.yaml`` or ``demo/params.yaml`` that would change the demo's results fails the test until
the runs are recorded again. (A change of code that moves the scores is not caught that way:
record again when one does.)

Why two thread counts: with another number of threads torch sums floats in another order, and
over hundreds of training steps the runs part by a few thousandths of ROUGE. The block shows
the largest such difference, so a reader knows which gaps mean nothing.

Why the numbers hold on another machine: the stages pin the CPU kernels' instruction set to AVX2
on x86-64 (``stages.CPU_KERNELS``, ``stages/__init__.py`` says why). The pin is part of the
digest, and each record keeps the pin it ran with, which the block states.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from demo.run import THREADS, demo_params
from stages import CPU_KERNELS
from stages.params import UNDECLARED, Paths
from stages.scoring import HUMAN, HUMAN_ROUGE_DIALOGUES, METRIC_LABELS, SHUFFLED

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "demo" / "recorded"
README = ROOT / "README.md"
START = ("<!-- demo-numbers: written by `python -m demo.readme write` from demo/recorded/; "
         "tests/test_demo.py checks it -->")
END = "<!-- /demo-numbers -->"
SHOWN = (*METRIC_LABELS, SHUFFLED)  # the score table's columns
INVENTED = {"invented_numbers": "inventing a number, time, amount or date", "invented_names": "inventing a name",
            "speaker_errors": "naming a `#PersonN#` with no turn",
            "hit_max_tokens": "cut off at `max_new_tokens` (count)"}


def params_digest() -> str:
    """sha256 of what the demo's results depend on: its params (``UNDECLARED`` sections left out)
    and the CPU kernels' pin."""
    params = {k: v for k, v in demo_params().items() if k not in UNDECLARED}
    return hashlib.sha256(json.dumps({"params": params, "cpu_kernels": CPU_KERNELS}, sort_keys=True)
                          .encode()).hexdigest()


def record(threads: int) -> dict:
    """Run the demo with ``threads`` threads in a scratch folder; what it scored, and how."""
    import torch

    with tempfile.TemporaryDirectory(prefix=f"demo-{threads}-threads-") as scratch:
        workdir = Path(scratch) / "demo-run"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "demo.run", "--workdir", str(workdir), "--force"], cwd=ROOT,
                       env=env, check=True)
        seconds = time.perf_counter() - started
        paths = Paths(**demo_params()["paths"])
        scores = json.loads((workdir / paths.scores_record()).read_text())
    return {"threads": threads, "date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "cpu_kernels": {name: env.get(name) for name in CPU_KERNELS},  # None: not pinned (no AVX2)
            "demo_seconds": round(seconds), "params_sha256": params_digest(), "scores": scores}


def load_records() -> list[dict]:
    runs = sorted((json.loads(p.read_text()) for p in RECORDED.glob("threads-*.json")), key=lambda r: r["threads"])
    if not runs:
        raise SystemExit(f"error: no recorded runs in {RECORDED}: python -m demo.readme record")
    return runs


def fmt(value: float | int | None, key: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}" if key == "bleu" else f"{value:.3f}"


def threads(run: dict) -> str:
    return f"{run['threads']} thread{'s' if run['threads'] > 1 else ''}"


def wrap(text: str) -> list[str]:
    return textwrap.wrap(text, 100, break_on_hyphens=False, break_long_words=False)


def spread(runs: list[dict]) -> tuple[float, str]:
    """The largest difference between two runs of any ROUGE figure shown (BLEU apart: 0-100)."""
    worst, where = 0.0, ""
    for variant in ("base", "lora"):
        for key in (k for k in SHOWN if k != "bleu"):
            values = [r["scores"][variant][key] for r in runs]
            if max(values) - min(values) > worst:
                worst, where = max(values) - min(values), f"{variant} {METRIC_LABELS.get(key, key)}"
    return worst, where


def kernels_note(run: dict) -> str:
    """What the numbers hold for on another machine: the CPU kernels the run was pinned to."""
    pinned = run.get("cpu_kernels") or {}
    if not pinned or None in pinned.values():
        return ("Torch's CPU kernels were not pinned (no AVX2 here): another machine may score other digits "
                "([demo/README.md](demo/README.md#the-same-numbers-on-another-machine)).")
    settings = " ".join(f"`{name}={value}`" for name, value in pinned.items())
    return (f"CPU kernels pinned to AVX2 ({settings}: `stages/__init__.py`), {THREADS} threads (`demo/run.py`): two "
            "x86-64 machines pinned alike scored the same digits; unpinned, or on ARM, expect LoRA ROUGE-L "
            "to move by ~0.03 ([demo/README.md](demo/README.md#the-same-numbers-on-another-machine)).")


def block(runs: list[dict]) -> str:
    """README.md's demo block: the run with the most threads, and the spread between the runs."""
    main = runs[-1]
    scores, variants = main["scores"], ("base", "lora", HUMAN)
    lines = [START,
             "| model | " + " | ".join(METRIC_LABELS.get(k, "ROUGE-L shuffled") for k in SHOWN) + " |",
             "|---|" + "---:|" * len(SHOWN)]
    lines += [f"| {v} | " + " | ".join(fmt(scores[v].get(k), k) for k in SHOWN) + " |" for v in variants]
    lines += ["", *wrap(f"`human` is the first human summary against the others, on the "
                        f"{scores[HUMAN][HUMAN_ROUGE_DIALOGUES]} test dialogues that have several. What the "
                        f"summaries invent ([Reading the scores](#reading-the-scores)):"), "",
              "| share of summaries | base | lora | human |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | " + " | ".join(fmt(scores[v].get(k), k) for v in variants) + " |"
              for k, label in INVENTED.items()]
    gap = {v: scores[v]["rougeL"] - scores[v][SHUFFLED] for v in ("base", "lora")}
    times = ", ".join(f"{r['demo_seconds'] // 60} min {r['demo_seconds'] % 60} s on {threads(r)}"
                      for r in reversed(runs))
    text = (f"ROUGE-L over ROUGE-L shuffled, what reading the dialogue earns: LoRA {gap['lora']:+.3f}, base "
            f"{gap['base']:+.3f}. Recorded {main['date']} with torch {main['torch']} on "
            f"{scores['lora']['dialogues']} test dialogues (`python -m demo.readme record`): the demo's run "
            f"(`python -m demo.run --force`) took {times}.")
    text += " " + kernels_note(main)
    if len(runs) > 1:
        worst, where = spread(runs)
        if worst == 0:
            text += (f" The runs on {' and '.join(threads(r) for r in runs)} scored the same to every digit "
                     f"recorded: torch sums floats in another order with another thread count, which here "
                     f"changed nothing.")
        else:
            others = "; ".join(f"on {threads(r)} LoRA scores ROUGE-L {fmt(r['scores']['lora']['rougeL'], 'rougeL')}"
                               for r in runs[:-1])
            text += (f" The thread count changes the order torch sums floats in: {others} (the tables: "
                     f"{threads(main)}). The largest difference between the runs is {worst:.3f} ({where}): "
                     f"don't read gaps of that size.")
    lines += ["", *wrap(text)]
    return "\n".join([*lines, END])


def rewrite(readme: str, runs: list[dict]) -> str:
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"error: {README.name} has no demo-numbers block ({START[:30]}... {END})")
    return pattern.sub(lambda _: block(runs), readme)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run the demo per thread count and record its scores")
    rec.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    sub.add_parser("write", help="rewrite README.md's demo block from demo/recorded/")
    args = parser.parse_args(argv)
    if args.command == "record":
        if any(n < 1 for n in args.threads):
            parser.error("--threads: counts of at least 1")
        RECORDED.mkdir(exist_ok=True)
        for threads in args.threads:
            result = record(threads)
            (RECORDED / f"threads-{threads}.json").write_text(json.dumps(result, indent=2) + "\n")
            print(f"recorded demo/recorded/threads-{threads}.json: LoRA ROUGE-L "
                  f"{result['scores']['lora']['rougeL']:.4f}, {result['demo_seconds']} s")
    runs = load_records()
    README.write_text(rewrite(README.read_text(encoding="utf-8"), runs), encoding="utf-8")
    print(f"wrote {README.name}'s demo block from {len(runs)} recorded run(s)")


if __name__ == "__main__":
    main()
