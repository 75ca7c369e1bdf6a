"""Loading the base model, its tokenizer and the trained variants: pinned and safe.

A model is either a hub id at a commit (``model.revision``) or a local folder saved with
``save_pretrained``. A local folder is pinned too, by its content hash in ``model.revision``:
DVC cannot declare "this folder, but only when the model is local" as a dependency, so the
params carry the pin and a changed folder is refused until the params say so (which in turn
reruns exactly the stages that read the model).

Weights load from safetensors only and never with ``trust_remote_code``; the trained variants
only after their checksums match (``stages/checksums.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stages import checksums
from stages import hub as hub_client
from stages.errors import ModelError, first_line
from stages.params import Hub, Model

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    folder: Path  # local folder holding config, tokenizer and safetensors weights
    pin: str  # the hub commit, or the local folder's content hash


def folder_hash(folder: Path) -> str:
    """sha256 over the relative paths and bytes of every file in ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return f"sha256:{digest.hexdigest()}"


def hash_stamps_dir() -> Path:
    """Where ``stamped_folder_hash`` keeps its stamps: the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flan-t5-dialogsum-lora" / "folder-hashes"


def _file_stats(folder: Path) -> dict[str, list[int]]:
    stats = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = path.stat()
        stats[path.relative_to(folder).as_posix()] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    return stats


def stamped_folder_hash(folder: Path, stamps: Path) -> str:
    """``folder_hash``, read from a stamp in ``stamps`` while no file of ``folder`` changed.

    Every stage that loads a local model checks its pin, and hashing a flan-t5-base folder reads
    about 1 GB. The stamp holds each file's size, mtime, ctime and inode (what git's index keeps
    to skip unchanged files); the digest is reused only while every one of them, and the set of
    files, is the same. Writing a file changes its mtime and ctime; a copy or a restored
    mtime (``cp -p``, ``rsync -a``, ``touch -d``) still changes the ctime (or the inode), which no
    tool sets back; so a changed folder is always hashed again. A stamp that cannot be read or
    written costs a rehash, never a wrong answer. The stamp is trusted as the user's own cache
    folder is: whoever can write there can as well write the model folder.
    """
    folder = folder.resolve()
    stamp = stamps / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:32]}.json"
    before = _file_stats(folder)
    try:
        kept = json.loads(stamp.read_text(encoding="utf-8"))
        if kept["folder"] == str(folder) and kept["files"] == before:
            return kept["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = folder_hash(folder)
    if _file_stats(folder) == before:  # nothing changed while it was read
        try:
            stamps.mkdir(parents=True, exist_ok=True)
            partial = stamp.with_name(f"{stamp.name}.{os.getpid()}.tmp")
            partial.write_text(json.dumps({"folder": str(folder), "files": before, "digest": digest}),
                               encoding="utf-8")
            os.replace(partial, stamp)
        except OSError as exc:
            log.debug("folder hash stamp not written (%s): the folder is hashed again next time", exc)
    return digest


def resolve(model: Model, hub: Hub, key: str = "model.revision",
            adapter_config: Path | None = None, stamps: Path | None = None) -> ResolvedModel:
    """The model's local folder and pin: a local folder checked against its hash (kept in
    ``stamps``, by default ``hash_stamps_dir()``, while the folder is unchanged), or the hub
    snapshot at ``model.revision`` (only the files loading reads, see stages.hub). ``key`` names
    the pin in errors; ``adapter_config`` is the adapter config that names ``model`` when the
    model is an adapter's base (its pin is then the adapter's to keep, never the user's to move)."""
    local = Path(model.name)
    if local.is_dir():
        actual = stamped_folder_hash(local, hash_stamps_dir() if stamps is None else stamps)
        if model.revision != actual:
            raise ModelError(_local_pin_problem(model, actual, key, adapter_config))
        return ResolvedModel(local, actual)
    if model.revision is None:
        raise ModelError(f"{key}: {model.name} is not a local folder, so it is a hub id "
                         "and needs a commit id to pin")
    try:
        hub_client.require_commit(key, model.name, model.revision)
        folder = hub_client.download(model.name, model.revision, "model", hub, key)
    except hub_client.HubError as exc:
        raise ModelError(str(exc)) from None
    return ResolvedModel(folder, folder.name)  # the snapshot folder is named after the commit


