"""``make demo``: the real pipeline, offline, on CPU, in minutes.

    python -m demo.run [--workdir demo-run] [--force] [--baselines full]

Runs the project's own ``dvc.yaml`` with ``dvc repro`` on the bundled sample
(``data/sample/``) and the tiny pretrained T5 (``demo/tiny-t5``), then prints base vs LoRA scores,
with the human summaries' row beside them (what a summary invents, ``stages/faithfulness.py``),
each metric marked with the direction that is better, and notes on what the counts mean and on
summaries cut off at ``generate.max_new_tokens``.
``--baselines full`` adds the full fine-tune baseline (params ``baselines``), as
``dvc exp run -S 'baselines=[full]'`` would in the real project.

How the demo overrides params, and why this way: it runs in a scratch copy of the project
(``demo-run/``, git-ignored) whose ``params.yaml`` is the project's ``params.yaml`` with the
overrides of ``demo/params.yaml`` applied. So the user's ``params.yaml``, workspace and DVC
experiments are never touched (``dvc exp run -S`` would rewrite ``params.yaml``; ``--temp`` sees
only committed files, so it would silently demo stale code), the stages and their dependencies
are exactly the real ones, and a second ``make demo`` reruns only what changed since the last.
The override file may only override keys that exist, and the merged params are validated by the
same schema as ``params.yaml``. Inside ``demo-run/`` every DVC command works as usual
(``dvc metrics show``, ``dvc plots show``, ``dvc exp run -S lora.r=8``): the copy is a git
repository on ``main`` whose last commit holds the run's ``dvc.lock``, metrics and plots, so
``dvc metrics diff main`` and ``python -m review.report`` compare an experiment with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from stages.params import ParamsError, Paths, parse_params, read_yaml
from stages.scoring import (
    DIALOGUES,
    HIGHER_IS_BETTER,
    HIT_MAX,
    HUMAN,
    HUMAN_ROUGE_DIALOGUES,
    LOWER_IS_BETTER,
    SCORE_LABELS,
    SHUFFLED,
)

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ROOT / "demo" / "params.yaml"


def deep_merge(base: dict, overrides: dict, where: str = "") -> dict:
    """``base`` with ``overrides`` applied; an override of a key ``base`` lacks is an error."""
    merged = dict(base)
    for key, value in overrides.items():
        dotted = f"{where}{key}"
        if key not in base:
            raise ParamsError(f"{OVERRIDES.relative_to(ROOT)}: {dotted}: not a key of params.yaml")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merged[key] = deep_merge(base[key], value, f"{dotted}.")
        else:
            merged[key] = value
    return merged


def demo_params(root: Path = ROOT, baselines: list[str] | None = None) -> dict:
    base = read_yaml((root / "params.yaml").read_text(encoding="utf-8"))
    merged = deep_merge(base, read_yaml(OVERRIDES.read_text(encoding="utf-8")))
    if baselines is not None:
        merged["baselines"] = baselines
    parse_params(merged, "params.yaml + demo/params.yaml")  # same schema, same errors
    return merged


def project_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files: the working tree as the user sees it."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                         check=True, capture_output=True, text=True).stdout
    return [f for f in out.split("\0") if f and (root / f).is_file()]


def sync(root: Path, workdir: Path, params: dict) -> None:
    """Make ``workdir`` a copy of the project's files, with the demo's params."""
    for name in project_files(root):
        source, target = root / name, workdir / name
        if not target.is_file() or target.read_bytes() != source.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    from ruamel.yaml import YAML

    with (workdir / "params.yaml").open("w", encoding="utf-8") as f:
        f.write("# Written by demo/run.py: params.yaml with demo/params.yaml's overrides.\n")
        YAML(typ="safe", pure=True).dump(params, f)
    if not (workdir / ".git").exists():
        subprocess.run(["git", "init", "-q"], cwd=workdir, check=True)
    # On `main`, whatever git's default: the review commands compare with `main` by default.
    subprocess.run(["git", "branch", "-M", "main"], cwd=workdir, check=True)
    if subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=workdir,
                      capture_output=True).returncode != 0:
        commit(workdir, "make demo: the project")  # DVCLive and `dvc exp` need a commit


def autostage(workdir: Path) -> None:
    """DVC stages what it changed itself in ``workdir`` (the demo commits it), instead of ending
    every run with "To track the changes with git, run: git add ...". In ``.dvc/config.local``:
    git-ignored, this copy's setting only."""
    local = workdir / ".dvc" / "config.local"
    if not local.exists():
        local.write_text("[core]\n    autostage = true\n", encoding="utf-8")


