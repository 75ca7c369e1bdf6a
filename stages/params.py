"""The one reader of ``params.yaml``: parses it into typed, frozen objects.

Every key is required (defaults live in ``params.yaml``, never in code) and unknown keys are
rejected, so a typo fails at once instead of silently falling back to a default. Errors name the
file and the dotted key: ``params.yaml: lora.r: Input should be greater than or equal to 1 (got 0)``
(pydantic's wording, with the key and the value it got). A file that is not UTF-8 YAML is one line
too, with the line: ``params.yaml: line 64: a tab (column 1); YAML indents with spaces only``; a
key given twice in a mapping is refused, never resolved either way.

``python -m stages.params [FILE]`` validates a params file and prints it resolved; it imports
no torch, so it is instant.
"""

from __future__ import annotations

import math
import posixpath
import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import YAMLError

from stages.errors import ParamsError

PARAMS_FILE = Path("params.yaml")
# Sections that change no output: how long to wait for the hub, how the machine loads batches,
# where curves are tracked, how the review report samples. No stage declares them in dvc.yaml,
# so changing one reruns nothing (tests/test_dvc_yaml.py holds every other section declared).
UNDECLARED = ("hub", "runtime", "tracking", "review")
SPLITS = ("train", "validation", "test")

PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
Text = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    # strict: YAML's "1e-3" is a string, not a float; a quoted number must not slip through.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Paths(_Section):
    """Where the stages write, each path relative to the repository and inside it.

    Every one of these is written or cleared by a stage, so a path that leaves the repository
    (absolute, or climbing out with ``..``) is refused here, before any stage runs: a params value
    (``dvc exp run -S``, a pull request) must never make a stage overwrite or delete a file
    elsewhere on the machine. The repository's own ``.git`` and ``.dvc`` are refused too. The
    check is on the text, after normalisation; a symlink inside the repository that leads out (a
    ``checkpoints`` link to a scratch disk) is the user's own choice on the file system, not a
    params value, and is followed. ``data.file`` and ``model.name`` are only read, never written,
    so they may name a data set or model folder anywhere (a shared disk), as DVC allows a
    dependency outside the repository.
    """

    split: Text
    tokenized: Text
    checkpoints: Text
    models: Text
    predictions: Text
    metrics: Text
    per_dialogue: Text
    examples: Text

    @field_validator("*")
    @classmethod
    def _inside_the_repository(cls, path: str) -> str:
        normal = posixpath.normpath(path)
        if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
            raise ValueError("must be a path inside the repository, relative to it: no absolute path "
                             "and no '..' that leads out")
        if normal == ".":
            raise ValueError("must name a file or folder inside the repository, not the repository itself")
        if normal.split("/", 1)[0] in (".git", ".dvc"):
            raise ValueError("must not be inside .git or .dvc (the repository's own records)")
        return path

    # Every file a stage writes or reads from another stage, named here once. dvc.yaml spells the
    # same paths with templating (${paths.metrics}/split.json, ${paths.models}/${item} ...);
    # tests/test_dvc_yaml.py resolves dvc.yaml with DVC itself and holds the two together.
    def params_check(self) -> Path:
        """check_params' output: every other stage depends on it, so a bad value stops DVC there."""
        return Path(self.metrics) / "records" / "params_checked"

    def split_file(self, split: str) -> Path:
        return Path(self.split) / f"{split}.parquet"

    # Records and metrics: every stage writes the whole record of its run to records/<name>.json
    # (counts, every figure, the digest of its params, library versions); the few figures a
    # person compares across revisions and experiments also go to <name>.json, which dvc.yaml
    # declares as DVC metrics (`dvc metrics diff`, `dvc exp show`). stages/records.py says which.
    def _record(self, name: str) -> Path:
        return Path(self.metrics) / "records" / f"{name}.json"

    def split_record(self) -> Path:
        return self._record("split")

    def tokenize_record(self) -> Path:
        return self._record("tokenize")

    def model_dir(self, variant: str) -> Path:
        return Path(self.models) / variant

    def published_adapter(self) -> Path:
        """The card stage's output and the ``lora-adapter`` artifact: the adapter with its card."""
        return Path(self.models) / "lora-adapter"

    def checkpoint_dir(self, variant: str) -> Path:
        return Path(self.checkpoints) / variant

    def train_log(self, variant: str) -> Path:
        return Path(self.metrics) / f"train_{variant}"

    def train_metrics(self, variant: str) -> Path:
        return Path(self.metrics) / f"train_{variant}.json"

    def train_record(self, variant: str) -> Path:
        return self._record(f"train_{variant}")

    def predictions_file(self, variant: str) -> Path:
        return Path(self.predictions) / f"{variant}.jsonl"

    def infer_metrics(self, variant: str) -> Path:
        return Path(self.metrics) / f"infer_{variant}.json"

    def infer_record(self, variant: str) -> Path:
        return self._record(f"infer_{variant}")

    def scores(self) -> Path:
        return Path(self.metrics) / "scores.json"

    def scores_record(self) -> Path:
        return self._record("scores")

    def record_of(self, metrics_file: str | Path) -> Path:
        """The whole record of which ``metrics_file`` (a DVC metrics file above) holds a part."""
        return self._record(Path(metrics_file).stem)

    def scores_plot(self) -> Path:
        return Path(self.metrics) / "scores_plot.json"


