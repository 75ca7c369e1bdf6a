"""card: ``{paths.models}/lora``, ``metrics/records/{scores,train_lora}.json`` ->
``{paths.models}/lora-adapter``: the adapter as it ships, with its model card.

Reads params ``paths``, ``model``, ``data``, ``lora``, ``train``, ``prompt``, ``generate``.

The ``lora-adapter`` artifact (``dvc artifacts get <repo> lora-adapter``) is this folder: the
adapter's files and their ``SHA256SUMS`` as train_lora wrote them, and a ``README.md`` in the
hub's model card format (YAML front matter, then Markdown) in place of peft's template. The card
is written by a stage, after scoring, so it always states the scores of the adapter beside it:
base model and revision, data set and revision, the LoRA and training settings, the test scores
under both protocols (best of a dialogue's references; mean over them), the faithfulness figures
where the scores record has them, the commit of the code, and how to load it.

The adapter's files are copied, not rewritten, and the manifest is checked on the copy: the card
is the one file ``SHA256SUMS`` leaves out (``stages/checksums.py``), so whoever publishes the
folder may edit it, and a loader checks exactly the bytes train_lora wrote. Text that comes from
params or the adapter's config (model and data set names, revisions, paths) is shown as text,
never markup, a link or a mention (``stages/markdown.py``: escaped, or in a code span), and goes
into the data set's URL percent-encoded; the front matter's strings are JSON strings, which YAML
reads as written.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

from stages import checksums, cli
from stages.atomic import atomic_path
from stages.errors import InputError
from stages.markdown import code_block, code_span, escape
from stages.params import Params, load_params
from stages.scoring import FAITHFULNESS, MEAN_REF, METRIC_LABELS, REPEATED, ROUGE_TYPES, SCORE_LABELS, SHUFFLED

log = logging.getLogger(__name__)
PARAMS = ("paths", "model", "data", "lora", "train", "prompt", "generate")  # = dvc.yaml's `params:`
CARD = "README.md"
PIPELINE = ("stages", "dvc.yaml", "params.yaml")  # what decides the adapter and its scores


def code_commit(pipeline: tuple[str, ...] = PIPELINE) -> str:
    """The last commit that changed the pipeline's code or params, and whether they have changed
    since (as in a queued experiment). Not HEAD: committing results alone does not change what
    the card describes, so the card, a DVC output, stays the same bytes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("log", "-1", "--format=%H", "--", *pipeline)
        changed = git("diff", "--name-only", "HEAD", "--", *pipeline).splitlines() if commit else []
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git repository)"
    if not commit:
        return "none (not committed yet)"
    if not changed:
        return commit
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more files" if len(changed) > 5 else "")
    return f"{commit} with uncommitted changes to {shown}"


