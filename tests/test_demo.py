"""The offline demo's pieces: params overlay, the committed tiny model, the score table."""

from __future__ import annotations

import json

import pytest

from demo import make_tiny_t5
from demo.run import (
    NEXT_STEPS,
    THREADS,
    autostage,
    commit,
    deep_merge,
    demo_params,
    notes,
    repro,
    score_table,
    stage_env,
    sync,
)
from stages import modeling
from stages.errors import ParamsError
from stages.params import parse_params, read_yaml
from tests.conftest import ROOT, git


def test_overlay_only_overrides_existing_keys():
    base = {"train": {"learning_rate": 1e-3, "max_steps": 1000}, "seed": 1}
    assert deep_merge(base, {"train": {"max_steps": 400}}) == {
        "train": {"learning_rate": 1e-3, "max_steps": 400}, "seed": 1}
    with pytest.raises(ParamsError, match="train.max_step: not a key of params.yaml"):
        deep_merge(base, {"train": {"max_step": 400}})


def test_demo_params_are_the_recipe_with_stated_overrides():
    merged = parse_params(demo_params())
    recipe = parse_params(read_yaml((ROOT / "params.yaml").read_text()))
    overridden = read_yaml((ROOT / "demo" / "params.yaml").read_text())
    # The recipe's LoRA (rank, alpha, task), on every linear layer and without dropout: the two
    # departures demo/params.yaml states, and no other.
    departures = {"target_modules": recipe.lora.target_modules, "dropout": recipe.lora.dropout}
    assert merged.lora.model_copy(update=departures) == recipe.lora
    assert set(recipe.lora.target_modules) < set(merged.lora.target_modules)
    assert merged.model.name == "demo/tiny-t5" and merged.data.source == "file"
    assert merged.baselines == recipe.baselines  # the overlay leaves them to params.yaml ...
    assert parse_params(demo_params(baselines=[])).baselines == []  # ... and `make demo` to --baselines
    assert parse_params(demo_params(baselines=["full"])).baselines == ["full"]
    for section, values in overridden.items():  # every override took effect
        for key, value in values.items() if isinstance(values, dict) else ():
            assert getattr(getattr(merged, section), key) == value, f"{section}.{key}"


def test_committed_tiny_model_matches_its_pin_and_shape():
    merged = parse_params(demo_params())
    resolved = modeling.resolve(merged.model, merged.hub)  # raises if the folder differs from the pin
    config = json.loads((resolved.folder / "config.json").read_text())
    assert config["feed_forward_proj"] == "gated-gelu" and config["scale_decoder_outputs"] is False
    assert {config[k] for k in ("num_layers", "num_decoder_layers")} == {2}
    size = sum(p.stat().st_size for p in resolved.folder.iterdir())
    assert size < 8 * 2**20  # a few MB: it lives in git


def test_tiny_model_script_is_deterministic(tmp_path):
    args = ["--steps", "3", "--n-dialogues", "60", "--vocab-size", "300", "--next-every", "2"]
    make_tiny_t5.main([*args, "--out", str(tmp_path / "a")])
    make_tiny_t5.main([*args, "--out", str(tmp_path / "b")])
    assert modeling.folder_hash(tmp_path / "a") == modeling.folder_hash(tmp_path / "b")


def test_committed_model_card_is_what_its_command_writes():
    """The card is part of the folder's pin: the command it records must write it again, word
    for word (only the final loss needs the training run)."""
    import re
    import shlex

    card = (ROOT / "demo" / "tiny-t5" / "README.md").read_text()
    command = re.search(r"Made by `python -m demo.make_tiny_t5 ([^`]*)`", card).group(1)
    args = make_tiny_t5.arg_parser().parse_args(shlex.split(command))
    loss = float(re.search(r"final pretraining loss ([0-9.]+)\.", card).group(1))
    assert make_tiny_t5.model_card(args, 1_322_240, 1100, 3000, loss) == card
    gap = make_tiny_t5.model_card(make_tiny_t5.arg_parser().parse_args(["--objective", "next+gap"]),
                                  1, 1, 1, 0.0)
    assert "take the tasks next, gap in turn" in gap and "PEGASUS" in gap and "`denoise`" not in gap


def test_text_infill_masks_spans_with_one_token_and_asks_for_the_whole_text():
    import random

    ids, mask, eos = list(range(10, 110)), 5, 1
    source, target = make_tiny_t5.text_infill(ids, random.Random(0), mask, eos, noise=0.3)
    assert target == ids + [eos]  # the decoder writes the whole input back: it learns to copy
    assert source[-1] == eos and mask in source
    kept = [t for t in source[:-1] if t != mask]
    assert kept == sorted(kept) and set(kept) <= set(ids)  # what is left stays in order
    assert all(not (a == b == mask) for a, b in zip(source, source[1:]))  # one mask per span
    assert 70 <= len(kept) <= 85  # up to 30 % of the tokens masked (spans may overlap)