def commit(workdir: Path, message: str) -> None:
    """Commit everything in ``workdir`` that git does not ignore (nothing when nothing changed)."""
    git = ["git", "-c", "user.name=demo", "-c", "user.email=demo@localhost"]
    subprocess.run([*git, "add", "-A"], cwd=workdir, check=True)
    if subprocess.run(["git", "diff", "--cached", "--quiet"], cwd=workdir).returncode != 0:
        subprocess.run([*git, "commit", "-qm", message], cwd=workdir, check=True)


# The demo's thread count. With another number of threads torch and MKL split their sums
# otherwise, and 400 training steps later the adapter differs: with the CPU kernels pinned
# (stages/__init__.py), LoRA ROUGE-L 0.340 on 1 thread, 0.360 on 2. So every machine runs the demo
# on 2 threads, and scores what demo/recorded/ holds; a model this small gains little from more.
THREADS = "2"

# What to try next, printed after the scores; each runs as printed (tests/test_demo_run.py).
NEXT_STEPS = """\
Next, an experiment on the demo's {threads} threads, reviewed against the demo's committed run (branch main):
  cd {workdir} && source {venv}/bin/activate && export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}
  dvc exp run -S lora.r=8     # retrains LoRA at rank 8: train_lora, infer@lora, score rerun
  dvc metrics diff main       # what it changed in the scores and the cost
  python -m review.report     # the pull-request report: verdict, intervals, changed outputs"""