def _value(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def score_table(scores: dict, keys: list[str]) -> str:
    variants = [v for v in scores if any(k in scores[v] for k in keys)]
    head = "| model | " + " | ".join(SCORE_LABELS.get(k, k) for k in keys) + " |"
    rule = "|---|" + "---:|" * len(keys)
    rows = [f"| {escape(v)} | " + " | ".join(_value(scores[v].get(k)) for k in keys) + " |" for v in variants]
    return "\n".join([head, rule, *rows])


def front_matter(base: str, data_id: str | None, scores: dict) -> str:
    lines = ["---", f"base_model: {json.dumps(base)}", "base_model_relation: adapter",
             "library_name: peft", "pipeline_tag: summarization", "language:", "- en", "tags:",
             "- lora", "- peft", "- summarization", "- dialogue-summarization",
             f"- {json.dumps('base_model:adapter:' + base)}"]
    if data_id:
        lines += ["datasets:", f"- {json.dumps(data_id)}"]
    lora = scores.get("lora", {})
    lines += ["model-index:", f"- name: {json.dumps(base.rsplit('/', 1)[-1] + '-lora-dialogsum')}",
              "  results:", "  - task: {type: summarization, name: Summarization}",
              f"    dataset: {{type: {json.dumps(data_id or 'local file')}, name: test split, split: test}}",
              "    metrics:"]
    for key in [*ROUGE_TYPES, "bleu"]:
        if lora.get(key) is not None:
            lines.append(f"    - {{type: {'bleu' if key == 'bleu' else 'rouge'}, name: {METRIC_LABELS[key]}, "
                         f"value: {lora[key]}}}")
    return "\n".join([*lines, "---"])


def card_text(params: Params, adapter_config: dict, scores: dict, training: dict, commit: str) -> str:
    """The model card (README.md) for the adapter trained with ``params``."""
    base, revision = adapter_config["base_model_name_or_path"], adapter_config.get("revision")
    data = params.data
    data_id = data.hub_id if data.source == "hub" else None
    data_line = (f"[{escape(data.hub_id)}](https://huggingface.co/datasets/{quote(data.hub_id)}) at revision "
                 f"{code_span(data.revision)}" if data_id else
                 f"the local file {code_span(data.file)} (params.yaml `data.file`)")
    local = bool(revision) and revision.startswith("sha256:")  # a local folder's content hash
    revision_text = (code_span(revision) + (": the content hash of a local folder, relative to the project that "
                                            "trained it" if local else "") if revision else "none")
    hub_revision = f", revision={revision!r}" if revision and not local else ""
    faithful = [k for k in (*FAITHFULNESS, REPEATED) if any(k in s for s in scores.values())]
    train = params.train
    share = f"{training.get('trainable_percent', 'n/a')} % of {training.get('total_params', 'n/a')}"
    settings = [
        ("LoRA rank r / alpha / dropout", f"{adapter_config['r']} / {adapter_config['lora_alpha']} / "
                                          f"{adapter_config['lora_dropout']}"),
        ("target modules", ", ".join(sorted(adapter_config["target_modules"]))),
        ("trainable parameters", f"{training.get('trainable_params', 'n/a')} ({share})"),
        ("learning rate, scheduler, warm-up",
         f"{train.learning_rate}, {train.lr_scheduler}, {train.warmup_steps} steps"),
        ("steps trained (best at)", f"{training.get('steps', 'n/a')} of at most {train.max_steps} "
                                    f"(best eval loss {_value(training.get('best_eval_loss'))} at step "
                                    f"{training.get('best_step', 'n/a')})"),
        ("batch x accumulation (effective)", f"{training.get('batch_size', 'n/a')} x "
                                             f"{training.get('gradient_accumulation_steps', 'n/a')} "
                                             f"({training.get('effective_batch_size', 'n/a')})"),
        ("bf16 autocast", str(training.get("bf16", "n/a"))),
        ("generation", f"max_new_tokens {params.generate.max_new_tokens}, num_beams {params.generate.num_beams}"),
    ]
    best = [*ROUGE_TYPES, "bleu", SHUFFLED, "gen_len"]
    usage = f"""from peft import PeftModel
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

base = AutoModelForSeq2SeqLM.from_pretrained({base!r}{hub_revision})
tokenizer = AutoTokenizer.from_pretrained({base!r}{hub_revision})
model = PeftModel.from_pretrained(base, "path/to/this/folder").eval()
prompt = {params.prompt.template!r}.format(dialogue=dialogue)
ids = tokenizer(prompt, return_tensors="pt", truncation=True, max_length={params.prompt.max_source_length})
summary = tokenizer.decode(model.generate(**ids, max_new_tokens={params.generate.max_new_tokens})[0],
                           skip_special_tokens=True)"""
    parts = [
        front_matter(base, data_id, scores), "",
        f"# LoRA adapter for {escape(base)}: dialogue summarization", "",
        "A LoRA adapter (peft, safetensors) that makes the base model summarize a dialogue. "
        "Written by this project's `card` stage from the adapter and the test scores beside it.", "",
        "## Base model", "",
        f"- model: {code_span(base)}", f"- revision: {revision_text}", "",
        "## Data", "",
        f"- data set: {data_line}",
        f"- test dialogues scored: {scores.get('lora', {}).get('dialogues', 'n/a')}", "",
        "## LoRA and training settings", "",
        "| setting | value |", "|---|---|", *(f"| {k} | {escape(v)} |" for k, v in settings), "",
        "Prompt, the same in training and inference:", "", code_block(params.prompt.template), "",
        "## Test scores", "",
        "ROUGE (0-1) against the best of each dialogue's human summaries, BLEU (0-100) against all of "
        "them; `ROUGE-L shuffled` scores each summary against another dialogue's summaries (what a "
        "model earns without reading its dialogue). `human` is the first human summary scored "
        "against the others: the ceiling.", "",
        score_table(scores, best), "",
        "The same summaries, ROUGE as the mean over each dialogue's references (the protocol of "
        "scoring every (dialogue, reference) row, as the reference lab did):", "",
        score_table(scores, list(MEAN_REF.values())), "",
    ]
    if faithful:
        parts += ["## Faithfulness", "",
                  "Shares of summaries that invent numbers, names or speakers, and their shape "
                  "(how each is computed: the project's `stages/faithfulness.py`):", "",
                  score_table(scores, faithful), ""]
    parts += ["## How to use", "",
              "With the project: `python -m stages.summarize dialogues.txt --adapter <this folder>` "
              "(`--merge DIR` writes base + adapter merged for serving). Anywhere else:", "",
              code_block(usage, "python"), "",
              "The folder's `SHA256SUMS` lists every file but this card: `sha256sum -c SHA256SUMS` checks them.", "",
              "## Provenance", "", f"- code: git commit {escape(commit)}",
              f"- libraries: {escape(', '.join(f'{k} {v}' for k, v in training.get('versions', {}).items()) or 'n/a')}",
              ""]
    return "\n".join(parts)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing; run `dvc repro` to make it") from None


def publish(adapter: Path, out: Path, card: str) -> None:
    """``out``: ``adapter``'s files (checked against their manifest) and ``card`` as README.md."""
    checksums.verify(adapter)
    with atomic_path(out) as tmp:
        shutil.copytree(adapter, tmp, ignore=shutil.ignore_patterns(CARD))
        (tmp / CARD).write_text(card, encoding="utf-8")
        checksums.verify(tmp)


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        paths = params.paths
        adapter = paths.model_dir("lora")
        log.debug("card params: model=%s data=%s lora=%s", params.model, params.data.hub_id, params.lora)
        card = card_text(params, read_json(adapter / "adapter_config.json"), read_json(paths.scores_record()),
                         read_json(paths.train_record("lora")), code_commit())
        publish(adapter, paths.published_adapter(), card)

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
