"""Artifacts check themselves: the manifest a stage writes, and the loaders that refuse a mismatch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from demo.run import stage_env
from stages import checksums
from stages.checksums import MANIFEST, ChecksumError
from tests.conftest import copy_project


def flip(path: Path, count: int = 64) -> None:
    """Damage ``count`` bytes in the middle of a file, the way a failing disk or a bad copy does: in
    a safetensors file that is tensor data, so the file still loads, its numbers garbage."""
    data, mode = bytearray(path.read_bytes()), path.stat().st_mode
    at = len(data) // 2
    for i in range(at, min(at + count, len(data))):
        data[i] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    path.chmod(mode)  # a DVC cache object stays read-only: DVC then trusts it without hashing


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "adapter"
    (out / "sub").mkdir(parents=True)
    (out / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 40)
    (out / "adapter_config.json").write_text('{"r": 8}\n')
    (out / "sub" / "state.json").write_text("{}\n")
    (out / "README.md").write_text("the model card\n")
    checksums.write(out)
    return out


def test_manifest_lists_every_file_but_the_card_and_sha256sum_reads_it(folder):
    listed = [line.split("  ", 1)[1] for line in (folder / MANIFEST).read_text().splitlines()]
    assert listed == ["adapter_config.json", "adapter_model.safetensors", "sub/state.json"]
    checksums.verify(folder)
    (folder / "README.md").write_text("a new card, written when the artifact is published\n")
    checksums.verify(folder)  # the card is for people: no loader reads it
    if shutil.which("sha256sum"):  # the coreutils format: checkable without this project
        subprocess.run(["sha256sum", "--check", "--quiet", MANIFEST], cwd=folder, check=True)


@pytest.mark.parametrize("damage, message", [
    (lambda f: flip(f / "adapter_model.safetensors"),
     "{f}/adapter_model.safetensors: its sha256 differs from the one in {f}/SHA256SUMS, so the file is damaged; "
     "delete {f} and run `dvc checkout {f}` to restore it from the DVC cache; refused again, the cache copy is "
     "damaged too: `python -m stages.cache_check` sets it aside, then `dvc repro` rebuilds it"),
    (lambda f: (f / "sub" / "state.json").unlink(), "{f}/sub/state.json: listed in {f}/SHA256SUMS but missing; "),
    (lambda f: (f / "model.safetensors").write_bytes(b"x"), "{f}/model.safetensors: not listed in {f}/SHA256SUMS"),
    (lambda f: (f / MANIFEST).unlink(), "{f}: no SHA256SUMS to check its files against (made by an older version "
                                        "of this project, or damaged); `dvc repro` rebuilds it"),
], ids=["flipped bytes", "missing file", "unlisted weights", "no manifest"])
def test_a_mismatch_is_one_line_naming_the_file_and_the_remedy(folder, damage, message):
    damage(folder)
    with pytest.raises(ChecksumError) as refused:
        checksums.verify(folder)
    assert str(refused.value).startswith(message.format(f=folder))
    assert len(str(refused.value).splitlines()) == 1


def test_a_damaged_adapter_is_refused_before_it_loads(tiny_model, tmp_path):
    """load_variant (infer's loader) checks the trained folder first: a damaged adapter would load
    without complaint, its tensors garbage, and generate garbage with exit 0."""
    from stages import modeling
    from stages.params import Lora
    from stages.train_lora import add_lora, save_adapter

    lora = Lora(r=4, alpha=8, dropout=0.0, target_modules=["q", "v"], bias="none", task_type="SEQ_2_SEQ_LM")
    adapter = tmp_path / "lora"
    save_adapter(add_lora(modeling.load_model(tiny_model), lora, seed=0), adapter)
    checksums.write(adapter)
    modeling.load_variant(tiny_model, "lora", adapter, merge=True)
    flip(adapter / "adapter_model.safetensors")
    with pytest.raises(ChecksumError, match=f"^{adapter}/adapter_model.safetensors: its sha256 differs"):
        modeling.load_variant(tiny_model, "lora", adapter, merge=True)


def test_training_refuses_damaged_tokenized_data_in_one_line(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    adapter = (project / "models/lora/adapter_model.safetensors").read_bytes()
    # A stamped checkpoint folder, as an interrupted run leaves it (a finished one leaves none):
    # training with other data clears it, so it must still be there after the refusal.
    stamp = b'{"fingerprint": "an interrupted run\'s"}\n'
    (project / "checkpoints/lora").mkdir(parents=True)
    (project / "checkpoints/lora/fingerprint.json").write_bytes(stamp)
    arrow = next((project / "data/tokenized/train").glob("*.arrow"))
    flip(arrow)
    result = subprocess.run([sys.executable, "-m", "stages.train_lora"], cwd=project, env=stage_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {arrow.relative_to(project)}: its sha256 differs from the one in "
                      "data/tokenized/SHA256SUMS, so the file is damaged; delete data/tokenized and run "
                      "`dvc checkout data/tokenized` to restore it from the DVC cache; refused again, the cache "
                      "copy is damaged too: `python -m stages.cache_check` sets it aside, then `dvc repro` "
                      "rebuilds it"], result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "models/lora/adapter_model.safetensors").read_bytes() == adapter
    # refused before the data's hash could decide that the checkpoints belong to other data
    assert (project / "checkpoints/lora/fingerprint.json").read_bytes() == stamp
