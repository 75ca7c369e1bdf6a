"""python -m stages.cache_check: the DVC cache checked against its own content addresses.

The end-to-end test is the fault as a user meets it: 64 bytes of the adapter's cache object
flipped, the workspace copy removed, ``dvc checkout`` restoring the damaged bytes as good.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from demo.run import stage_env
from stages import cache_check
from tests.conftest import copy_project, dvc, ran
from tests.test_checksums import flip

ADAPTER = "models/lora/adapter_model.safetensors"


def cache_object(project: Path, oid: str) -> Path:
    return project / ".dvc/cache/files/md5" / oid[:2] / oid[2:]


def adapter_oid(project: Path) -> str:
    """The adapter file's object, from the models/lora listing dvc.lock names."""
    listing = json.loads(cache_object(project, _lora_dir(project)).read_text())
    return next(entry["md5"] for entry in listing if entry["relpath"] == "adapter_model.safetensors")


def _lora_dir(project: Path) -> str:
    from stages.params import read_yaml

    lock = read_yaml((project / "dvc.lock").read_text())
    return next(out["md5"] for out in lock["stages"]["train_lora"]["outs"] if out["path"] == "models/lora")


def test_every_object_dvc_writes_is_named_by_the_md5_of_its_bytes(built_project):
    """What cache_check relies on, checked on a cache DVC wrote: files and folder listings alike."""
    found = cache_check.objects(built_project / ".dvc/cache/files/md5")
    assert any(oid.endswith(".dir") for oid, _ in found) and len(found) > 10
    assert cache_check.find_damaged(built_project / ".dvc/cache/files/md5") == []


def test_damaged_objects_are_found_and_set_aside(tmp_path):
    cache = tmp_path / "cache"
    folder = cache / "files" / "md5"
    good, bad = b"a good object\n", b"this object's bytes changed\n"
    for data in (good, bad):
        oid = hashlib.md5(data).hexdigest()
        (folder / oid[:2]).mkdir(parents=True, exist_ok=True)
        (folder / oid[:2] / oid[2:]).write_bytes(data)
    damaged_oid = hashlib.md5(bad).hexdigest()
    (folder / damaged_oid[:2] / damaged_oid[2:]).write_bytes(b"this object's bytes chanGed\n")
    (folder / "ab").mkdir(exist_ok=True)
    (folder / "ab" / "not-an-object.tmp").write_bytes(b"x")  # a transfer's temporary: not checked
    found = cache_check.find_damaged(folder)
    assert [(oid, problem.split(" to ")[0]) for oid, _, problem in found] == [(damaged_oid, "its bytes hash")]
    aside = cache_check.set_aside(found[0][1], damaged_oid, cache)
    assert aside == cache / "damaged" / damaged_oid and aside.read_bytes() == b"this object's bytes chanGed\n"
    assert cache_check.find_damaged(folder) == []


def test_junk_no_output_uses_is_set_aside_without_a_rebuild_to_promise(tmp_path, monkeypatch, capsys):
    """An object no output of dvc.lock uses (another revision's, or junk) is set aside like any
    damaged one, but `dvc repro` rebuilds nothing for it, and the closing line says so."""
    import pytest
    from dvc.repo import Repo

    Repo.init(str(tmp_path), no_scm=True).close()
    junk = cache_object(tmp_path, "0" * 32)
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"bytes that do not hash to the name\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as ended:
        cache_check.main([])
    assert "used by no output of this workspace's dvc.lock" in capsys.readouterr().out
    assert ended.value.code == ("1 of 1 objects damaged and set aside; no output of this workspace's "
                                "dvc.lock uses them: nothing here needs rebuilding")
    assert (tmp_path / ".dvc/cache/damaged" / ("0" * 32)).exists() and not junk.exists()


def test_a_damaged_adapter_in_the_cache_is_refused_set_aside_and_rebuilt(built_project, tmp_path):
    project = copy_project(built_project, tmp_path / "p")
    lock = (project / "dvc.lock").read_bytes()
    oid = adapter_oid(project)
    flip(cache_object(project, oid))
    (project / ADAPTER).unlink()
    dvc(project, "checkout")  # DVC hands the damaged bytes out as good ...
    assert json.loads(dvc(project, "status", "--json").stdout) == {}  # ... and calls them up to date

    result = dvc(project, "repro", "-f", "-s", "infer@lora", check=False)
    assert result.returncode != 0
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {ADAPTER}: its sha256 differs"), result.stderr
    assert (project / "dvc.lock").read_bytes() == lock  # no garbage predictions recorded
    assert not (project / "data/predictions/lora.jsonl").exists()  # DVC removed it first; infer wrote none

    check = subprocess.run([sys.executable, "-m", "stages.cache_check"], cwd=project, env=stage_env(),
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 1, check.stderr
    assert f"damaged: .dvc/cache/files/md5/{oid[:2]}/{oid[2:]}: " in check.stdout
    # the card stage ships a copy of the same bytes: one object, both uses named
    assert f"used by {ADAPTER} (stage train_lora)" in check.stdout
    assert f"; moved to .dvc/cache/damaged/{oid}" in check.stdout
    assert check.stderr.strip().endswith("set aside: `dvc repro` rebuilds the 1 that outputs here use "
                                         "(`dvc pull` fetches them from a remote that has them)"), check.stderr
    assert not cache_object(project, oid).exists()

    rebuilt = dvc(project, "repro")  # the object is missing now: train_lora reruns and stores it again
    assert "train_lora" in ran(rebuilt.stdout)  # infer@lora's predictions come back from DVC's run cache
    assert (project / ADAPTER).read_bytes() == (built_project / ADAPTER).read_bytes()
    for clean in ("data/predictions/lora.jsonl", "metrics/scores.json"):
        assert (project / clean).read_bytes() == (built_project / clean).read_bytes(), clean
    assert hashlib.md5(cache_object(project, oid).read_bytes()).hexdigest() == oid
    again = subprocess.run([sys.executable, "-m", "stages.cache_check"], cwd=project, env=stage_env(),
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "objects match their names" in again.stdout
