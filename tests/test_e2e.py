"""The real `dvc` commands on the offline sample, in a temporary git repository.

The project is a copy of conftest's built project (every stage run once, no baseline), where the
full fine-tune baseline is then switched on, and the tests run in file order, each building on
the last.
Training is cut to a few steps: these tests check the pipeline's wiring and DVC's rerun
behaviour, not the model's quality (that is what `make demo` shows).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from stages.params import read_yaml
from tests.conftest import EVERY, STEPS, commit, copy_project, dvc, ran, set_params

RECIPE_STAGES = {"split", "tokenize", "train_lora", "infer@base", "infer@lora", "score", "card"}
BASELINE_STAGES = {"train_baseline@full", "infer_baseline@full"}
VARIANTS = ("base", "lora", "full")
FAITHFULNESS = {"invented_numbers", "invented_names", "speaker_errors", "novel_bigrams"}
METRIC_KEYS = {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "gen_len", "rougeL_shuffled",
               "rouge1_mean_ref", "rouge2_mean_ref", "rougeL_mean_ref", *FAITHFULNESS, "repeated_trigrams",
               "hit_max_tokens", "dialogues"}


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory) -> Path:
    return copy_project(built_project, tmp_path_factory.mktemp("e2e") / "project")


@pytest.fixture(scope="module")
def first_repro(project) -> str:
    """Switch the full fine-tune on (`dvc exp run -S 'baselines=[full]'` does the same)."""
    lock = read_yaml((project / "dvc.lock").read_text())
    assert set(lock["stages"]) == RECIPE_STAGES | {"check_params"}  # the built run: every stage of the recipe
    assert dvc(project, "status", "--json").stdout.strip() == "{}"  # nothing half-run by default
    set_params(project, baselines=["full"])
    result = dvc(project, "repro")
    return result.stdout + result.stderr  # what the terminal shows: DVC's lines, the stages' logs


def test_switching_the_full_fine_tune_on_runs_only_its_stages(project, first_repro):
    assert ran(first_repro) == {*BASELINE_STAGES, "score", "card"}  # the card states the new scores
    locked = set(read_yaml((project / "dvc.lock").read_text())["stages"])
    assert locked == RECIPE_STAGES | BASELINE_STAGES | {"check_params"}
    scores = json.loads((project / "metrics" / "records" / "scores.json").read_text())
    assert set(scores) == {*VARIANTS, "human"}  # the first human summary, scored as the variants are
    assert set(scores["human"]) == METRIC_KEYS | {"rouge_dialogues"}
    for variant in scores.values():
        assert METRIC_KEYS <= set(variant)
        assert all(0 <= variant[k] <= 1 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum", "rougeL_shuffled",
                                                    "rougeL_mean_ref", *FAITHFULNESS))
        assert variant["rougeL_mean_ref"] <= variant["rougeL"]  # the mean of the references, and the best
    assert len({s["dialogues"] for s in scores.values()}) == 1  # every variant on the whole test split
    lora, full = (json.loads((project / "metrics" / "records" / f"train_{v}.json").read_text())
                  for v in ("lora", "full"))
    for train in (lora, full):
        assert train["steps"] == STEPS and train["best_step"] in (EVERY, STEPS)
        assert train["wall_time_s"] > 0 and train["input_tokens_per_second"] > 0 and train["weights_mb"] > 0
    assert (project / "models" / "lora" / "adapter_model.safetensors").is_file()
    assert (project / "models" / "full" / "model.safetensors").is_file()
    # The full fine-tune trains every weight; LoRA only its adapter (the base's weights frozen), and
    # saves only the adapter. (Not "a sliver": the demo's LoRA on every linear layer of a 128-wide
    # model is a third of its size.)
    assert full["trainable_params"] == full["total_params"]
    assert lora["trainable_params"] == lora["total_params"] - full["total_params"] > 0
    assert lora["weights_mb"] < full["weights_mb"] * 1.05 * lora["trainable_params"] / full["total_params"]
    examples = (project / "metrics" / "examples.md").read_text()
    assert examples.count("- **lora**") == examples.count("- **full**") == 5


def test_every_line_it_shows_is_one_event_of_at_most_160_characters(first_repro):
    """One line per event: no params dump at INFO (STAGES_LOG_LEVEL=DEBUG shows them), no dict of
    the Trainer's logs printed under its bar (train_baseline@full trained here)."""
    # DVC's own "To track the changes with git, run: git add <every file>" is not ours (make demo
    # turns it off with core.autostage; a user's repository may want it)
    lines = [line for line in first_repro.splitlines() if not line.startswith("\tgit add ")]
    assert [line for line in lines if len(line) > 160] == []
    assert [line for line in lines if line.lstrip().startswith("{'")] == []
    assert any(re.search(r"stages.tracking INFO step \d+: loss ", line) for line in lines)