class Model(_Section):
    name: Text  # a hub id, or a local folder saved with save_pretrained
    revision: Text | None


class Columns(_Section):
    id: Text
    dialogue: Text
    summary: Text
    topic: Text | None  # null: the source has no topic; stratification falls back to a plain split


class Data(_Section):
    source: Literal["hub", "file"]
    hub_id: Text
    # A hub commit. Any text passes here so that params with a branch still validate (the demo
    # reads a file and never uses it); stages.sources refuses a branch when it reads the hub.
    revision: Text
    file: Text  # read, never written: may be outside the repository (Paths says why)
    columns: Columns


class Hub(_Section):
    # Seconds any one hub request may go without an answer. Not a dependency of any stage:
    # it changes no output, only how long a dead network is waited for.
    timeout_s: Annotated[float, Field(gt=0.0)]


class SplitFractions(_Section):
    train: Fraction
    validation: Fraction
    test: Fraction

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitFractions:
        total = self.train + self.validation + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"fractions must sum to 1 (got {total:g})")
        return self


class Split(_Section):
    strategy: Literal["stratified", "source"]
    fractions: SplitFractions
    min_topic_size: PosInt


class Prompt(_Section):
    # Written in params.yaml as a list of lines, joined with newlines: a string holding newlines
    # breaks the rows of `dvc exp show`'s table, a list prints on one line. A plain string works too.
    template: Text
    max_source_length: PosInt
    max_target_length: PosInt

    @field_validator("template", mode="before")
    @classmethod
    def _lines(cls, template: object) -> object:
        if isinstance(template, list) and template and all(isinstance(line, str) for line in template):
            return "\n".join(template)
        if isinstance(template, list):
            raise ValueError("must be a string or a non-empty list of strings (lines)")
        return template

    @field_validator("template")
    @classmethod
    def _one_dialogue_slot(cls, template: str) -> str:
        if template.count("{dialogue}") != 1:
            raise ValueError("must contain '{dialogue}' exactly once")
        return template


class Lora(_Section):
    r: PosInt
    alpha: PosInt
    dropout: Rate
    target_modules: Annotated[list[Text], Field(min_length=1)]
    bias: Literal["none", "all", "lora_only"]
    task_type: Literal["SEQ_2_SEQ_LM"]


