"""Outputs appear whole or not at all, whatever interrupts the writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from stages.atomic import atomic_path, write_json
from tests.conftest import ROOT


def test_failed_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "scores.json"
    write_json(target, {"v": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text('{"v": 2, "half')
        raise KeyboardInterrupt  # Ctrl-C in the middle of a write
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_failed_folder_write_leaves_the_previous_folder(tmp_path):
    target = tmp_path / "split"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "train.parquet").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "train.parquet").write_text("new")
        raise RuntimeError("disk full")
    assert [p.name for p in target.iterdir()] == ["train.parquet"]
    assert (target / "train.parquet").read_text() == "old"


def test_folder_is_replaced_whole(tmp_path):
    target = tmp_path / "split"
    for files in (["a", "b"], ["c"]):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            for name in files:
                (tmp / name).write_text(name)
    assert sorted(p.name for p in target.iterdir()) == ["c"]


def test_sigkilled_split_leaves_outputs_intact_and_its_litter_is_cleared(tmp_path):
    """A real SIGKILL while split writes its second parquet file."""
    from demo.make_sample import generate, write_jsonl
    from stages.params import read_yaml

    write_jsonl(generate(200, seed=3), tmp_path / "data.jsonl")
    params = read_yaml((ROOT / "params.yaml").read_text())
    params["data"].update(source="file", file=str(tmp_path / "data.jsonl"))
    params["split"]["strategy"] = "stratified"  # the sample has no source splits
    from ruamel.yaml import YAML

    YAML(typ="safe").dump(params, tmp_path / "params.yaml")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "stages.split"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "data" / "split").iterdir()}
    killer = (
        "import os, signal, pandas as pd\n"
        "orig = pd.DataFrame.to_parquet\n"
        "calls = []\n"
        "def dying(self, *a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return orig(self, *a, **k)\n"
        "pd.DataFrame.to_parquet = dying\n"
        "from stages.split import main\n"
        "main(['--params', 'params.yaml'])\n"
    )
    params["seed"] = 7  # a different split, so a partial write would show
    YAML(typ="safe").dump(params, tmp_path / "params.yaml")
    killed = subprocess.run([sys.executable, "-c", killer], cwd=tmp_path, env=env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    after = {p.name: p.read_bytes() for p in (tmp_path / "data" / "split").iterdir()}
    assert after == before
    assert any(p.name.startswith(".split.tmp-") for p in (tmp_path / "data").iterdir())
    subprocess.run([sys.executable, "-m", "stages.split"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name.startswith(".")] == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "data" / "split").iterdir()} != before


KILLER = (
    "import os, runpy, signal, sys\n"
    "def dying(*args, **kwargs):\n"  # SIGKILL at the first rename: the moment outputs would land
    "    os.kill(os.getpid(), signal.SIGKILL)\n"
    "os.replace = dying\n"
    "sys.argv = [sys.argv[1], *sys.argv[2:]]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)

# stage module and arguments, and a params change that makes its new outputs differ
KILLED_STAGES = [
    (["stages.tokenize"], ("prompt", "max_target_length", 16)),
    (["stages.train_lora"], ("train", "learning_rate", 1.0e-4)),
    (["stages.infer", "--variant", "lora"], ("generate", "max_new_tokens", 4)),
    (["stages.score"], ("score", "examples", 1)),
]


def test_every_stage_killed_mid_write_leaves_its_outputs_intact(built_project, tmp_path):
    """SIGKILL each stage as it moves its outputs into place: the previous outputs stay whole."""
    from ruamel.yaml import YAML

    from demo.run import stage_env
    from tests.conftest import copy_project

    project = copy_project(built_project, tmp_path / "project")
    live = project / "metrics" / "train_lora"  # the loss curves, written live while training runs
    outputs = [p for p in project.rglob("*") if p.is_file() and not {".git", ".dvc"} & set(p.parts)
               and p.relative_to(project).parts[0] in ("data", "models", "metrics") and live not in p.parents]
    before = {p: p.read_bytes() for p in outputs}
    yaml = YAML()
    for command, (section, key, value) in KILLED_STAGES:
        params = yaml.load((project / "params.yaml").read_text())
        params[section][key] = value
        with (project / "params.yaml").open("w") as f:
            yaml.dump(params, f)
        killed = subprocess.run([sys.executable, "-c", KILLER, *command], cwd=project,
                                env=stage_env(), capture_output=True, text=True)
        assert killed.returncode == -signal.SIGKILL, (command, killed.stderr[-2000:])
        after = {p: p.read_bytes() for p in outputs if p.exists()}
        assert after == before, f"{command[0]} left changed or missing outputs"


def test_transaction_moves_every_output_only_when_its_check_passes(tmp_path):
    from stages.atomic import after_commit, transaction, write_text

    done = []
    write_text(tmp_path / "a.json", "old a")

    def refuse():
        raise ValueError("params changed")

    with pytest.raises(ValueError), transaction(refuse):
        write_text(tmp_path / "a.json", "new a")
        with atomic_path(tmp_path / "folder") as tmp:
            tmp.mkdir()
            (tmp / "w").write_text("w")
        after_commit(lambda: done.append("cleared"))
        assert (tmp_path / "a.json").read_text() == "old a"  # deferred
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "old a" and done == []

    with transaction(lambda: None):
        write_text(tmp_path / "a.json", "first")
        write_text(tmp_path / "a.json", "second")  # written twice: the last write counts
        after_commit(lambda: done.append((tmp_path / "a.json").read_text()))
    assert (tmp_path / "a.json").read_text() == "second" and done == ["second"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_litter_of_dead_writers_is_swept_and_live_ones_kept(tmp_path):
    from stages.atomic import sweep

    dead, live = 2**22 + 12345, os.getppid()
    for name in (f".x.tmp-{dead}", f".y.old-{dead}", f".x.tmp-{live}", ".keep", "x"):
        (tmp_path / name).write_text("")
    sweep(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".keep", f".x.tmp-{live}", "x"]


def test_a_weight_writers_full_disk_is_the_os_error_naming_the_output(tmp_path, monkeypatch):
    """safetensors and torch.save report a full disk as their own errors, which ended a stage in
    a traceback: inside atomic_path they are the OSError they stand for, naming the output, and
    the temporary is gone. Their messages here are the ones they gave on a full tmpfs."""
    import errno
    import shutil

    from safetensors import SafetensorError

    target = tmp_path / "models" / "lora"
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
    cases = [(full, 10**9, errno.ENOSPC), (torch_full, 0, errno.ENOSPC), (torch_full, 10**9, errno.EIO)]
    for error, free, code in cases:
        monkeypatch.setattr(shutil, "disk_usage", lambda path, free=free: shutil._ntuple_diskusage(10**9, 0, free))
        with pytest.raises(OSError) as caught, atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "adapter_model.safetensors").write_bytes(b"half")
            raise error
        assert (caught.value.errno, caught.value.filename) == (code, str(target))
        assert list((tmp_path / "models").iterdir()) == []
    with pytest.raises(RuntimeError, match="not a write"), atomic_path(target):
        raise RuntimeError("not a write")  # anything else is left as it is
