"""benchmarks.host: the counts that track a GPU's cost, pinned so that they do not grow back."""

from __future__ import annotations

import json

import pytest

from benchmarks import host
from stages.params import load_params
from tests.conftest import ROOT

# Counted on the demo's tiny model (2+2 layers) with params.yaml's recipe (LoRA on q, v; bf16 as a
# GPU runs it): 918 kernel-level ops per training micro-batch (1,026 while peft cast each LoRA
# input to fp32 and autocast cast it back and gelu_new ran as 8 ops), 164 per decode step, 2 host
# syncs per step when this was written. A change that adds ops per layer or a sync per step fails here.
TRAIN_OPS_TINY = 930
DECODE_OPS_TINY = 170
SYNCS_PER_STEP = 2


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def test_training_micro_batch_and_decode_step_ops_stay_within_their_bounds(tiny_model, params):
    train, by_region, calls = host.train_ops(tiny_model, params)
    assert 0 < sum(train.values()) <= TRAIN_OPS_TINY
    assert train["mm"] + train["addmm"] + train["bmm"] > 0  # the counter sees the model's matmuls
    # 2+2 layers: 2 encoder self-attentions, 2 decoder self- and 2 cross-attentions, each with a
    # backward; on CPU each runs SDPA's math path, many ops forward and backward.
    assert calls["attention", "forward"] == calls["attention", "backward"] == 6
    assert by_region["attention", "forward"] > 6 and by_region["attention", "backward"] > 6
    assert 0 < host.fused_estimate(train, by_region, calls) < sum(train.values())
    ops, syncs = host.decode_ops(tiny_model, params)
    assert 0 < ops <= DECODE_OPS_TINY
    assert syncs <= SYNCS_PER_STEP


def test_the_fused_estimate_is_the_count_where_the_cpu_fuses_too(tiny_model, params):
    """Without dropout the CPU runs SDPA as one fused kernel each way and no dropout at all: the
    estimate, which takes each attention call and each dropout as one kernel each way, is then
    the count itself."""
    no_dropout = params.model_copy(update={"lora": params.lora.model_copy(update={"dropout": 0.0}),
                                           "train": params.train.model_copy(update={"dropout_rate": 0.0})})
    train, by_region, calls = host.train_ops(tiny_model, no_dropout)
    assert calls["dropout", "forward"] == calls["dropout", "backward"] == 0
    assert by_region["attention", "forward"] == calls["attention", "forward"] == 6
    assert host.fused_estimate(train, by_region, calls) == sum(train.values())


def test_500_dialogsum_dialogues_decode_in_at_most_100_steps_with_an_h200s_memory(params):
    """The infer stage's own planner: ~970 sequential steps in batches of 32 before it."""
    assert host.decode_steps_500(params) <= 100
    assert host.decode_steps_500(params, batch_size=32) > 500
    assert host.decode_steps_500(params, memory_bytes=16 * 10**9) > host.decode_steps_500(params)


def test_json_is_one_object_with_every_documented_key(monkeypatch, capsys, tiny_model):
    monkeypatch.setattr(host, "score_seconds", lambda: (1.0, 2.0))
    monkeypatch.setattr(host, "startup_seconds", lambda repeats: ({"score": 0.5}, {"score": 0.75}))
    monkeypatch.setattr(host, "model_folder", lambda shape, workdir: tiny_model)
    host.main(["--shape", "tiny", "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert set(host.KEYS) <= set(figures)
    assert (figures["score_seconds"], figures["startup_seconds"]) == (1.0, {"score": 0.5})
