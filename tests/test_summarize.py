"""python -m stages.summarize: new dialogues in, one summary each out; bad input one error line;
--merge writes a plain model with the same greedy summaries; --rev fetches a revision's adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages import summarize
from stages.errors import DataError
from tests.conftest import ROOT, copy_project

TWO = "#Person1#: Hi, how are you?\n#Person2#: Fine. I need to see a doctor.\n\n\n" \
      "#Person1#: Where is the bank?\r\n#Person2#: Next to the station, on your left.\n"


def test_dialogues_are_read_from_text_jsonl_and_csv():
    assert [r["dialogue"] for r in summarize.parse_dialogues(TWO, "text", "t")] == [
        "#Person1#: Hi, how are you?\n#Person2#: Fine. I need to see a doctor.",
        "#Person1#: Where is the bank?\n#Person2#: Next to the station, on your left."]
    rows = summarize.parse_dialogues('{"id": "a", "dialogue": "x"}\n\n{"dialogue": "y"}\n', "jsonl", "j")
    assert rows == [{"id": "a", "dialogue": "x"}, {"id": "2", "dialogue": "y"}]
    # JSON allows U+2028 unescaped in a string: it is not a line break of JSON Lines
    rows = summarize.parse_dialogues('{"dialogue": "#Person1#: Hi.\u2028#Person2#: Hello."}\n', "jsonl", "j")
    assert rows == [{"id": "1", "dialogue": "#Person1#: Hi.\u2028#Person2#: Hello."}]
    rows = summarize.parse_dialogues('id,dialogue\nq,"one\n\ntwo"\n', "csv", "c")
    assert rows == [{"id": "q", "dialogue": "one\n\ntwo"}]  # a quoted csv field keeps its blank line
    assert summarize.format_of("x.JSONL", None) == "jsonl" and summarize.format_of("x.md", None) == "text"


@pytest.mark.parametrize("text, fmt, says", [
    ('{"dialogue": "ok"}\n{"dialogue": 3', "jsonl", "line 2: not JSON"),
    ('["a list"]\n', "jsonl", 'line 1: expected an object with a "dialogue" string'),
    ("id,text\n1,hello\n", "csv", "no 'dialogue' column (columns: id, text)"),
    ("\n\n  \n", "text", "no dialogue in it"),
    ('id,dialogue\n1,""\n', "csv", "dialogue 1 is empty"),
])
def test_malformed_input_is_named(text, fmt, says):
    with pytest.raises(DataError, match=f"^in.{fmt}: .*{says.replace('(', '.').replace(')', '.')}"):
        summarize.parse_dialogues(text, fmt, f"in.{fmt}")


@pytest.fixture(scope="module")
def project(built_project, tmp_path_factory):
    return copy_project(built_project, tmp_path_factory.mktemp("summarize") / "p")


def run_main(monkeypatch, capsys, project, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(project)
    code = 0
    try:
        summarize.main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=__import__("sys").stderr)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_two_dialogue_file_gives_two_summaries_and_a_bad_one_one_error(project, tmp_path, monkeypatch, capsys):
    (tmp_path / "two.txt").write_text(TWO)
    code, out, _ = run_main(monkeypatch, capsys, project, str(tmp_path / "two.txt"))
    summaries = out.splitlines()
    assert code == 0 and len(summaries) == 2 and all(s.strip() for s in summaries)

    code, out, _ = run_main(monkeypatch, capsys, project, str(tmp_path / "two.txt"), "--out", "jsonl")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": "1", "summary": summaries[0]}, {"id": "2", "summary": summaries[1]}]

    (tmp_path / "bad.jsonl").write_text('{"dialogue": "#Person1#: Hi."}\n{"dialogue": \n')
    code, out, err = run_main(monkeypatch, capsys, project, str(tmp_path / "bad.jsonl"))
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1 and out == "" and errors == [f"error: {tmp_path / 'bad.jsonl'}: line 2: not JSON "
                                                  "(Expecting value)"]

    # The adapter of a git revision, through DVC: the committed one is the workspace's.
    code, out, _ = run_main(monkeypatch, capsys, project, str(tmp_path / "two.txt"), "--rev", "HEAD")
    assert code == 0 and out.splitlines() == summaries


def test_merge_writes_a_plain_model_with_the_same_greedy_summaries(project, tmp_path, monkeypatch, capsys):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from stages.params import load_params

    code, _, _ = run_main(monkeypatch, capsys, project, "--merge", str(tmp_path / "merged"))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "merged").glob("*.safetensors")) == ["model.safetensors"]
    merged = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert not any("lora" in name for name, _ in merged.named_parameters())

    params = load_params(project / "params.yaml")
    unmerged, _ = summarize.load(project / params.paths.model_dir("lora"), params, merge=False)
    dialogues = [r["dialogue"] for r in summarize.parse_dialogues(TWO, "text", "t")]
    expected = summarize.summarize(unmerged, tokenizer, dialogues, params.prompt, params.generate, "cpu")
    assert summarize.summarize(merged, tokenizer, dialogues, params.prompt, params.generate, "cpu") == expected


def test_json_arrays_are_read_as_dialogues_and_long_csv_cells_as_text():
    """A .json file (as data.file reads it: one array, or JSON Lines) is its dialogues, not one
    dialogue of raw JSON; a csv cell over the csv module's 131,072-character default is read."""
    assert summarize.format_of("chats.json", None) == "json"
    rows = summarize.parse_dialogues('[{"id": "a", "dialogue": "x"},\n {"dialogue": "y"}]', "json", "j")
    assert rows == [{"id": "a", "dialogue": "x"}, {"id": "2", "dialogue": "y"}]
    assert summarize.parse_dialogues('{"dialogue": "x"}\n', "json", "j") == [{"id": "1", "dialogue": "x"}]
    with pytest.raises(DataError, match=r'^in.json: item 2: expected an object with a "dialogue" string'):
        summarize.parse_dialogues('[{"dialogue": "x"}, "y"]', "json", "in.json")
    long = "#Person1#: " + "word " * 40_000  # 200,011 characters
    assert summarize.parse_dialogues(f'id,dialogue\n1,"{long}"\n', "csv", "c") == [{"id": "1", "dialogue": long}]
    import csv

    assert csv.field_size_limit() == 131_072  # the process-wide limit is left as it was