def test_second_repro_reruns_nothing(project, first_repro):
    out = dvc(project, "repro").stdout
    assert ran(out) == set()
    assert "didn't change" in out or "up to date" in out.lower()


def test_lora_change_reruns_only_lora_stages(project, first_repro):
    commit(project, "full fine-tune on")
    set_params(project, lora__r=8)
    out = dvc(project, "repro").stdout
    assert ran(out) == {"train_lora", "infer@lora", "score", "card"}  # not base, not the full fine-tune


def test_metrics_diff_between_commits_shows_rouge_and_bleu(project, first_repro):
    commit(project, "lora.r=8")
    table = dvc(project, "metrics", "diff", "HEAD~1", "--all", "--md", "--precision", "4").stdout
    diff = json.loads(dvc(project, "metrics", "diff", "HEAD~1", "--all", "--json").stdout)
    scores = diff["metrics/scores.json"]
    for variant in VARIANTS:
        for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "invented_numbers", "invented_names"):
            assert f"{variant}.{key}" in scores and f"{variant}.{key}" in table
            assert {"old", "new"} <= set(scores[f"{variant}.{key}"])
    # The rest of every row is in the record beside it, which DVC diffs when named
    record = json.loads(dvc(project, "metrics", "diff", "HEAD~1", "--all", "--json", "--targets",
                            "metrics/records/scores.json").stdout)["metrics/records/scores.json"]
    assert {f"lora.{key}" for key in ("rougeL_mean_ref", *FAITHFULNESS, "hit_max_tokens", "dialogues")} <= set(record)
    # base inference did not rerun, so its scores cannot have moved
    assert all(record[f"base.{k}"]["old"] == record[f"base.{k}"]["new"] for k in METRIC_KEYS)
    train = diff["metrics/train_lora.json"]["trainable_params"]
    r = json.loads(dvc(project, "params", "diff", "HEAD~1", "--json").stdout)["params.yaml"]["lora.r"]
    assert train["old"] * r["new"] == train["new"] * r["old"]  # LoRA's weights scale with r
    params = dvc(project, "params", "diff", "HEAD~1", "--md").stdout
    assert "lora.r" in params


def drawn(chart: dict, role: str) -> list[str]:
    """The texts of one role (``title-text``, ``legend-label``, ...) of a chart as Vega draws it:
    the curves' titles are worked out from their files' names when drawn, not written in the spec."""
    import vl_convert

    svg = vl_convert.vegalite_to_svg(chart)
    return re.findall(rf'class="mark-text role-{role}"[^>]*>(?:<[^>]*>)*?<text[^>]*>([^<]*)', svg)