def _local_pin_problem(model: Model, actual: str, key: str, adapter_config: Path | None) -> str:
    """Why a local folder does not match its pin, and what mends it. A folder pinned by a content
    hash that no longer matches was changed (a damaged disk, a bad copy, an edit): restoring it
    comes first; pinning the changed bytes would make them the model and hide the damage."""
    pinned = isinstance(model.revision, str) and model.revision.startswith("sha256:")
    restore = (f"restore the folder (`dvc checkout {model.name}` or `git checkout -- {model.name}`, "
               "whichever tracks it; else copy or download the model again)")
    if adapter_config is not None:
        if not pinned:
            return (f"{adapter_config}: names the local base model {model.name} without its content hash "
                    "(written by an older version of this project), so it cannot be checked; retrain the "
                    "adapter (`dvc repro train_lora`)")
        return (f"{adapter_config}: the base model folder {model.name} changed since the adapter was trained "
                f"on it (pinned {model.revision[:19]}..., now {actual[:19]}...): {restore}")
    if not pinned:
        return (f"{key}: {model.name} is a local folder, pinned by its content hash; "
                f"set revision: '{actual}' (got {model.revision!r})")
    return (f"{key}: the files of {model.name} changed since it was pinned (pinned {model.revision[:19]}..., "
            f"now {actual[:19]}...): {restore}; only to use the changed folder as a new model on purpose, "
            f"set revision: '{actual}'")


def refuse_pickle(folder: Path) -> None:
    """Refuse a weights folder without safetensors before anything loads from it: the other
    formats (``*.bin``, ``*.pt``) are pickles, which can run code when loaded."""
    if not any(folder.glob("*.safetensors")):
        pickles = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
        found = f" (found {', '.join(pickles)}: pickle files can run code when loaded)" if pickles else ""
        raise ModelError(f"{folder}: no safetensors weights{found}")


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


# Modules bitsandbytes leaves unquantized: T5's feed-forward output ``wo`` (transformers keeps it
# in fp32 for 8-bit T5 too; quantized, its activations overflow and T5 writes nonsense) and the
# output layer.
UNQUANTIZED = ["wo", "lm_head"]


def base_weights(setting: str, bf16: bool) -> str:
    """``train.base_weights`` resolved: ``auto`` is bf16 where training computes in bf16 (``bf16``:
    ``use_bf16(train.bf16)``, a GPU that has it), else fp32, so a CPU run is unchanged.

    Under bf16 autocast an fp32 frozen base is cast to bf16 again on every forward (autocast caches
    casts of trainable weights only) and its residual stream stays fp32; loaded in bf16, the matmuls
    see the same bf16 weights, without the casts, in half the memory. What changes is the rounding
    of the activations between layers (the residual stream in bf16, T5's layer norm still computes
    its variance in fp32). LoRA's weights, gradients and AdamW state stay fp32 (peft keeps adapter
    weights in fp32). tests/test_train_lora.py bounds the difference on the tiny model: the bf16
    base's loss curve stays within 2 % of the fp32 base's at every step, 0.5 % on average
    (measured: 0.23 % and 0.11 %)."""
    if setting != "auto":
        return setting
    return "bf16" if bf16 else "fp32"


def weights_kwargs(weights: str, cuda: bool) -> dict:
    """``from_pretrained`` arguments for ``train.base_weights``: fp32; bf16 (the frozen base in
    bf16, half the memory); int8 / int4 through bitsandbytes (QLoRA: NF4, double quantization,
    bf16 compute), on a CUDA GPU only, with the optional ``quant`` extra installed."""
    import torch

    if weights == "fp32":
        return {"dtype": torch.float32}
    if weights == "bf16":
        return {"dtype": torch.bfloat16}
    if weights not in ("int8", "int4"):
        raise ModelError(f"train.base_weights: one of fp32, bf16, int8, int4 (got {weights!r})")
    if not cuda:
        raise ModelError(f"train.base_weights: {weights} needs a CUDA GPU (bitsandbytes); use fp32 or bf16 here")
    from transformers import BitsAndBytesConfig

    if weights == "int8":
        quant = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED)
    else:
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16, llm_int8_skip_modules=UNQUANTIZED)
    # The unquantized rest in fp32: prepare_model_for_kbit_training casts it there anyway.
    return {"dtype": torch.float32, "quantization_config": quant}