class Train(_Section):
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    max_steps: PosInt
    batch_size: PosInt
    auto_find_batch_size: bool
    eval_batch_size: PosInt
    gradient_accumulation_steps: PosInt
    max_grad_norm: Annotated[float, Field(gt=0.0)]
    warmup_steps: NonNegInt
    weight_decay: Annotated[float, Field(ge=0.0)]
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"]
    logging_steps: PosInt
    eval_steps: PosInt
    save_total_limit: PosInt
    early_stopping_patience: PosInt
    early_stopping_threshold: Annotated[float, Field(ge=0.0)]
    dropout_rate: Rate | None
    group_by_length: bool
    bf16: Literal["auto", True, False]
    processes: PosInt
    gradient_checkpointing: bool
    base_weights: Literal["auto", "fp32", "bf16", "int8", "int4"]  # LoRA's frozen base; the full fine-tune: fp32
    compile: bool  # torch.compile the model for training (the Trainer's torch_compile)


class Full(_Section):
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)]
    fsdp: bool  # shard over train.processes > 1 (stages/finetune.py fsdp_config); else data parallel


class Generate(_Section):
    max_new_tokens: PosInt
    num_beams: PosInt
    no_repeat_ngram_size: NonNegInt
    batch_size: PosInt
    batch_memory: Rate
    static_cache: bool
    merge_lora: bool
    processes: PosInt
    bf16: Literal["auto", True, False]


class Score(_Section):
    use_stemmer: bool
    examples: NonNegInt


class Review(_Section):
    bootstrap_resamples: PosInt
    bootstrap_seed: NonNegInt
    examples: NonNegInt


class Runtime(_Section):
    dataloader_workers: NonNegInt


class Tracking(_Section):
    wandb: bool
    wandb_project: Text


class Params(_Section):
    seed: NonNegInt
    # Baselines trained and scored beside the LoRA model (train_baseline@<v>, infer_baseline@<v>):
    # "full" is the full fine-tune. Empty in the recipe; the demo and `-S 'baselines=[full]'` add it.
    baselines: list[Literal["full"]]
    paths: Paths
    model: Model
    data: Data
    hub: Hub
    split: Split
    prompt: Prompt
    lora: Lora
    full: Full
    train: Train
    generate: Generate
    score: Score
    review: Review
    runtime: Runtime
    tracking: Tracking

    @field_validator("baselines")
    @classmethod
    def _each_once(cls, baselines: list[str]) -> list[str]:
        if len(set(baselines)) != len(baselines):
            raise ValueError("lists a baseline twice")
        return baselines

    @property
    def variants(self) -> list[str]:
        """Every model the test set is run through and scored: the original, LoRA, the baselines."""
        return ["base", "lora", *self.baselines]


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "missing":
        return f"{key}: missing"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    message = re.sub(r"^Value error, ", "", error["msg"])
    if isinstance(error["input"], dict):  # a whole section: the message says what is off
        return f"{key}: {message}"
    return f"{key}: {message} (got {error['input']!r})"