def errors_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_a_damaged_local_base_is_refused_in_one_line(project, tmp_path, monkeypatch, capsys):
    """The adapter pins its local base by content hash; summarize and --merge check it, as the
    stages do, instead of summarizing with a damaged base (wrong summaries, exit 0)."""
    from stages import modeling
    from stages.params import load_params

    params = load_params(project / "params.yaml")
    config = project / params.paths.model_dir("lora") / "adapter_config.json"
    assert params.model.revision.startswith("sha256:")
    assert json.loads(config.read_text())["revision"] == params.model.revision == \
        modeling.folder_hash(project / params.model.name)
    card = (project / params.paths.published_adapter() / "README.md").read_text()
    assert f"- revision: `{params.model.revision}`: the content hash of a local folder" in card
    assert "revision='sha256:" not in card  # the usage snippet: from_pretrained of a folder takes no revision
    (tmp_path / "two.txt").write_text(TWO)
    weights = project / params.model.name / "model.safetensors"
    good = weights.read_bytes()
    try:
        damaged = bytearray(good)
        damaged[len(good) // 2] ^= 0xFF
        weights.write_bytes(bytes(damaged))
        for args in ([str(tmp_path / "two.txt")], ["--merge", str(tmp_path / "merged")]):
            code, out, err = run_main(monkeypatch, capsys, project, *args)
            assert code == 1 and out == "" and errors_of(err) == [errors_of(err)[0]]
            assert errors_of(err)[0].startswith(f"error: {config.relative_to(project)}: the base model folder "
                                                f"{params.model.name} changed since the adapter was trained on it")
        assert not (tmp_path / "merged").exists()
    finally:
        weights.write_bytes(good)


def adapter_copy(project, tmp_path) -> Path:
    import shutil

    from stages.checksums import MANIFEST
    from stages.params import load_params

    adapter = tmp_path / "adapter"
    shutil.copytree(project / load_params(project / "params.yaml").paths.model_dir("lora"), adapter)
    (adapter / MANIFEST).unlink()  # a folder of one's own: summarize loads it without a manifest
    return adapter


class Payload:
    """A pickle that, loaded, creates the file it names: the proof that loading ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_an_adapter_saved_as_a_pickle_is_refused_before_loading(project, tmp_path, monkeypatch, capsys):
    import pickle

    adapter = adapter_copy(project, tmp_path)
    (adapter / "adapter_model.safetensors").unlink()
    marker = tmp_path / "ran"
    (adapter / "adapter_model.bin").write_bytes(pickle.dumps({"x": Payload(marker)}))
    (tmp_path / "two.txt").write_text(TWO)
    code, out, err = run_main(monkeypatch, capsys, project, str(tmp_path / "two.txt"), "--adapter", str(adapter))
    assert code == 1 and out == "" and not marker.exists()
    assert errors_of(err) == [f"error: {adapter}: no safetensors weights (found adapter_model.bin: pickle files "
                              "can run code when loaded)"]


def test_a_cut_short_adapter_is_one_error_line(project, tmp_path, monkeypatch, capsys):
    adapter = adapter_copy(project, tmp_path)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (tmp_path / "two.txt").write_text(TWO)
    code, out, err = run_main(monkeypatch, capsys, project, str(tmp_path / "two.txt"), "--adapter", str(adapter))
    assert code == 1 and out == "" and "Traceback" not in err
    assert errors_of(err) == [errors_of(err)[0]]
    assert errors_of(err)[0].startswith(f"error: {adapter}: a safetensors file there does not load")


def test_merge_onto_a_full_disk_is_one_line_and_writes_nothing(project, tmp_path, monkeypatch, capsys):
    """safetensors reports a full disk as its own error (this message is the one it gave on a
    full tmpfs), which ended --merge in a traceback."""
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    out = tmp_path / "out" / "merged"
    code, _, err = run_main(monkeypatch, capsys, project, "--merge", str(out))
    assert code == 1 and "Traceback" not in err
    assert errors_of(err) == [f"error: No space left on device: {out}; free space there and rerun"]
    assert list((tmp_path / "out").iterdir()) == []


def test_summaries_use_generate_bf16_on_a_gpu_of_their_own(tmp_path, monkeypatch, capsys):
    """As infer: generate.bf16 decides the dtype (false: fp32 even where the GPU has bf16), and
    the GPU is leased, so a summary never lands on a GPU a queued experiment holds."""
    import os
    import shutil

    import torch

    from stages import devices
    from tests.conftest import ROOT, set_params
    from tests.test_devices import fake_nvidia_smi

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, generate__bf16=False)
    (tmp_path / "one.txt").write_text("#Person1#: Hi.\n#Person2#: Hello.\n")
    monkeypatch.setenv("PATH", f"{fake_nvidia_smi(tmp_path / 'bin', 2)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(devices.LEASES, str(tmp_path / "leases"))
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", devices.POOL, devices.CLAIMED):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU box whose GPUs have bf16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    held = devices._held[:]
    devices._held.clear()
    queued = devices.lease(devices.pool(), 1)  # a queued experiment holds the first GPU
    experiment = devices._held[:]
    devices._held.clear()
    loaded = {}

    def load(adapter, params, merge, dtype=None):
        loaded.update(dtype=dtype, gpu=os.environ["CUDA_VISIBLE_DEVICES"])
        raise DataError("loaded")  # far enough

    monkeypatch.setattr(summarize, "load", load)
    environment = dict(os.environ)
    try:
        with pytest.raises(SystemExit):
            summarize.main([str(tmp_path / "one.txt"), "--params", str(tmp_path / "params.yaml"),
                            "--adapter", str(tmp_path / "adapter")])  # (load is replaced: no folder needed)
    finally:
        for handle in experiment + devices._held:
            handle.close()
        devices._held[:] = held
        os.environ.clear()  # claim() narrowed CUDA_VISIBLE_DEVICES for the process
        os.environ.update(environment)
    assert loaded["dtype"] == torch.float32
    assert loaded["gpu"] != queued[0] and loaded["gpu"] in devices.listed_gpus()


def test_a_binary_file_is_refused(tmp_path):
    (tmp_path / "chat.txt").write_bytes(b"#Person1#: Hi.\x00\x01\x02")
    with pytest.raises(DataError, match=r"chat.txt: byte 14 is NUL: not a text file; give dialogues as UTF-8 text"):
        summarize.read_input(str(tmp_path / "chat.txt"), None)


def test_without_a_trained_adapter_it_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    """From a project that trained nothing yet (a fresh clone's root), before reading any input."""
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    code, out, err = run_main(monkeypatch, capsys, tmp_path, "dialogues.txt")
    assert code == 1 and out == ""
    assert err.splitlines() == ["error: models/lora: no trained adapter here: dvc repro trains one, make "
                                "demo trains one in demo-run/ (run this there); or give --adapter DIR or --rev REV"]
    assert len(err.splitlines()[0]) <= 160