def test_next_turn_gives_the_turns_so_far_and_asks_for_the_next_one():
    import random

    turns, eos = [[10, 11], [20, 21, 22], [30], [40, 41]], 1
    for seed in range(20):
        source, target = make_tiny_t5.next_turn(turns, random.Random(seed), eos, window=4)
        k = next(i for i, t in enumerate(turns) if target == t + [eos])  # exactly one whole turn
        assert k >= 1 and source == [t for turn in turns[:k] for t in turn][-4:] + [eos]


def test_gap_turns_masks_the_turns_most_like_the_rest_and_asks_for_them():
    import random

    # Turn 1 shares the most words with the others, turn 3 none: 30 % of 4 turns is one gap.
    turns, mask, eos = [[10, 11, 12], [10, 11, 20, 21], [20, 21, 30], [40, 41]], 5, 1
    seen = set()
    for seed in range(30):
        source, target = make_tiny_t5.gap_turns(turns, random.Random(seed), mask, eos, window=100)
        assert source.count(mask) == 1 and source[-1] == eos and target[-1] == eos
        gap = source.index(mask)
        restored = source[:gap] + target[:-1] + source[gap + 1:-1]  # the gap filled back in
        start = next(i for i in range(len(turns)) if restored == [t for turn in turns[i:] for t in turn])
        seen.add(start)
        if start == 0:  # the whole dialogue: the principal turn is the gap
            assert target == turns[1] + [eos]
    assert 0 in seen and len(seen) > 1  # runs start at random turns
    # A window too small for two turns still yields an example, never an empty one.
    source, target = make_tiny_t5.gap_turns(turns, random.Random(0), mask, eos, window=3)
    assert len(source) > 1 and len(target) > 1


def test_objectives_keep_the_committed_task_order():
    """``denoise+next`` with --next-every 2 (the committed base) alternates infilling and a next turn
    in each batch; the order decides the random stream, and so the weights."""
    assert make_tiny_t5.tasks("denoise+next", 2) == ("infill", "next")
    assert make_tiny_t5.tasks("denoise+next", 4) == ("infill", "infill", "infill", "next")
    assert make_tiny_t5.tasks("mix", 2) == ("infill", "span")


def test_turns_tokenize_to_the_dialogue():
    """next_turn's inputs are the dialogue's own tokens: the turns, tokenized one by one, make
    exactly the tokens of the whole dialogue (what text infilling sees)."""
    tokenizer = modeling.load_tokenizer(ROOT / "demo" / "tiny-t5")
    for dialogue in make_tiny_t5.corpus(20, 1234):
        turns = make_tiny_t5.turn_ids(tokenizer, dialogue)
        assert len(turns) == dialogue.count("\n") + 1
        assert [t for turn in turns for t in turn] == tokenizer(dialogue)["input_ids"][:-1]


def test_tiny_model_pretrains_on_dialogues_only():
    dialogues = make_tiny_t5.corpus(40, 1234)
    sample = {json.loads(line)["dialogue"] for line in (ROOT / "data/sample/dialogsum_sample.jsonl").open()}
    assert dialogues and not sample & set(dialogues)  # another seed: none of the demo's data


def test_tiny_tokenizer_keeps_every_character_of_the_sample():
    tokenizer = modeling.load_tokenizer(ROOT / "demo" / "tiny-t5")
    rows = [json.loads(line) for line in (ROOT / "data/sample/dialogsum_sample.jsonl").open()][:300]
    for text in [r["dialogue"] for r in rows] + [r["summary"] for r in rows]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        decoded = tokenizer.decode(ids, skip_special_tokens=True)
        assert decoded.split() == text.split()  # every word back; only whitespace may differ


def test_score_table_shows_both_variants_the_gain_the_reading_gap_and_the_human_row():
    table = score_table({
        "base": {"rougeL": 0.02, "bleu": 0.5, "rougeL_shuffled": 0.02, "invented_names": 0.2, "novel_bigrams": 0.3,
                 "hit_max_tokens": 0},
        "lora": {"rougeL": 0.31, "bleu": 9.0, "rougeL_shuffled": 0.12, "invented_names": 0.5, "novel_bigrams": 0.8,
                 "hit_max_tokens": 7},
        "human": {"rougeL": 0.4, "bleu": None, "rougeL_shuffled": 0.1, "invented_names": 0.01, "novel_bigrams": 0.6,
                  "hit_max_tokens": None}})
    assert table.splitlines()[0] == "| metric | base | lora | human | lora - base |"
    # each metric says which way is better: ▲ higher, ▼ lower, nothing where neither is
    assert "| rougeL ▲ | 0.0200 | 0.3100 | 0.4000 | +0.2900 |" in table
    assert "| bleu ▲ | 0.5000 | 9.0000 | — | +8.5000 |" in table
    assert "| rougeL_shuffled | 0.0200 | 0.1200 | 0.1000 | +0.1000 |" in table
    assert "| rougeL - rougeL_shuffled ▲ | 0.0000 | 0.1900 | 0.3000 | +0.1900 |" in table
    assert "| invented_names ▼ | 0.2000 | 0.5000 | 0.0100 | +0.3000 |" in table
    assert "| novel_bigrams | 0.3000 | 0.8000 | 0.6000 | +0.5000 |" in table
    assert "| hit_max_tokens ▼ | 0 | 7 | — | +7 |" in table