def parse_params(raw: object, source: str = str(PARAMS_FILE)) -> Params:
    """Validate an already-loaded params mapping; ``source`` names it in errors."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe(err)}" for err in exc.errors()]
        raise ParamsError("\n".join(lines)) from None
    layers = adaptable_layers(params.model)
    unknown = [name for name in params.lora.target_modules if layers is not None and name not in layers]
    if unknown:
        linear = ", ".join(sorted(layers - EMBEDDINGS))
        raise ParamsError(f"{source}: lora.target_modules: {params.model.name} has no layer named "
                          f"{', '.join(unknown)} (its linear layers: {linear})")
    return params


# The layers of every T5 (flan-T5 included) that LoRA can adapt, by module name: attention q, k, v,
# o; feed-forward wi (ReLU T5) or wi_0 and wi_1 (gated: flan-T5), then wo; lm_head; the embeddings.
# For a model on the hub whose files are not in the local hub cache yet.
EMBEDDINGS = frozenset({"shared", "embed_tokens", "relative_attention_bias"})
T5_LAYERS = frozenset({"q", "k", "v", "o", "wi", "wi_0", "wi_1", "wo", "lm_head"}) | EMBEDDINGS


def adaptable_layers(model: Model) -> frozenset[str] | None:
    """The module names ``lora.target_modules`` may use for ``model``, without loading it: the
    modules with a 2-D weight in its safetensors (linear layers and embeddings; plus the embedding
    copies and the output layer T5 ties to ``shared`` and stores once), read from its folder or
    its snapshot in the hub cache; else ``T5_LAYERS`` for a T5, ``None`` (left to train_lora) for
    anything else."""
    folder = Path(model.name)
    if not folder.is_dir():
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(model.name, "config.json", revision=model.revision)
        folder = Path(config).parent if isinstance(config, str) else None
    files = sorted(folder.glob("*.safetensors")) if folder else []
    if not files:
        return T5_LAYERS if "t5" in model.name.lower() else None
    from safetensors import safe_open

    layers = set()
    for file in files:
        with safe_open(file, framework="numpy") as weights:
            layers |= {key.rsplit(".", 2)[-2] for key in weights.keys()
                       if key.endswith(".weight") and len(weights.get_slice(key).get_shape()) == 2}
    if "shared" in layers:
        layers |= {"embed_tokens", "lm_head"}
    return frozenset(layers)


def read_yaml(text: str) -> object:
    """Parse YAML 1.2 the way DVC does (ruamel): ``1e-3`` is a float, as `dvc exp run -S` writes it.

    A key twice in one mapping raises (ruamel's ``DuplicateKeyError``, its default): which of the
    two DVC and a stage each took would be a guess, so neither is taken."""
    return YAML(typ="safe", pure=True).load(text)


def read_params_file(path: str | Path) -> object:
    """The parsed contents of a params file. A file that cannot be read as UTF-8 YAML is one
    ``ParamsError`` line naming the file, the line and what is wrong (ruamel's own message runs
    over ten lines with a pointer drawn under the text)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such params file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise ParamsError(f"{path}: line {line}: byte 0x{data[exc.start]:02x} (column {column}) is not "
                          "UTF-8; save the file as UTF-8") from None
    try:
        return read_yaml(text)
    except YAMLError as exc:
        raise ParamsError(f"{path}: {_yaml_problem(exc, text)}") from None


def _yaml_problem(exc: YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    if mark is None:
        return f"not valid YAML: {problem}"
    where = f"line {mark.line + 1}"
    if isinstance(exc, DuplicateKeyError):
        key = re.search(r'duplicate key "(.*?)" with value', problem)
        first = _first_line_of(text, mark)
        return (f"{where}: duplicate key {key.group(1) if key else ''!r}"
                f"{f' (first at line {first})' if first else ''}; a key may appear once, remove one")
    lines = text.splitlines()
    if mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
        return f"{where}: a tab (column {mark.column + 1}); YAML indents with spaces only"
    return f"{where}, column {mark.column + 1}: not valid YAML: {problem}"


def _first_line_of(text: str, duplicate) -> int | None:
    """The line of the first of two equal keys, the second being at mark ``duplicate``."""
    from ruamel.yaml.nodes import MappingNode, SequenceNode

    todo = [YAML(typ="safe", pure=True).compose(text)]  # nodes only: duplicates are not checked yet
    while todo:
        node = todo.pop()
        if isinstance(node, MappingNode):
            seen: dict[object, int] = {}
            for key, value in node.value:
                if (key.start_mark.line, key.start_mark.column) == (duplicate.line, duplicate.column):
                    return seen.get(key.value)
                seen.setdefault(key.value, key.start_mark.line + 1)
                todo.append(value)
        elif isinstance(node, SequenceNode):
            todo.extend(node.value)
    return None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate a params file."""
    return parse_params(read_params_file(path), str(path))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print("usage: python -m stages.params [PARAMS_FILE]  (validate and print resolved params)")
        return
    try:
        params = load_params(args[0] if args else PARAMS_FILE)
    except ParamsError as exc:
        sys.exit(f"error: {exc}")
    dumper = YAML(typ="safe", pure=True)
    dumper.default_flow_style = False
    dumper.dump(params.model_dump(), sys.stdout)


if __name__ == "__main__":
    main()