def stage_env() -> dict:
    """The environment the stages run in: offline, and this interpreter's ``python`` first."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", DVC_NO_ANALYTICS="1",
               TOKENIZERS_PARALLELISM="false")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # THREADS, unless the caller chose
        env.setdefault(name, THREADS)
    # Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads
    # slowed a training step from 0.2 s to 4 s.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# What `dvc repro` says after every run that changed something: the demo has no remote to push to.
NOT_SHOWN = {"Use `dvc push` to send your updates to remote storage."}


def repro(command: list[str], workdir: Path) -> int:
    """Run ``command`` (``dvc repro``) in ``workdir``: its stdout line by line, less ``NOT_SHOWN``
    (stderr, the stages' logs and bars, as it comes); its exit status."""
    with subprocess.Popen(command, cwd=workdir, env=stage_env(), stdout=subprocess.PIPE, text=True,
                          bufsize=1) as process:
        for line in process.stdout:
            if line.strip() not in NOT_SHOWN:
                sys.stdout.write(line)
                sys.stdout.flush()
    return process.returncode


def cell(value: float | int | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:+,}" if signed else f"{value:,}"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


GAP = "rougeL - rougeL_shuffled"  # what reading the dialogue earns: higher is better


def direction(metric: str) -> str:
    """'▲' where higher is better, '▼' where lower is, '' where neither (stages/scoring.py)."""
    return "▲" if metric in (*HIGHER_IS_BETTER, GAP) else "▼" if metric in LOWER_IS_BETTER else ""


def score_table(scores: dict) -> str:
    """Every figure of the scores record (stages/records.py) per variant (the human row as a column, the ceiling), and
    LoRA's gain over base; each metric marked with the direction that is better. After ROUGE-L
    shuffled, the row that tells reading from guessing: ROUGE-L own minus ROUGE-L against another
    dialogue's references."""
    variants = list(scores)
    rows: dict[str, list] = {}
    for key in (k for k in SCORE_LABELS if any(k in s for s in scores.values())):
        rows[key] = [scores[v].get(key) for v in variants]
        if key == SHUFFLED:
            rows[GAP] = [None if s.get("rougeL") is None or s.get(SHUFFLED) is None else s["rougeL"] - s[SHUFFLED]
                         for s in scores.values()]
    lines = ["| metric | " + " | ".join(variants) + " | lora - base |",
             "|---|" + "---:|" * (len(variants) + 1)]
    for metric, values in rows.items():
        lora, base = values[variants.index("lora")], values[variants.index("base")]
        delta = None if lora is None or base is None else lora - base
        name = f"{metric} {direction(metric)}".strip()
        lines.append(f"| {name} | " + " | ".join(cell(v) for v in values) + f" | {cell(delta, signed=True)} |")
    return "\n".join(lines)


def notes(scores: dict, max_new_tokens: int, test_rows: int | None) -> list[str]:
    """What the table's counts mean, and what to change where summaries were cut off."""
    models = [v for v in scores if v != HUMAN]
    dialogues = scores[models[0]][DIALOGUES]
    lines = ["▲ higher is better, ▼ lower is better, no mark: neither (novel_bigrams: how abstractive; "
             "gen_len: length in tokens).",
             "rougeL_shuffled: ROUGE-L against another dialogue's human summaries; its gap to rougeL is what "
             "reading the dialogue earns.",
             f"ROUGE and BLEU: {', '.join(models)} over {dialogues} test dialogues"]
    if HUMAN in scores:
        lines[-1] += (f", human over the {scores[HUMAN].get(HUMAN_ROUGE_DIALOGUES)} of them with a second "
                      "human summary (the first scored against the others).")
    if test_rows is not None and test_rows != dialogues:
        lines.append(f"{dialogues} test dialogues: the split's {test_rows} test rows hold one row per human "
                     "summary, and a dialogue is scored once, against all of its summaries.")
    for variant in models:
        cut = scores[variant].get(HIT_MAX) or 0
        if cut:
            lines.append(f"{cut} of {dialogues} {variant} summaries used all generate.max_new_tokens "
                         f"({max_new_tokens}) and were cut off: try dvc exp run -S "
                         f"generate.max_new_tokens={2 * max_new_tokens}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(ROOT / "demo-run"), help="scratch project (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="rerun every stage (dvc repro --force)")
    parser.add_argument("--baselines", nargs="*", choices=["full"], default=[],
                        help="baselines to train and score beside LoRA (default: none)")
    args = parser.parse_args(argv)
    try:
        params = demo_params(baselines=args.baselines)
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sync(ROOT, workdir, params)
    autostage(workdir)
    command = [sys.executable, "-m", "dvc", "repro", *(["--force"] if args.force else [])]
    if repro(command, workdir) != 0:
        sys.exit(f"error: `dvc repro` failed in {workdir}")
    # The run is the baseline: dvc.lock, metrics and plots committed on main, so an experiment
    # has something to be compared with and never overwrites results no commit holds.
    commit(workdir, "make demo: results of dvc repro")
    paths = Paths(**params["paths"])
    scores = json.loads((workdir / paths.scores_record()).read_text())
    split = json.loads((workdir / paths.split_record()).read_text())
    print(f"\nOffline demo finished in {time.perf_counter() - started:.0f} s ({workdir}):\n")
    print(score_table(scores))
    print("\n".join(["", *notes(scores, params["generate"]["max_new_tokens"], split["test"]["rows"])]))
    print(f"\nSide by side: {workdir / params['paths']['examples']}\n")
    print(NEXT_STEPS.format(workdir=os.path.relpath(workdir), venv=os.path.relpath(Path(sys.prefix), workdir),
                            threads=THREADS))


if __name__ == "__main__":
    main()
