"""Models load pinned and safely; a merged LoRA adapter generates what the unmerged one does."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from stages import checksums, modeling
from stages.errors import ModelError
from stages.params import Hub, Model

HUB = Hub(timeout_s=5)


def test_local_folder_is_pinned_by_content_hash(tiny_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    pin = modeling.folder_hash(copy)
    assert modeling.resolve(Model(name=str(copy), revision=pin), HUB).pin == pin
    # never pinned: the hash to pin is the answer
    unpinned = r"^model.revision: .* is a local folder, .* set revision: 'sha256:[0-9a-f]{64}'"
    with pytest.raises(ModelError, match=unpinned):
        modeling.resolve(Model(name=str(copy), revision=None), HUB)


def test_a_changed_pinned_folder_is_answered_with_restoring_it_first(tiny_model, tmp_path):
    """Damaged bytes are not a new model: the error says the folder changed since it was pinned
    and how to restore it, and only after that how to pin a changed model on purpose."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    pin = modeling.folder_hash(copy)
    (copy / "README.md").write_text("changed")
    with pytest.raises(ModelError) as caught:
        modeling.resolve(Model(name=str(copy), revision=pin), HUB)
    message = str(caught.value)
    assert message.startswith(f"model.revision: the files of {copy} changed since it was pinned")
    assert "\n" not in message
    restore, repin = message.index("dvc checkout"), message.index("set revision: 'sha256:")
    assert restore < repin and "on purpose" in message[restore:repin]


def test_an_unchanged_local_folder_is_hashed_once_and_a_changed_one_again(tiny_model, tmp_path, monkeypatch):
    """Every stage checks a local model's pin: the ~1 GB folder is read once, not per stage; any
    change, even one that keeps a file's size and restores its mtime, is seen."""
    copy, stamps = tmp_path / "model", tmp_path / "stamps"
    shutil.copytree(tiny_model, copy)
    pin = modeling.folder_hash(copy)
    hashed = []
    real = modeling.folder_hash
    monkeypatch.setattr(modeling, "folder_hash", lambda folder: hashed.append(folder) or real(folder))
    model = Model(name=str(copy), revision=pin)
    for _ in range(3):
        assert modeling.resolve(model, HUB, stamps=stamps).pin == pin
    assert len(hashed) == 1
    config = copy / "config.json"
    before = config.stat()
    text = config.read_text()
    config.write_text(text.replace('"d_model"', '"d_modem"', 1))  # same size
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))  # the old mtime, as `cp -p` / `touch -d` can
    assert config.stat().st_size == before.st_size
    with pytest.raises(ModelError, match="model.revision"):
        modeling.resolve(model, HUB, stamps=stamps)
    assert len(hashed) == 2
    (copy / "extra.txt").write_text("x")  # a file added
    with pytest.raises(ModelError, match="model.revision"):
        modeling.resolve(model, HUB, stamps=stamps)


def test_hub_model_needs_a_revision():
    with pytest.raises(ModelError, match="model.revision"):
        modeling.resolve(Model(name="google/flan-t5-base", revision=None), HUB)


def test_hub_model_resolves_offline_from_the_cache(tiny_model, tmp_path, monkeypatch):
    commit = "a" * 40
    repo = tmp_path / "models--org--tiny"
    shutil.copytree(tiny_model, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    resolved = modeling.resolve(Model(name="org/tiny", revision=commit), HUB)
    assert resolved.pin == commit
    assert modeling.load_tokenizer(resolved.folder).eos_token == "</s>"
    # a revision the cache lacks is the fault of model.revision, not model.name
    with pytest.raises(ModelError, match=rf"^model.revision: model org/missing@{commit}: not in the local hub cache"):
        modeling.resolve(Model(name="org/missing", revision=commit), HUB)
    # a branch moves on the hub unseen by DVC: refused, with the command that pins it
    with pytest.raises(ModelError, match=r"^model.revision: 'main' is a branch .* `python -m stages.hub pin`"):
        modeling.resolve(Model(name="org/tiny", revision="main"), HUB)


def test_pickle_weights_are_refused(tiny_model, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="no safetensors weights.*pytorch_model.bin"):
        modeling.load_model(folder)


@pytest.mark.parametrize("damage, says", [
    ("truncate", r"a safetensors file there does not load \(.*\): it is cut short or damaged"),
    ({"d_model": 256}, r"its config does not fit its weights \(tensor sizes differ\)"),
    ({"d_model": -5}, r"its config does not fit its weights \(.*negative dimension"),
])
def test_damaged_weights_or_config_are_one_error_naming_the_folder(tiny_model, tmp_path, damage, says,
                                                                   transformers_log):
    import json

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    if damage == "truncate":
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | damage))
    with pytest.raises(ModelError, match=f"^{folder}: {says}"):
        modeling.load_model(folder)
    assert not any("MISMATCH" in message for message in transformers_log)  # the error replaces the table


