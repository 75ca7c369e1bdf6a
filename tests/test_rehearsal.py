"""The GPU user's first run, rehearsed offline: the committed params.yaml through `dvc repro`,
against a hub cache in the client's own layout holding flan-t5-base's file set and DialogSum's.

The cache is what a first online run leaves in ``$HF_HOME/hub`` (blobs named by git-sha1 or
sha256, ``refs/main``, ``snapshots/<commit>/`` of relative symlinks), except that the demo
model's files stand in for flan-t5-base's config, tokenizer and safetensors weights, and the
repo's other weight formats are there as decoys: invalid bytes that a loader must never open
(an audit hook in every Python process of the run records what is opened under the cache).
Only step counts, batch sizes and the generation length differ from params.yaml. The run starts
as the README tells a GPU user: ``python -m stages.hub pin`` and a commit. With ``data.revision:
main`` the pin writes the commit the cache's ``main`` points at (``model.revision`` likewise);
with a commit already there (the file pinned and committed) it changes nothing and the cache holds
that commit. Names and commits are read from params.yaml, never repeated here.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from stages.hub import is_commit
from stages.params import read_yaml
from tests.conftest import ROOT

# Where the cache's branch points, for a revision params.yaml does not pin yet.
BRANCH_COMMIT = {"model": "70de170de170de170de170de170de170de170de1",
                 "data": "d1a105d1a105d1a105d1a105d1a105d1a105d1a1"}
DECOYS = ("pytorch_model.bin", "tf_model.h5", "flax_model.msgpack")
LFS = (".safetensors", ".bin", ".h5", ".msgpack")  # stored as LFS files: blobs named by sha256
TEST_DIALOGUES = 6
SHORTENED = {  # nothing else differs from the committed params.yaml
    "train": {"max_steps": 4, "eval_steps": 2, "logging_steps": 1, "warmup_steps": 1,
              "batch_size": 4, "eval_batch_size": 8},
    "generate": {"max_new_tokens": 8, "batch_size": 8},
}
# Installed as sitecustomize in every Python process of the run (dvc and each stage).
AUDIT = '''
import os, sys
_log, _root = os.environ["REHEARSAL_OPEN_LOG"], os.environ["REHEARSAL_WATCH"]
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if path.startswith(_root):
            with open(_log, "a", encoding="utf-8") as log:
                log.write(path + "\\n")
sys.addaudithook(_hook)
'''


def add_repo(hub: Path, name: str, commit: str, files: dict[str, bytes]) -> None:
    """One repo in the hub client's cache layout, ``main`` pointing at ``commit``."""
    repo = hub / name
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)  # no newline, as the client writes it
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file, data in files.items():
        if file.endswith(LFS):
            blob = hashlib.sha256(data).hexdigest()
        else:
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (snapshot / file).symlink_to(f"../../blobs/{blob}")


def dialogsum_files() -> dict[str, bytes]:
    """DialogSum's layout from the bundled sample: train_<n>, dev_<n>, and test_<n>_<k> with
    three summaries per test dialogue (the hub copy flattens them into three rows)."""
    sample = pd.read_json(ROOT / "data" / "sample" / "dialogsum_sample.jsonl", lines=True)
    sample = sample.drop_duplicates("dialogue").reset_index(drop=True)
    train, dev, test = sample[:24], sample[24:32], sample[32:32 + TEST_DIALOGUES]
    rows = {
        "train": train.assign(id=[f"train_{n}" for n in range(len(train))]),
        "validation": dev.assign(id=[f"dev_{n}" for n in range(len(dev))]),
        "test": pd.concat([
            test.assign(id=[f"test_{n}_{k}" for n in range(len(test))],
                        summary=test["summary"] + ("" if k == 1 else f" (annotator {k})"))
            for k in (1, 2, 3)]),
    }
    return {f"{name}.csv": frame[["id", "dialogue", "summary", "topic"]].to_csv(index=False).encode()
            for name, frame in rows.items()}


def flan_t5_base_files() -> dict[str, bytes]:
    tiny = ROOT / "demo" / "tiny-t5"
    files = {f.name: f.read_bytes() for f in tiny.iterdir() if f.name != "README.md"}
    files |= {name: b"decoy: never to be read\n" for name in DECOYS}
    return files


def cache_name(kind: str, repo_id: str) -> str:
    return f"{kind}--{repo_id.replace('/', '--')}"  # the hub client's folder for a repo


