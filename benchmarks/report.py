"""Ratios, the issue's targets, and the markdown table written next to the JSON results."""

from __future__ import annotations

# (name, what is compared, target ratio or limit, "min" = the ratio must reach it, "max" = stay under)
TARGETS = (
    ("inference vs one-at-a-time", ("inference", "pipeline", "one_at_a_time"), 10.0, "min"),
    ("inference vs HF predict", ("inference", "pipeline", "hf_predict"), 1.5, "min"),
    ("training vs pad-to-512 (samples/s)", ("training", "pipeline", "reference"), 2.5, "min"),
    ("training vs HF defaults (samples/s)", ("training", "pipeline", "hf_defaults"), 1.2, "min"),
)
DVC_REPRO_LIMIT_S = 2.0
RATE = {"training": "samples_per_s", "inference": "dialogues_per_s"}


def ratios(results: dict) -> dict[str, float]:
    """Each target's ratio: the pipeline's rate over the other's, same machine, same model."""
    out = {}
    for name, (part, ours, theirs), _, _ in TARGETS:
        rates = results[part]["paths"]
        out[name] = rates[ours][RATE[part]] / rates[theirs][RATE[part]]
    return out


def targets(results: dict) -> list[dict]:
    rows = [{"target": name, "value": round(value, 2), "goal": f">= {goal:g}x", "met": value >= goal}
            for (name, _, goal, _), value in zip(TARGETS, ratios(results).values())]
    dvc = results["overhead"]["dvc"]
    if "skipped" in dvc:
        rows.append({"target": "dvc repro, nothing to do", "value": None, "goal": f"<= {DVC_REPRO_LIMIT_S:g} s",
                     "met": None, "note": dvc["skipped"]})
    else:
        best = round(dvc["dvc_repro"]["best_s"], 2)
        rows.append({"target": "dvc repro, nothing to do", "value": best, "goal": f"<= {DVC_REPRO_LIMIT_S:g} s",
                     "met": best <= DVC_REPRO_LIMIT_S})
    return rows


def encoder_split(infer: dict) -> str:
    """Where the inference time goes: the encoder (timed alone) and the rest, mostly decoding."""
    ours, loop = infer["pipeline"], infer["one_at_a_time"]
    line = (f"Encoder alone over the same batches: {ours['encoder_seconds']:.2f} s of the pipeline's "
            f"{ours['seconds']:.2f} s, {loop['encoder_seconds']:.2f} s of one-at-a-time's {loop['seconds']:.2f} s")
    ours_rest, loop_rest = ours["seconds"] - ours["encoder_seconds"], loop["seconds"] - loop["encoder_seconds"]
    if ours_rest > 0 and loop_rest > 0:
        line += (f"; encoder {loop['encoder_seconds'] / ours['encoder_seconds']:.1f}x, the rest (decoding) "
                 f"{loop_rest / ours_rest:.1f}x faster batched")
    return line + "."


def _mb(value: float) -> str:
    return f"{value:,.0f} MB"


def markdown(results: dict) -> str:
    """The short table: throughput side by side, the targets, the checks, the overhead."""
    w = results["workload"]
    lines = [f"## {results['shape']}: {results['model']['note']} ({results['model']['parameters']:,} parameters)",
             "",
             f"{results['device']}, {results['threads']} threads; load average {results['load_average']}",
             "",
             f"Training: {w['train_steps']} optimizer steps of batch {w['train_batch_size']} per strategy "
             f"(same examples, LoRA r={w['lora_r']} on {','.join(w['lora_targets'])}):",
             "",
             "| strategy | samples/s | target tokens/s | padding | peak memory | ratio (pipeline / this) |",
             "|---|---:|---:|---:|---:|---:|"]
    train = results["training"]["paths"]
    for name, r in train.items():
        ratio = train["pipeline"]["samples_per_s"] / r["samples_per_s"]
        lines.append(f"| {name} | {r['samples_per_s']:.2f} | {r['target_tokens_per_s']:.0f} | "
                     f"{100 * r['padding_share']:.0f} % | {_mb(r['peak_memory_mb'])} | {ratio:.2f}x |")
    lines += ["", f"Inference: {w['infer_dialogues']} dialogues, batch {w['infer_batch_size']}, exactly "
              f"{w['new_tokens']} new tokens each (greedy):", "",
              "| path | dialogues/s | generated tokens/s | peak memory | ratio (pipeline / this) |",
              "|---|---:|---:|---:|---:|"]
    infer = results["inference"]["paths"]
    for name, r in infer.items():
        ratio = infer["pipeline"]["dialogues_per_s"] / r["dialogues_per_s"]
        lines.append(f"| {name} | {r['dialogues_per_s']:.2f} | {r['generated_tokens_per_s']:.0f} | "
                     f"{_mb(r['peak_memory_mb'])} | {ratio:.2f}x |")
    lines += ["", encoder_split(infer)]
    lines += ["", "| target | value | goal | met |", "|---|---:|---:|---|"]
    for t in results["targets"]:
        met = {True: "yes", False: "**no**", None: "skipped"}[t["met"]]
        value = "-" if t["value"] is None else t["value"]
        note = f" ({t['note']})" if "note" in t else ""
        lines.append(f"| {t['target']} | {value} | {t['goal']} | {met}{note} |")
    check = results["training"]["loss_check"]
    agree = results["inference"]["agreement"]
    lines += ["",
              f"Loss on one batch: dynamic padding {check['dynamic_labels_-100']:.5f}, padded to 512 with -100 "
              f"labels {check['pad512_labels_-100']:.5f} (equal: {check['dynamic_equals_pad512']}), padded to 512 "
              f"with pad-id labels {check['pad512_labels_pad_id']:.5f} (differs: {check['pad_id_labels_differ']}).",
              f"Greedy outputs identical to the pipeline's: one-at-a-time "
              f"{agree['one_at_a_time_identical_to_pipeline']}/{agree['dialogues']}, HF predict "
              f"{agree['hf_predict_identical_to_pipeline']}/{agree['dialogues']}.",
              "", "| command | wall time (best) | imports torch |", "|---|---:|---|"]
    for name, r in results["overhead"]["cli"].items():
        lines.append(f"| python -m {name} | {r['best_s']:.2f} s | {r['imports_torch']} |")
    dvc = results["overhead"]["dvc"]
    if "skipped" in dvc:
        lines.append(f"| dvc status / dvc repro (nothing to do) | skipped: {dvc['skipped']} | |")
    else:
        for name in ("dvc_status", "dvc_repro"):
            lines.append(f"| {name.replace('_', ' ')} in {dvc['project']}/ (nothing to do) | "
                         f"{dvc[name]['best_s']:.2f} s | |")
    return "\n".join(lines) + "\n"
