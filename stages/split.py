"""split: source data -> ``{paths.split}/{train,validation,test}.parquet`` + ``metrics/records/split.json``.

Reads params ``seed``, ``paths``, ``data``, ``split``.

Rows that share a dialogue (DialogSum's test set has three human summaries per dialogue) form
one group and always land in the same split, so no test dialogue is ever trained on. With
``strategy: stratified`` the groups are re-split, balanced by topic: each topic is cut by the
fractions on its own, and topics rarer than ``min_topic_size`` are pooled into one stratum
(DialogSum has thousands of one-off topics, which cannot be cut in three); a source without
topics (``data.columns.topic: null``) is cut as one stratum, a plain seeded split, and
``records/split.json`` says which (``stratified_by``). With ``strategy: source`` the source's own splits
are kept (DialogSum's official test set), to compare with published numbers.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from stages import cli, records, sources
from stages.atomic import atomic_path
from stages.errors import DataError
from stages.params import SPLITS, SplitFractions, load_params
from stages.sources import dialogue_key

log = logging.getLogger(__name__)
PARAMS = ("seed", "paths", "data", "split")  # sections read = dvc.yaml's `params:` (tests/test_faults.py)
POOLED = "(pooled rare topics)"
NO_TOPIC = "(no topic column)"


def allocate(n: int, fractions: SplitFractions) -> list[int]:
    """Split ``n`` groups by the fractions, rounding by largest remainder (sums to ``n``)."""
    exact = np.array([getattr(fractions, s) for s in SPLITS]) * n
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def stratified(frame: pd.DataFrame, fractions: SplitFractions, min_topic_size: int,
               seed: int, by_topic: bool = True) -> tuple[pd.Series, int]:
    """Split name per row, and how many topics were pooled. Without ``by_topic`` every dialogue
    is in one stratum: a plain seeded split."""
    keys = frame["dialogue"].map(dialogue_key)
    groups = frame.assign(key=keys).groupby("key", sort=True)["topic"].first()
    sizes = groups.value_counts()
    rare = sizes.index[sizes < min_topic_size] if by_topic else sizes.index[:0]
    strata = groups.where(~groups.isin(rare), POOLED) if by_topic else groups.map(lambda _: NO_TOPIC)
    rng = np.random.default_rng(seed)
    assigned: dict[str, str] = {}
    for _, members in strata.groupby(strata, sort=True):
        shuffled = rng.permutation(members.index.to_numpy())
        bounds = np.cumsum([0, *allocate(len(shuffled), fractions)])
        for name, lo, hi in zip(SPLITS, bounds[:-1], bounds[1:]):
            assigned.update(dict.fromkeys(shuffled[lo:hi], name))
    return keys.map(assigned), len(rare)


def from_source(frame: pd.DataFrame, origin: str) -> pd.Series:
    found = set(frame["source_split"])
    if found == {"all"}:  # stages.sources: a file without a split column
        raise DataError(f"{origin}: split.strategy: source needs a column 'split' holding "
                        f"{'/'.join(SPLITS)} for each row; this file has none (or use "
                        "split.strategy: stratified)")
    unknown = sorted(found - set(SPLITS))
    if unknown:
        raise DataError(f"{origin}: split.strategy: source needs the source's own {'/'.join(SPLITS)} splits; "
                        f"found split(s) {sources.shown(unknown)}")
    keys = frame["dialogue"].map(dialogue_key)
    leaking = keys.groupby(keys).transform(lambda k: frame.loc[k.index, "source_split"].nunique() > 1)
    if leaking.any():
        log.warning("%d row(s) share a dialogue with another source split", int(leaking.sum()))
    return frame["source_split"]


def summarize(frame: pd.DataFrame, assignment: pd.Series) -> dict:
    keys = frame["dialogue"].map(dialogue_key)
    return {
        name: {"rows": int((assignment == name).sum()),
               "dialogues": int(keys[assignment == name].nunique()),
               "topics": int(frame.loc[assignment == name, "topic"].nunique())}
        for name in SPLITS
    }


def main(argv: list[str] | None = None) -> None:
    args = cli.parser(__doc__).parse_args(argv)

    def body() -> None:
        params = load_params(args.params)
        log.debug("split params: seed=%s %s data=%s", params.seed, params.split, params.data)
        loaded = sources.load(params.data, params.hub)
        frame, pooled = loaded.frame, 0
        by_topic = params.data.columns.topic is not None
        if params.split.strategy == "stratified":
            assignment, pooled = stratified(frame, params.split.fractions,
                                            params.split.min_topic_size, params.seed, by_topic)
            stratified_by = "topic" if by_topic else "nothing (data.columns.topic: null)"
        else:
            assignment, stratified_by = from_source(frame, loaded.origin), None
        counts = summarize(frame, assignment)
        empty = [name for name, c in counts.items() if c["rows"] == 0]
        if empty:
            raise DataError(f"{loaded.origin}: split {', '.join(empty)} would be empty "
                            f"({sum(c['dialogues'] for c in counts.values())} dialogues in all)")
        with atomic_path(params.paths.split) as out:
            out.mkdir()
            for name in SPLITS:
                part = frame.loc[assignment == name, list(sources.COLUMNS)]
                target = out / params.paths.split_file(name).name
                part.reset_index(drop=True).to_parquet(target, index=False)
        records.write(params.paths.split_record(), {
            **counts,
            "strategy": params.split.strategy,
            "stratified_by": stratified_by,
            "pooled_topics": pooled,
            "dropped_empty_rows": loaded.cleaning.empty_rows,
            "dropped_duplicate_rows": loaded.cleaning.duplicate_rows,
            "source": loaded.origin,
            "params_sha256": cli.params_digest(),  # of PARAMS as read: what this split was made with
        })
        # Dialogues, and rows: a row per human summary (DialogSum's test has three per dialogue)
        log.info("split %s: %s dialogues (%s rows, one per summary)", loaded.origin,
                 ", ".join(f"{n} {c['dialogues']}" for n, c in counts.items()),
                 ", ".join(f"{c['rows']}" for c in counts.values()))

    cli.run(body, PARAMS, args.params)


if __name__ == "__main__":
    main()
