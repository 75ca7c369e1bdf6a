"""summarize (a command, not a stage): new dialogues -> summaries, with a trained LoRA adapter.

    python -m stages.summarize dialogues.txt               # blank-line separated dialogues
    python -m stages.summarize chats.jsonl --out jsonl     # {"id"?, "dialogue"} per line
    python -m stages.summarize chats.csv --rev v1.2        # the adapter of a git revision (via DVC)
    cat dialogue.txt | python -m stages.summarize -        # stdin
    python -m stages.summarize --merge merged/             # base + adapter merged, for serving

The adapter is this workspace's (``{paths.models}/lora``), a git revision's (``--rev``: fetched
through DVC from the cache or the remote, as ``dvc get`` would) or any adapter folder
(``--adapter``, e.g. what ``dvc artifacts get <repo> lora-adapter`` delivered). Its base model is
the one the adapter names (``adapter_config.json``: the hub id at its commit, or a folder
relative to the project at the content hash it was trained on, checked before it loads), so a
revision's adapter runs on its own base. The prompt and the generation settings are params.yaml's
``prompt`` and ``generate`` (the revision's with ``--rev``), as the infer stage used them: a
summary here is what the scores measured. The adapter loads from safetensors only, as in the stages.

Input is text (dialogues separated by a blank line), jsonl, json (one array, or JSON Lines) or
csv (a ``dialogue`` column or key, an optional ``id``), told by the file's suffix or ``--format``.
Output is one summary per line (``--out text``) or jsonl with the id. Generation is batched, in
the dtype ``generate.bf16`` asks for (as infer), on one GPU leased as the stages lease theirs
(``stages/devices.py``), or the CPU. Bad input is one ``error:`` line and exit status 1.

``--merge DIR`` writes the base model with the adapter folded into its weights (safetensors, fp32)
and the tokenizer: a plain model that ``AutoModelForSeq2SeqLM.from_pretrained`` loads, for
serving stacks that take no adapters. Its greedy summaries are those of base + adapter.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from stages import checksums, cli, devices, modeling, prompt, sources
from stages.atomic import atomic_path
from stages.errors import DataError, InputError, ModelError
from stages.params import Generate, Model, Params, load_params, parse_params, read_yaml

log = logging.getLogger(__name__)
FORMATS = ("text", "jsonl", "json", "csv")


def parse_dialogues(text: str, fmt: str, source: str) -> list[dict]:
    """``[{"id", "dialogue"}]`` from ``text`` in format ``fmt``; ``DataError`` naming ``source``
    and the line, item or row for anything that is not a dialogue. ``json`` is what ``data.file``
    reads under that suffix: one array of objects (SAMSum's format), or JSON Lines."""
    if fmt == "text":
        blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
        rows = [{"id": str(n), "dialogue": b} for n, b in enumerate((b for b in blocks if b), 1)]
    elif fmt == "json" and text.lstrip().startswith("["):
        rows = _json_array(text, source)
    elif fmt in ("jsonl", "json"):
        rows = []
        for number, line in sources.jsonl_lines(text):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{source}: line {number}: not JSON ({exc.msg})") from None
            rows.append(_row(record, len(rows) + 1, f"{source}: line {number}"))
    elif fmt == "csv":
        rows = _csv_rows(text, source)
    else:
        raise InputError(f"--format: one of {', '.join(FORMATS)} (got {fmt!r})")
    empty = [r["id"] for r in rows if not r["dialogue"].strip()]
    if empty:
        raise DataError(f"{source}: dialogue {empty[0]} is empty")
    if not rows:
        raise DataError(f"{source}: no dialogue in it")
    return rows


def _row(record: object, number: int, where: str) -> dict:
    if not isinstance(record, dict) or not isinstance(record.get("dialogue"), str):
        raise DataError(f"{where}: expected an object with a \"dialogue\" string")
    return {"id": str(record.get("id", number)), "dialogue": record["dialogue"]}


def _json_array(text: str, source: str) -> list[dict]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: line {exc.lineno} column {exc.colno}: not JSON ({exc.msg})") from None
    return [_row(record, n, f"{source}: item {n}") for n, record in enumerate(records, 1)]


def _csv_rows(text: str, source: str) -> list[dict]:
    # The csv module refuses a field over 131,072 characters by default; a dialogue may be longer
    # (prompt.fit cuts it to what the model reads), and the whole text is in memory already.
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text)))
    reader = csv.DictReader(io.StringIO(text))
    try:
        if "dialogue" not in (reader.fieldnames or []):
            raise DataError(f"{source}: no 'dialogue' column (columns: {sources.shown(reader.fieldnames or [])})")
        return [{"id": str(r.get("id") or n), "dialogue": r["dialogue"] or ""} for n, r in enumerate(reader, 1)]
    except csv.Error as exc:
        raise DataError(f"{source}: line {reader.line_num}: not CSV ({exc})") from None
    finally:
        csv.field_size_limit(limit)


def format_of(path: str, given: str | None) -> str:
    if given:
        return given
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".json": "json", ".csv": "csv"}.get(suffix, "text")


def read_input(path: str, fmt: str | None) -> list[dict]:
    source = "stdin" if path == "-" else path
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: byte {exc.start} is not UTF-8; save the file as UTF-8") from None
    if "\0" in text:  # UTF-8 holds no NUL in text: a binary file (or UTF-16) would be "summarized"
        raise DataError(f"{source}: byte {raw.index(bytes(1))} is NUL: not a text file; give dialogues as "
                        "UTF-8 text, .jsonl or .csv")
    return parse_dialogues(text, format_of(path, fmt), source)


