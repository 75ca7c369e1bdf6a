"""A stage's DVC metrics are the few figures people compare; its record beside them has the rest."""

from __future__ import annotations

import json

from stages import records
from stages.params import load_params
from tests.conftest import dvc


def leaves(tree: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}.{key}" if prefix else key).items()}


def test_metrics_show_is_scores_and_cost_and_each_record_holds_the_rest(built_project):
    shown = json.loads(dvc(built_project, "metrics", "show", "--json").stdout)
    files = {name: leaves(data["data"]) for name, data in shown[""]["data"].items()}
    values = {f"{name}:{key}": value for name, figures in files.items() for key, value in figures.items()}
    assert len(values) <= 40, sorted(values)
    scores = files["metrics/scores.json"]
    for variant in ("base", "lora"):  # side by side in `dvc metrics diff`, as reviews read them
        assert {f"{variant}.{key}" for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu")} <= set(scores)
    assert not [key for key in values if "sha256" in key or "versions" in key or "revision" in key]
    paths = load_params(built_project / "params.yaml").paths
    for name, figures in files.items():  # written together: the metrics are the record's figures
        record = leaves(json.loads((built_project / paths.record_of(name)).read_text()))
        assert figures == {key: record[key] for key in figures}, name
    train = json.loads((built_project / paths.train_record("lora")).read_text())
    assert train["params_sha256"] and train["versions"] and set(records.TRAIN) <= set(train)


def test_a_revision_without_records_is_diffed_from_its_metrics_file():
    from review.revisions import _either

    assert _either({"old": None, "new": 0.4}, {"old": 0.3, "new": 0.4}) == {"old": 0.3, "new": 0.4,
                                                                            "diff": 0.4 - 0.3}
    assert _either({"old": "cpu", "new": "0"}, {}) == {"old": "cpu", "new": "0"}  # no diff of text