def test_the_tables_notes_say_what_the_counts_are_and_what_to_change():
    scores = {"base": {"dialogues": 145, "hit_max_tokens": 0}, "lora": {"dialogues": 145, "hit_max_tokens": 29},
              "human": {"dialogues": 145, "rouge_dialogues": 21}}
    said = notes(scores, 64, 171)
    assert said[0].startswith("▲ higher is better, ▼ lower is better")
    assert said[2] == ("ROUGE and BLEU: base, lora over 145 test dialogues, human over the 21 of them with a second "
                       "human summary (the first scored against the others).")
    assert said[3].startswith("145 test dialogues: the split's 171 test rows hold one row per human summary")
    assert said[4:] == ["29 of 145 lora summaries used all generate.max_new_tokens (64) and were cut off: "
                        "try dvc exp run -S generate.max_new_tokens=128"]
    assert all(len(line) <= 160 for line in said)
    assert len(notes({**scores, "lora": {"dialogues": 145, "hit_max_tokens": 0}}, 64, 145)) == 3


def test_the_demo_project_is_on_main_and_its_results_are_committed(tmp_path):
    """demo-run/ is a baseline: on `main` whatever git's default branch (an old demo-run on
    `master` is renamed), and what `dvc repro` left is committed, so `dvc metrics diff main`
    and `python -m review.report` (default --rev main) have a revision to compare with."""
    workdir = tmp_path / "demo-run"
    workdir.mkdir()
    git(workdir, "init", "-q", "-b", "master")
    sync(ROOT, workdir, demo_params())
    assert git(workdir, "branch", "--show-current").strip() == "main"
    assert git(workdir, "log", "--format=%s").split("\n")[0] == "make demo: the project"
    (workdir / "metrics").mkdir()
    (workdir / "metrics" / "records").mkdir(parents=True, exist_ok=True)
    (workdir / "metrics" / "records" / "scores.json").write_text("{}\n")  # what `dvc repro` writes, in short
    commit(workdir, "make demo: results of dvc repro")
    commit(workdir, "nothing new: no commit")
    assert git(workdir, "log", "--format=%s").split("\n")[:2] == [
        "make demo: results of dvc repro", "make demo: the project"]
    assert git(workdir, "status", "--porcelain").strip() == ""
    sync(ROOT, workdir, demo_params())  # a second `make demo`: no second project commit
    assert git(workdir, "log", "--format=%s").count("make demo: the project") == 1
    steps = NEXT_STEPS.format(workdir="demo-run", venv="../.venv", threads=THREADS)
    assert [line.split("#")[0].strip() for line in steps.splitlines()[2:]] == [
        "dvc exp run -S lora.r=8", "dvc metrics diff main", "python -m review.report"]


def test_the_demo_shows_no_dvc_hint_it_has_no_use_for(tmp_path, capsys):
    """No "To track the changes with git, run: ..." (DVC stages its changes itself in the demo's
    copy, which the demo commits) and no "Use `dvc push`" (the demo has no remote)."""
    import subprocess
    import sys

    workdir = tmp_path / "demo-run"
    workdir.mkdir()
    sync(ROOT, workdir, demo_params())
    autostage(workdir)
    config = subprocess.run([sys.executable, "-m", "dvc", "config", "core.autostage"], cwd=workdir,
                            capture_output=True, text=True)
    assert config.stdout.strip() == "true", config.stderr
    assert "config.local" not in git(workdir, "ls-files", ".dvc")  # the copy's own setting, not committed
    printing = "print('Running stage split'); print('Use `dvc push` to send your updates to remote storage.')"
    assert repro([sys.executable, "-c", printing], workdir) == 0
    assert capsys.readouterr().out == "Running stage split\n"


def test_the_readmes_demo_numbers_are_the_recorded_runs():
    """README.md's demo tables are rendered from demo/recorded/ (what `make demo` printed, once
    per thread count), and those runs were made with today's demo params."""
    from demo import readme

    runs = readme.load_records()
    assert [r["threads"] for r in runs] == [1, 2]  # the spread between thread counts is shown
    assert all(r["params_sha256"] == readme.params_digest() for r in runs), \
        "the demo's params changed since its runs were recorded: python -m demo.readme record"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.rewrite(text, runs) == text, "README.md's demo block is stale: python -m demo.readme write"
    assert readme.block(runs) in text


def test_the_demo_runs_on_the_same_thread_count_everywhere_unless_told_otherwise(monkeypatch):
    """Another thread count sums floats in another order and trains another adapter: the demo's
    stages, and the experiments its next steps print, run on THREADS threads on any machine."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    assert {stage_env()[n] for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")} == {THREADS}
    assert f"export OMP_NUM_THREADS={THREADS} MKL_NUM_THREADS={THREADS}" in NEXT_STEPS.format(
        workdir="demo-run", venv="../.venv", threads=THREADS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # demo.readme records a run per thread count so
    assert stage_env()["OMP_NUM_THREADS"] == "1"