def base_of(adapter: Path) -> Model:
    """The base model an adapter names: ``base_model_name_or_path`` and ``revision``."""
    config = adapter / "adapter_config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        return Model(name=data["base_model_name_or_path"], revision=data.get("revision"))
    except FileNotFoundError:
        raise ModelError(f"{adapter}: no adapter_config.json (not a LoRA adapter folder)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{config}: no base model named in it ({exc})") from None


def base_folder(adapter: Path, params: Params) -> Path:
    """The adapter's base model, checked as the stages check theirs (``modeling.resolve``): a
    local folder against the content hash the adapter was trained on, a hub id at its commit."""
    config = adapter / "adapter_config.json"
    return modeling.resolve(base_of(adapter), params.hub, f"{config}: revision", config).folder


def load(adapter: Path, params: Params, merge: bool, dtype=None):
    """(model, tokenizer): the adapter's base + the adapter, checked against its manifest.
    Safetensors only, as the stages load: an adapter saved as a pickle is refused unread."""
    if (adapter / checksums.MANIFEST).is_file():  # what a stage wrote; a folder of one's own may have none
        checksums.verify(adapter)
    modeling.refuse_pickle(adapter)
    folder = base_folder(adapter, params)
    model = modeling.load_variant(folder, "base", adapter, merge=False)
    from peft import PeftModel

    with modeling.peft_quietly(), modeling.loading(adapter):
        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
    if merge:
        model = modeling.merge_adapter(model)  # in fp32: the cast below rounds the sum once
    if dtype is not None:
        model = model.to(dtype)
    return model.eval(), modeling.load_tokenizer(folder)


def summarize(model, tokenizer, dialogues: list[str], prompt_cfg, cfg: Generate, device: str) -> list[str]:
    """Summaries of ``dialogues``, in their order, as the infer stage writes them: prompts fitted
    by ``prompt.fit``, generated by ``stages.infer.generate``; each summary on one line."""
    from stages.infer import generate

    texts, _ = prompt.fit(tokenizer, prompt_cfg, dialogues)
    outputs, _ = generate(model, tokenizer, texts, cfg, device)
    return [" ".join(text.split()) for text in outputs]


def merge_to(adapter: Path, params: Params, out: Path) -> None:
    """Write base + adapter merged (fp32 safetensors) and the tokenizer to ``out``, whole or not at all."""
    model, tokenizer = load(adapter, params, merge=True)
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    log.info("merged model written to %s", out)


def revision_params(rev: str) -> Params:
    """params.yaml as committed at ``rev`` (a git revision)."""
    import dvc.api

    try:
        text = dvc.api.read("params.yaml", repo=".", rev=rev)
    except Exception as exc:  # DVC's errors have no common base worth naming here
        raise InputError(f"--rev {rev}: cannot read params.yaml there ({exc})") from None
    return parse_params(read_yaml(text), f"params.yaml@{rev}")


def fetch_adapter(rev: str, path: Path, into: Path) -> Path:
    """The adapter folder at git revision ``rev``, fetched through DVC (cache, else remote)."""
    from dvc.repo import Repo

    target = into / "adapter"
    try:
        Repo.get(".", path.as_posix(), out=str(target), rev=rev)
    except Exception as exc:
        raise InputError(f"--rev {rev}: cannot fetch {path} ({' '.join(str(exc).split())})") from None
    return target


def write_output(rows: list[dict], summaries: list[str], out: str) -> None:
    for row, summary in zip(rows, summaries):
        if out == "jsonl":
            print(json.dumps({"id": row["id"], "summary": summary}, ensure_ascii=False))
        else:
            print(summary)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("input", nargs="?", help="dialogues file, or - for stdin")
    parser.add_argument("--format", choices=FORMATS, help="input format (default: by suffix; text otherwise)")
    parser.add_argument("--out", choices=("text", "jsonl"), default="text", help="output format")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--adapter", type=Path, help="an adapter folder (default: this workspace's)")
    where.add_argument("--rev", help="the adapter of this git revision, fetched through DVC")
    parser.add_argument("--merge", type=Path, metavar="DIR", help="write base + adapter merged to DIR")
    args = parser.parse_args(argv)
    if args.input is None and args.merge is None:
        parser.error("give a dialogues file (or - for stdin), or --merge DIR")

    def body() -> None:
        params = revision_params(args.rev) if args.rev else load_params(args.params)
        with ExitStack() as stack:
            adapter = args.adapter or params.paths.model_dir("lora")
            if args.adapter is None and args.rev is None and not (adapter / "adapter_config.json").is_file():
                raise ModelError(f"{adapter}: no trained adapter here: dvc repro trains one, make demo "
                                 "trains one in demo-run/ (run this there); or give --adapter DIR or --rev REV")
            if args.rev:
                into = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="adapter-")))
                adapter = fetch_adapter(args.rev, adapter, into)
            if args.merge is not None:
                merge_to(adapter, params, args.merge)
                if args.input is None:
                    return
            rows = read_input(args.input, args.format)  # before loading: bad input fails at once
            # A GPU of its own, leased as the stages lease theirs (never one a queued experiment
            # holds), and generate.bf16 as infer used it: the summaries are those that were scored.
            devices.claim(1, "generate.processes")
            bf16 = modeling.use_bf16(params.generate.bf16, "generate.bf16")
            import torch

            model, tokenizer = load(adapter, params, merge=params.generate.merge_lora,
                                    dtype=torch.bfloat16 if bf16 else torch.float32)
            summaries = summarize(model, tokenizer, [r["dialogue"] for r in rows], params.prompt,
                                  params.generate, modeling.device())
        write_output(rows, summaries, args.out)

    cli.run(body)


if __name__ == "__main__":
    main()