def test_plots_show_draws_loss_curves_and_the_score_comparison(project, first_repro):
    shown = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert not shown.get("errors")
    specs = shown["data"]
    curves = {f"metrics/train_{v}/plots/metrics/{c}.tsv" for v in ("lora", "full")
              for c in ("train/loss", "eval/loss", "train/learning_rate", "train/grad_norm")}
    assert set(specs) == {"loss", "metrics/scores_plot.json", *curves}  # nothing drawn twice
    titles = {plot_id: drawn(spec[0]["content"], "title-text") for plot_id, spec in specs.items()}
    assert all(len(t) == 1 and not re.search(r"/|\.tsv|\.json", t[0]) for t in titles.values()), titles
    assert titles["metrics/train_lora/plots/metrics/eval/loss.tsv"] == ["LoRA: eval loss"]
    assert titles["metrics/train_full/plots/metrics/train/grad_norm.tsv"] == ["full fine-tune: gradient norm"]
    assert drawn(specs["loss"][0]["content"], "legend-label") == ["train", "eval"]

    rows = specs["loss"][0]["content"]["data"]["values"]  # LoRA's train and eval loss, one chart
    assert {r["filename"] for r in rows} == {"train/loss.tsv", "eval/loss.tsv"}  # DVC drops the common prefix
    eval_steps = sorted(int(r["step"]) for r in rows if r["filename"].endswith("eval/loss.tsv"))
    assert eval_steps == [EVERY, STEPS]  # x is the trainer's step
    full_eval = specs["metrics/train_full/plots/metrics/eval/loss.tsv"][0]["content"]["data"]["values"]
    assert sorted(int(r["step"]) for r in full_eval) == [EVERY, STEPS]

    chart = specs["metrics/scores_plot.json"][0]["content"]
    bars = {(r["metric"], r["variant"]): r["score"] for r in chart["data"]["values"]}
    scores = json.loads((project / "metrics" / "records" / "scores.json").read_text())
    shown = (*VARIANTS, "human")  # the first human summary against the others: the ceiling
    assert set(bars) == {(m, v) for m in ("ROUGE-1", "ROUGE-2", "ROUGE-L", "ROUGE-Lsum", "BLEU") for v in shown}
    for v in shown:  # ROUGE drawn on BLEU's 0-100 scale
        assert bars[("ROUGE-L", v)] == pytest.approx(100 * scores[v]["rougeL"], abs=1e-3)
        assert bars[("BLEU", v)] == pytest.approx(scores[v]["bleu"], abs=1e-3)
    assert chart["encoding"]["xOffset"]["field"] == "series" and chart["mark"]["type"] == "bar"

    dvc(project, "plots", "show", "-o", "plots_html")
    html = (project / "plots_html" / "index.html").read_text()
    assert "train_full/plots/metrics/eval/loss.tsv" in html and '"ROUGE-Lsum"' in html


def chromium_or_skip() -> None:
    """Skip where no Chromium is installed (`make setup` installs it as root with apt-get), with
    the reason in the summary; under CI=true a missing Chromium is a failure, never a skip."""
    from review.render_plots import RenderError, chromium

    try:
        chromium()
    except RenderError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{exc} (`make setup` does it as root)")


def test_plots_render_in_headless_chromium(project, first_repro):
    """The page `dvc plots show` writes, drawn by Chromium: the charts must have real pixels in
    the colours of their series (Vega's default palette), not an empty page."""
    import sys

    from PIL import Image

    from tests.conftest import run

    chromium_or_skip()

    dvc(project, "plots", "show", "-o", "plots_html")
    run([sys.executable, "-m", "review.render_plots", "plots_html/index.html", "plots.png"], project)
    image = Image.open(project / "plots.png").convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    count = {rgb: n for n, rgb in colours}
    # bars of base, lora, full: tableau10's first three colours
    for rgb in ((0x4C, 0x78, 0xA8), (0xF5, 0x85, 0x18), (0xE4, 0x57, 0x56)):
        assert count.get(rgb, 0) > 200, f"no bars drawn in {rgb}"
    assert sum(n for rgb, n in count.items() if rgb != (255, 255, 255)) > 0.02 * image.width * image.height
    # cut to the page: a window sized for one chart per row left 56 % of the picture's rows blank
    blank = sum(all(image.getpixel((x, y)) == (255, 255, 255) for x in range(0, image.width, 4))
                for y in range(image.height))
    assert blank < 0.2 * image.height, f"{blank} of {image.height} rows blank"


def test_plots_diff_shows_both_revisions(project, first_repro):
    specs = json.loads(dvc(project, "plots", "diff", "HEAD~1", "--json").stdout)["data"]
    revs = {r["rev"] for r in specs["metrics/scores_plot.json"][0]["content"]["data"]["values"]}
    assert revs == {"HEAD~1", "workspace"}


def test_missing_chromium_skips_with_the_reason_except_under_ci(monkeypatch, tmp_path):
    from review.render_plots import RenderError

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no chromium on PATH.*make setup"):
        chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(RenderError, match="no chromium on PATH"):
        chromium_or_skip()