@pytest.mark.parametrize("change, says", [
    ({"r": 8}, r"its config does not fit its weights \(size mismatch for .*lora_A"),
    ({"r": -5}, r"its config is refused \(`r` should be a positive integer"),
])
def test_an_adapter_config_that_does_not_fit_is_one_error_naming_the_folder(tiny_model, tmp_path, change, says):
    import json

    from peft import LoraConfig, get_peft_model

    adapter = tmp_path / "adapter"
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q", "v"], task_type="SEQ_2_SEQ_LM")
    get_peft_model(modeling.load_model(tiny_model), config).save_pretrained(adapter)
    saved = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps(saved | change))
    checksums.write(adapter)  # edited before its manifest was written: only the loader can tell
    with pytest.raises(ModelError, match=f"^{adapter}: {says}"):
        modeling.load_variant(tiny_model, "lora", adapter, merge=False)


def test_merged_adapter_generates_like_unmerged(tiny_model, tmp_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=64, target_modules=["q", "v", "o", "wo"],
                        task_type="SEQ_2_SEQ_LM",
                        init_lora_weights=False)  # non-zero B: the adapter must change outputs
    get_peft_model(modeling.load_model(tiny_model), config).save_pretrained(tmp_path / "adapter")
    checksums.write(tmp_path / "adapter")  # as the training stages write it: load_variant checks it
    tokenizer = modeling.load_tokenizer(tiny_model)
    batch = tokenizer(["#Person1#: Can I book a table for two at 7 pm?\n#Person2#: Sure."],
                      return_tensors="pt")
    outputs = {}
    for name, variant, merge in [("base", "base", False), ("unmerged", "lora", False), ("merged", "lora", True)]:
        model = modeling.load_variant(tiny_model, variant, tmp_path / "adapter", merge)
        with torch.inference_mode():
            outputs[name] = model.generate(**batch, max_new_tokens=16, do_sample=False).tolist()
    assert outputs["merged"] == outputs["unmerged"]
    assert outputs["unmerged"] != outputs["base"]


def test_a_checkpoint_published_in_bf16_loads_in_fp32(tiny_model, tmp_path):
    """transformers 5 loads a checkpoint in its own dtype unless told: a bf16 base model would
    train and merge its adapter in pure bf16."""
    modeling.load_model(tiny_model).to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    shutil.copy(tiny_model / "tokenizer.json", tmp_path / "bf16")
    assert {p.dtype for p in modeling.load_model(tmp_path / "bf16").parameters()} == {torch.float32}


def test_published_name_is_the_hub_id_or_a_project_relative_path_with_its_pin(tiny_model, monkeypatch):
    hub = Model(name="google/flan-t5-base", revision="7bcac572ce56db69c1ea7c8af255c5d7c9672fc2")
    assert modeling.published_name(hub) == (hub.name, hub.revision)
    monkeypatch.chdir(tiny_model.parents[1])  # the project root
    assert modeling.published_name(Model(name=str(tiny_model), revision="sha256:x")) == ("demo/tiny-t5", "sha256:x")