def load_model(folder: Path, dropout_rate: float | None = None, weights: str = "fp32",
               gpu: int = 0) -> PreTrainedModel:
    """A freshly loaded seq2seq model in fp32; ``dropout_rate`` overrides the config's when given;
    ``weights`` (``train.base_weights``: fp32, bf16, int8, int4) loads LoRA's frozen base smaller,
    a quantized one straight onto CUDA device ``gpu`` (the process's own: ``LOCAL_RANK``).

    The dtype is stated: transformers 5 loads in the dtype the checkpoint was published in
    (``dtype="auto"``), so a base model published in bf16 would train, and merge the adapter, in
    pure bf16. Training keeps fp32 master weights (bf16 is autocast, ``train.bf16``); generation
    casts after loading and merging (``generate.bf16``).
    """
    import torch
    from transformers import AutoModelForSeq2SeqLM

    refuse_pickle(folder)
    overrides = {} if dropout_rate is None else {"dropout_rate": dropout_rate}
    overrides.update(weights_kwargs(weights, torch.cuda.is_available()))
    if "quantization_config" in overrides:
        from importlib.util import find_spec

        # Not a declared dependency: a GPU-only library, installed by those who quantize.
        if find_spec("bitsandbytes") is None:
            raise ModelError(f"train.base_weights: {weights} needs bitsandbytes: pip install bitsandbytes")
        # Quantized weights load onto the GPU, each process's onto its own: nothing set the device
        # yet (accelerate does, later), so current_device() is 0 in every rank; transformers then
        # takes ranks >= 1 for model parallel and accelerate refuses a 4/8-bit model there.
        overrides["device_map"] = {"": gpu}
    with _own_head_quietly(), loading(folder):
        return AutoModelForSeq2SeqLM.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False, **overrides
        )


@contextmanager
def loading(folder: Path):
    """Within the block, weights that do not load from ``folder`` (a safetensors file cut short
    or damaged; a config.json or adapter_config.json whose sizes do not fit the weights, or that
    the loader refuses) raise ``ModelError`` naming the folder, instead of the library's
    traceback; transformers' table of mismatched sizes, which the error replaces, is not logged.
    Out of memory stays what it is."""
    import torch
    from safetensors import SafetensorError

    def mismatch_table(message: str) -> bool:
        return "LOAD REPORT" in message and "MISMATCH" in message

    mend = "restore the folder, or rebuild it with `dvc repro`"
    try:
        with dropping_log_lines("transformers.modeling_utils", mismatch_table):
            yield
    except SafetensorError as exc:
        raise ModelError(f"{folder}: a safetensors file there does not load ({first_line(exc)}): it is "
                         f"cut short or damaged; {mend}") from None
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        if "size" not in str(exc) and "dimension" not in str(exc):
            raise
        # transformers' own message points at the table dropped above; torch's and peft's put
        # the tensor at fault on a later line
        lines = str(exc).splitlines()
        detail = ("tensor sizes differ" if "ignore_mismatched_sizes" in str(exc) else
                  next((line.strip() for line in lines if "size mismatch" in line), first_line(exc)))
        raise ModelError(f"{folder}: its config does not fit its weights ({detail[:120]}): a damaged or "
                         f"edited config; {mend}") from None
    except ValueError as exc:  # a config the loader refuses (peft: r <= 0, target modules not found)
        raise ModelError(f"{folder}: its config is refused ({first_line(exc)}); {mend}") from None


