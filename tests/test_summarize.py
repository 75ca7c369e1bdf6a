"""python -m stages.summarize: new dialogues in, one summary each out; bad input one error line;
--merge writes a plain model with the same greedy summaries; --rev fetches a revision's adapter."""

from __future__ import annotations

import json

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
