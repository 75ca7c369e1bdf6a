"""What the review reads of two revisions, all of it through DVC.

- Revisions are resolved as DVC resolves them: branches, tags, commits and experiment names.
- Params and metrics diffs are DVC's own (``Repo.params.diff``, ``Repo.metrics.diff``).
- Outputs at a revision (predictions, per-dialogue scores) are read with ``dvc.api.open``, which
  finds them in the git tree, the local DVC cache or, failing both, the DVC remote.
- Where the outputs live comes from the ``paths`` section of the newer revision's params,
  validated by ``stages/params.py``'s schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stages.params import Paths, Review

if TYPE_CHECKING:
    from dvc.repo import Repo

WORKSPACE = "workspace"  # DVC's name for the working tree in diffs


class ReviewError(ValueError):
    """A revision or file the review cannot use; the message names it, in one line."""


@dataclass(frozen=True)
class Revision:
    label: str  # as the user named it, or "workspace"
    sha: str | None  # None: the working tree

    @property
    def dvc_name(self) -> str:
        return self.sha or WORKSPACE


def open_repo(root: str = ".") -> Repo:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        return Repo(root)
    except NotDvcRepoError as exc:
        raise ReviewError(f"{root} is not a DVC repository") from exc


def resolve(repo: Repo, name: str | None) -> Revision:
    """``None`` is the workspace; anything else must name a commit or an experiment."""
    if name is None:
        return Revision(WORKSPACE, None)
    # dvc.scm.resolve_rev knows experiment names, which plain git (and dvc.api) do not.
    from dvc.scm import RevError, resolve_rev

    try:
        return Revision(name, resolve_rev(repo.scm, name))
    except RevError as exc:
        raise ReviewError(f"unknown revision '{name}': not a branch, tag, commit or experiment") from exc


def params_diff(repo: Repo, old: Revision, new: Revision) -> dict[str, dict]:
    """Changed params only: ``{dotted key: {"old": ..., "new": ...}}`` over every params file."""
    result = repo.params.diff(a_rev=old.dvc_name, b_rev=new.dvc_name)
    return {key: change for changes in result.get("diff", {}).values() for key, change in changes.items()}


def metrics_diff(repo: Repo, old: Revision, new: Revision, paths: Paths) -> dict[str, dict[str, dict]]:
    """Every figure, changed or not: ``{metrics file: {dotted key: {"old", "new"[, "diff"]}}}``.

    Per DVC metrics file, the figures of its whole record (``stages/records.py``: the metrics
    file holds the few people compare, the record all of them) where a revision has one, else
    the metrics file's own (a revision committed before records existed). DVC's diff reads any
    JSON file named as a target, declared as metrics or not."""
    declared = repo.metrics.diff(a_rev=old.dvc_name, b_rev=new.dvc_name, all=True).get("diff", {})
    records = {name: str(paths.record_of(name)) for name in declared}
    whole = repo.metrics.diff(a_rev=old.dvc_name, b_rev=new.dvc_name, targets=list(records.values()),
                              all=True).get("diff", {}) if records else {}
    return {name: {key: _either(whole.get(records[name], {}).get(key, {}), changes.get(key, {}))
                   for key in {**whole.get(records[name], {}), **changes}}
            for name, changes in declared.items()}


def _either(record: dict, metric: dict) -> dict:
    """One figure's change, from the record where that side has one, else from the metrics file."""
    sides = {side: record.get(side) if record.get(side) is not None else metric.get(side) for side in ("old", "new")}
    numbers = [v for v in sides.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    return sides | ({"diff": sides["new"] - sides["old"]} if len(numbers) == 2 else {})


def revision_params(repo: Repo, rev: Revision) -> tuple[Paths, Review]:
    """Where ``rev`` keeps its outputs, and how it asks to be reviewed (params.yaml ``review``)."""
    import dvc.api

    params = dvc.api.params_show(repo=repo.root_dir, rev=rev.sha, deps=False)
    missing = [s for s in ("paths", "review") if s not in params]
    if missing:
        raise ReviewError(f"{rev.label}: params.yaml has no {' or '.join(missing)} section")
    try:
        return Paths.model_validate(params["paths"]), Review.model_validate(params["review"])
    except ValueError as exc:
        raise ReviewError(f"{rev.label}: params.yaml: {exc}") from None


def read_jsonl(repo: Repo, path: str, rev: Revision) -> list[dict]:
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        with dvc.api.open(path, repo=repo.root_dir, rev=rev.sha, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (DvcException, FileNotFoundError) as exc:
        raise ReviewError(f"{rev.label} has no {path}: run `dvc repro` there (and commit it), "
                          f"or `dvc pull` it") from exc