def test_first_real_run_offline(tmp_path: Path) -> None:
    from demo.run import stage_env, sync

    params = read_yaml((ROOT / "params.yaml").read_text(encoding="utf-8"))
    model, data = params["model"], params["data"]
    # the commit each repo is run at: params.yaml's when pinned, else the one its branch points to
    commit = {key: params[key]["revision"] if is_commit(params[key]["revision"]) else BRANCH_COMMIT[key]
              for key in ("model", "data")}
    hf_home = tmp_path / "hf"
    add_repo(hf_home / "hub", cache_name("models", model["name"]), commit["model"], flan_t5_base_files())
    add_repo(hf_home / "hub", cache_name("datasets", data["hub_id"]), commit["data"], dialogsum_files())
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT)
    opened = tmp_path / "opened.txt"
    env = stage_env() | {"HF_HOME": str(hf_home), "PYTHONPATH": str(hook),
                         "REHEARSAL_OPEN_LOG": str(opened), "REHEARSAL_WATCH": str(hf_home)}
    env.pop("HF_HUB_CACHE", None)

    for section, values in SHORTENED.items():
        params[section].update(values)
    project = tmp_path / "project"
    project.mkdir()
    sync(ROOT, project, params)

    def run(*command: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, *command], cwd=project, env=env,
                                capture_output=True, text=True, timeout=540)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        return result

    started = time.monotonic()
    pinned = [f"params.yaml: {key}.revision: {params[key]['revision']} -> {commit[key]}\n"
              for key in ("data", "model") if params[key]["revision"] != commit[key]]
    assert run("-m", "stages.hub", "pin").stdout == ("".join(pinned) or "params.yaml: revisions already pinned\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qam", "pin the revisions", "--allow-empty"], cwd=project, check=True)
    run("-m", "dvc", "repro")
    print(f"pin + dvc repro: {time.monotonic() - started:.0f} s")

    metrics = project / "metrics"
    split = json.loads((metrics / "records" / "split.json").read_text())
    assert split["source"] == f"{data['hub_id']}@{commit['data']}"
    assert split["strategy"] == params["split"]["strategy"]
    assert json.loads((metrics / "records" / "train_lora.json").read_text())["model_revision"] == commit["model"]
    assert {"base", "lora"} <= set(json.loads((metrics / "scores.json").read_text()))

    seen = {Path(p).name for p in opened.read_text().splitlines()}
    assert {"config.json", "tokenizer.json", "train.csv", "test.csv"} <= seen  # the hook works
    assert not seen & set(DECOYS), f"decoy weights opened: {seen & set(DECOYS)}"

    if params["split"]["strategy"] == "source":  # the data set's own splits (stratified re-splits them)
        assert (split["test"]["dialogues"], split["test"]["rows"]) == (TEST_DIALOGUES, 3 * TEST_DIALOGUES)
        assert (split["train"]["rows"], split["validation"]["rows"]) == (24, 8)
        # the official test set, each dialogue once, scored against all three of its references
        for variant in ("base", "lora"):
            lines = (project / "data" / "predictions" / f"{variant}.jsonl").read_text().splitlines()
            predictions = [json.loads(line) for line in lines]
            assert len(predictions) == TEST_DIALOGUES
            assert all(len(p["references"]) == 3 for p in predictions)
            assert sorted(p["id"] for p in predictions) == [f"test_{n}_1" for n in range(TEST_DIALOGUES)]


def test_a_copy_without_git_leaves_out_what_gitignore_ignores_and_the_workdir(tmp_path: Path) -> None:
    """On a GPU box the project may arrive without .git, with the wheels installed beside it
    (``pip install --target .site``) and the rehearsal's workdir inside it: copying those into
    the scratch project made a 1 GB commit that failed."""
    from benchmarks.rehearsal import project_files

    for name, text in {".gitignore": "/.site/\n*.pyc\n", "stages/a.py": "", "stages/a.pyc": "",
                       ".site/torch/lib.so": "", ".rehearsal/dvc.yaml": "", "data/.gitignore": "/split\n",
                       "data/split/train.parquet": "", "data/sample/s.jsonl": ""}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert project_files(tmp_path, leave_out=(tmp_path / ".rehearsal").resolve()) == [
        ".gitignore", "data/.gitignore", "data/sample/s.jsonl", "stages/a.py"]