@contextmanager
def dropping_log_lines(logger_name: str, drop: Callable[[str], bool]):
    """Within the block, the records of logger ``logger_name`` whose message ``drop`` accepts
    are not emitted; every other record is."""
    logger = logging.getLogger(logger_name)

    def keep(record: logging.LogRecord) -> bool:
        return not drop(record.getMessage())

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _own_head_quietly():
    """Load without transformers' "tie shared.weight to lm_head.weight, but both are present in
    the checkpoints with different values, so we will NOT tie them" warning. flan-T5 (T5 v1.1)
    has an output head of its own; transformers 5 forces ``T5Config.tie_word_embeddings`` to
    True, finds both matrices in the checkpoint and rightly keeps them apart, then asks the user
    to edit a config.json they do not own. Only that message is dropped;
    tests/test_modeling.py checks the head still loads as its own matrix."""
    return dropping_log_lines("transformers.modeling_utils",
                              lambda message: "present in the checkpoints with different values" in message)


def merge_adapter(model):
    """``merge_and_unload`` without peft's "Input and output embeddings are no longer tied after
    merging" warning: flan-T5's head was never tied to its embedding (``_own_head_quietly``), and
    peft's fix, ``tie_word_embeddings=False`` in the config, is what the checkpoint says anyway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input and output embeddings are no longer tied after merging")
        return model.merge_and_unload()


def published_name(model: Model) -> tuple[str, str | None]:
    """How a trained artifact names its base model so that it loads on another machine: the hub
    id and commit, or a local folder's path relative to the project and its content hash (the
    pin ``resolve`` checked), which every loader of the artifact checks again. Never the cache
    folder it was loaded from, which exists on one machine only and would make the artifact's
    bytes depend on ``HF_HOME``."""
    local = Path(model.name)
    if not local.is_dir():
        return model.name, model.revision
    try:
        return local.resolve().relative_to(Path.cwd().resolve()).as_posix(), model.revision
    except ValueError:  # outside the project: the path as params give it
        return model.name, model.revision


def load_variant(folder: Path, variant: str, trained: Path, merge: bool,
                 dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The model to generate with: the original (``base``, from ``folder``), base + the LoRA
    adapter in ``trained`` (``lora``), or the fully fine-tuned model in ``trained`` (``full``),
    cast to ``dtype`` when given (e.g. bf16 for generation on a GPU).

    Merging folds ``B @ A * alpha / r`` into the frozen weights, so generation runs at the base
    model's speed; the outputs match the unmerged model up to float rounding (tested). The merge
    happens in the weights' own fp32 and the cast after it, so bf16 rounds the sum once.

    A trained variant's folder is checked against its ``SHA256SUMS`` first (``stages.checksums``):
    a damaged adapter loads without complaint and generates garbage.
    """
    if variant in ("lora", "full"):
        checksums.verify(trained)
    if variant == "full":
        model = load_model(trained)
        return (model if dtype is None else model.to(dtype)).eval()
    model = load_model(folder)
    if variant == "lora":
        from peft import PeftModel

        refuse_pickle(trained)
        with peft_quietly(), loading(trained):
            model = PeftModel.from_pretrained(model, trained, is_trainable=False)
        if merge:
            model = merge_adapter(model)
    elif variant != "base":
        raise ModelError(f"unknown variant {variant!r}")
    return (model if dtype is None else model.to(dtype)).eval()


@contextmanager
def peft_quietly():
    """Wrap a peft model without the FutureWarning transformers 5 raises because peft 0.21 reads
    ``model.is_gradient_checkpointing`` (renamed ``is_activation_checkpointing``) while it wraps:
    not our call, and nothing a user can act on. Only that message is silenced, only here;
    tests/test_modeling.py fails once peft stops reading the old name, so this can go."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


def library_versions() -> dict[str, str]:
    """The versions that decide what a run computes, recorded with the training metrics."""
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "peft", "datasets", "accelerate")}


def peak_memory_mb() -> float:
    """Peak GPU memory allocated when there is a GPU, else the process's peak resident memory."""
    import resource

    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(setting: str | bool, key: str = "train.bf16") -> bool:
    """bf16 where the GPU supports it (``auto``); never fp16, where T5 overflows. ``key`` names
    the param in the error."""
    import torch

    # including_emulation=False: a T4 or V100 "supports" bf16 only by emulating it, far slower
    # than fp32 there; auto means bf16 where the GPU computes in it.
    supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if setting is True and not supported:
        raise ModelError(f"{key}: true, but this machine has no GPU with bf16 support")
    return supported if setting == "auto" else bool(setting)
