"""tokenize: ``{paths.split}/{train,validation}.parquet`` -> ``{paths.tokenized}`` + ``metrics/records/tokenize.json``.

Reads params ``paths``, ``model``, ``prompt``.

Applies the prompt template and the model's tokenizer, fitting to the max lengths, and stores
the result with ``datasets.save_to_disk``. Nothing is padded here: the trainer pads each batch to
its own longest example and pads labels with -100 (ignored by the loss), where the reference lab
padded everything to 512 and counted padding in the loss. The test split is not tokenized: the
infer stage generates from its text.
"""

from __future__ import annotations

if __name__ == "tokenize":  # before any import: a stage run as a file stops here
    # Imported as the standard library's ``tokenize`` (which ``logging`` imports through
    # ``linecache``): a stage ran as a file, ``python stages/score.py``, which puts stages/ first
    # on sys.path. Imports fail from here on in a 28-line traceback; one line says what to type.
    import os
    import sys

    script = os.path.splitext(os.path.basename(sys.argv[0]))[0] if sys.argv and sys.argv[0] else ""
    sys.exit(f"error: the stages are modules of the package stages/: from the project root, "
             f"run python -m stages.{script or '<name>'} (not python stages/{script or '<name>'}.py)")

import hashlib
import json
import logging

import pandas as pd

from stages import checksums, cli, modeling, prompt, records, sources
from stages.atomic import atomic_path
from stages.params import Prompt, load_params

log = logging.getLogger(__name__)
PARAMS = ("paths", "model", "prompt")  # sections read = dvc.yaml's `params:` (tests/test_faults.py)
TOKENIZED_SPLITS = ("train", "validation")


def tokenize_frame(frame: pd.DataFrame, tokenizer, template: Prompt, tokenizer_pin: str):  # -> datasets.Dataset
    """``input_ids``, ``attention_mask``, ``labels`` and ``length`` per row, plus truncation counts.

    Sources are fitted to ``max_source_length`` by ``prompt.fit`` (a long dialogue is cut, the
    instruction kept), exactly as the infer stage fits the test dialogues. ``length`` (the source
    length) lets the trainer group batches by length without re-measuring the whole data set at
    start-up. ``tokenizer_pin`` identifies the tokenizer by content (the model's hub commit or
    folder hash), never by where it happens to be on disk.
    """
    import datasets

    def encode(batch: dict) -> dict:
        texts, cut = prompt.fit(tokenizer, template, batch["dialogue"])
        inputs = tokenizer(texts)["input_ids"]
        targets = tokenizer(text_target=batch["summary"], verbose=False)["input_ids"]  # cut below
        return {
            "input_ids": inputs,
            "attention_mask": [[1] * len(ids) for ids in inputs],
            "labels": [_truncate(ids, template.max_target_length) for ids in targets],
            "length": [len(ids) for ids in inputs],
            "source_truncated": cut,
            "target_truncated": [len(ids) > template.max_target_length for ids in targets],
        }

    dataset = datasets.Dataset.from_pandas(frame[["dialogue", "summary"]], preserve_index=False)
    # datasets cannot hash a closure over a tokenizer and would stamp the saved data with a
    # random fingerprint, so two identical runs would write different bytes. Name it ourselves,
    # from content only: the same data and tokenizer give the same bytes in any cache folder.
    fingerprint = hashlib.sha256(json.dumps(
        [frame["dialogue"].tolist(), frame["summary"].tolist(), template.model_dump(),
         tokenizer_pin, len(tokenizer)]).encode()).hexdigest()[:16]
    encoded = dataset.map(encode, batched=True, remove_columns=dataset.column_names,
                          desc="tokenizing", new_fingerprint=fingerprint)
    stats = {
        "rows": len(encoded),
        "source_truncated": int(sum(encoded["source_truncated"])),
        "target_truncated": int(sum(encoded["target_truncated"])),
        "source_tokens_max": max(encoded["length"]),
        "target_tokens_max": max(len(x) for x in encoded["labels"]),
    }
    return encoded.remove_columns(["source_truncated", "target_truncated"]), stats


def _truncate(ids: list[int], limit: int) -> list[int]:
    # Keep the closing </s>: T5 learned to stop on it, and the tokenizer appended it last.
    return ids if len(ids) <= limit else ids[: limit - 1] + ids[-1:]


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        import datasets

        params = load_params(args.params)
        log.debug("tokenize params: model=%s prompt=%s", params.model, params.prompt)
        resolved = modeling.resolve(params.model, params.hub)
        tokenizer = modeling.load_tokenizer(resolved.folder)
        splits, metrics = {}, {}
        for name in TOKENIZED_SPLITS:
            frame = sources.read_parquet(params.paths.split_file(name))
            splits[name], metrics[name] = tokenize_frame(frame, tokenizer, params.prompt, resolved.pin)
        with atomic_path(params.paths.tokenized) as out:
            datasets.DatasetDict(splits).save_to_disk(str(out))
            checksums.write(out)  # train_lora and the baselines check the data before training on it
        records.write(params.paths.tokenize_record(), {**metrics, "params_sha256": cli.params_digest()})
        for name, m in metrics.items():
            log.info("tokenized %s: %d rows, %d sources and %d targets cut to their max length, longest %d / %d tokens",
                     name, m["rows"], m["source_truncated"], m["target_truncated"], m["source_tokens_max"],
                     m["target_tokens_max"])

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