def test_wrapping_with_peft_warns_nothing(tiny_model, tmp_path):
    import inspect
    import warnings

    import peft

    from stages.params import Lora
    from stages.train_lora import add_lora, save_adapter

    lora = Lora(r=4, alpha=8, dropout=0.0, target_modules=["q", "v"], bias="none", task_type="SEQ_2_SEQ_LM")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_adapter(add_lora(modeling.load_model(tiny_model), lora, seed=0), tmp_path / "lora")
        checksums.write(tmp_path / "lora")
        modeling.load_variant(tiny_model, "lora", tmp_path / "lora", merge=True)
    assert [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))] == []
    # modeling.peft_quietly exists for this line of peft; when an upgrade drops it, drop the filter.
    assert "is_gradient_checkpointing" in inspect.getsource(peft.peft_model), "remove modeling.peft_quietly"


def test_bf16_auto_only_where_the_gpu_computes_in_bf16(monkeypatch):
    """A T4 or V100 reports bf16 support by emulation: auto must not pick it there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert modeling.use_bf16("auto") is False
    with pytest.raises(ModelError, match="train.bf16: true, but this machine has no GPU with bf16 support"):
        modeling.use_bf16(True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an A100, H100
    assert modeling.use_bf16("auto") is True


def test_a_head_of_its_own_loads_as_its_own_without_a_warning(tiny_model, tmp_path, transformers_log):
    """flan-T5's checkpoint has an lm_head distinct from its embedding, and its config says
    ``tie_word_embeddings: false``; transformers 5 ties T5's anyway unless both are in the
    checkpoint, and then warns. The head must stay its own (a tied one would summarise with the
    embedding), with no warning at loading or at merging an adapter."""
    import json
    import warnings

    from transformers import AutoModelForSeq2SeqLM

    from stages.params import Lora
    from stages.train_lora import add_lora, save_adapter

    model = modeling.load_model(tiny_model)
    head = torch.nn.Parameter(torch.randn_like(model.shared.weight) * 0.05)
    model.lm_head.weight = head
    model.all_tied_weights_keys.pop("lm_head.weight", None)
    own = tmp_path / "own-head"
    model.save_pretrained(own)
    shutil.copy(tiny_model / "tokenizer.json", own)
    config = json.loads((own / "config.json").read_text())
    (own / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": False}))

    AutoModelForSeq2SeqLM.from_pretrained(own)  # without the filter: transformers warns
    assert any("NOT tie" in line for line in transformers_log), "transformers no longer warns: drop _own_head_quietly"
    transformers_log.clear()
    loaded = modeling.load_model(own)
    save_adapter(add_lora(loaded, Lora(r=4, alpha=8, dropout=0.0, target_modules=["q", "v"], bias="none",
                                       task_type="SEQ_2_SEQ_LM"), seed=0), tmp_path / "lora")
    checksums.write(tmp_path / "lora")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged = modeling.load_variant(own, "lora", tmp_path / "lora", merge=True)
    assert transformers_log == []
    assert [str(w.message) for w in caught] == []
    for m in (modeling.load_model(own), merged):
        assert m.lm_head.weight.data_ptr() != m.shared.weight.data_ptr()
        assert torch.equal(m.lm_head.weight, head.detach())


def test_measuring_a_prompt_longer_than_the_model_takes_warns_nothing(tiny_model, transformers_log):
    """``prompt.fit`` measures prompts before cutting them: the tokenizer's "longer than the
    specified maximum sequence length" warning would report what fit is about to fix."""
    from stages import prompt
    from stages.params import Prompt

    tokenizer = modeling.load_tokenizer(tiny_model)
    tokenizer.model_max_length = 32
    tokenizer(["word " * 40])  # the warning this test would see, once per tokenizer: not here
    assert transformers_log, "the tokenizer no longer warns of long inputs: the verbose=False calls can go"
    transformers_log.clear()
    tokenizer = modeling.load_tokenizer(tiny_model)
    tokenizer.model_max_length = 32
    fitted, cut = prompt.fit(tokenizer, Prompt(template="Summarize: {dialogue} Summary: ",
                                               max_source_length=32, max_target_length=16),
                             ["#Person1#: " + "we should meet at seven tomorrow. " * 20])
    assert transformers_log == []
    assert cut == [True] and len(tokenizer(fitted[0])["input_ids"]) <= 32
