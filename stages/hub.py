"""The Hugging Face hub as the stages meet it: pinned, bounded in time, only the files read.

- ``download`` returns the local snapshot of a repo at a commit, fetching (once) only the files
  loading reads: ``MODEL_FILES`` for a model (configs, tokenizer, safetensors weights; never the
  pickle, TensorFlow or Flax copies the hub also holds), ``DATA_FILES`` for a data set (its data
  files, never a card or a loading script). Cached snapshots are used without any hub call.
- Every request to the hub times out after ``hub.timeout_s`` seconds without an answer. The
  client's API calls have no timeout of their own (a hub that accepts and never answers hung for
  minutes) and retry timeouts five times; so the first call is one bounded request
  (``repo_info``), and a hub that does not answer fails in ``timeout_s`` with one line naming the
  repo and the setting. A download that stalls later is cut by the same per-request timeout.
- Revisions must be commits. A branch such as ``main`` moves on the hub while ``params.yaml``
  stays the same, so DVC would never see the data change (``dvc status`` says up to date and a
  forced rerun silently trains on other data). ``python -m stages.hub pin`` resolves the branch
  to its commit on a machine with hub access (or from the local cache with ``HF_HUB_OFFLINE=1``)
  and writes it into ``params.yaml``, comments kept; committing that file pins the run.
  We chose a pinned commit over a DVC stage that resolves the branch: a resolving stage would
  call the hub on every ``dvc status`` / ``repro`` and still give a different result on another
  day, whereas a commit in ``params.yaml`` is reproducible, reviewable in git, and offline.

    python -m stages.hub pin [--params params.yaml]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from stages.errors import InputError
from stages.params import PARAMS_FILE, Hub, load_params

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")
# What AutoConfig / AutoTokenizer / AutoModelForSeq2SeqLM(use_safetensors=True) read from a T5 repo.
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",  # sharded weights (the larger flan-t5 sizes)
    "spiece.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
# The data files stages.sources reads (DialogSum: train.csv, validation.csv, test.csv).
DATA_FILES = ("*.csv", "*.jsonl", "*.json", "*.parquet")
SETTING = "hub.timeout_s"


class HubError(InputError):
    """The hub (or the local cache) cannot give what params ask for; the message names the repo."""


def is_commit(revision: str) -> bool:
    return bool(COMMIT.fullmatch(revision))


def bound_requests(timeout_s: float) -> None:
    """Bound every request huggingface_hub makes in this process by ``timeout_s`` seconds
    (connect, and each wait for bytes); the client's own shorter timeouts are kept.

    The client passes ``timeout=None`` (no timeout) on its API calls, which overrides any
    client-wide default; a request hook is the one place that sees every request, and httpx
    reads the timeout from the request itself. The hub's own client (its offline check, request
    ids) is kept: we add a hook to it. (Files stored with Xet travel through ``hf_xet``, which
    has its own timeouts and retries.)
    """
    import httpx2  # huggingface_hub's HTTP client, declared in pyproject.toml beside it
    from huggingface_hub import set_client_factory

    # Private, and guarded: huggingface_hub has no public way to build its own client (the one
    # set_client_factory replaces) to add a hook to. An upgrade that moves or changes it fails
    # tests/test_hub.py::test_the_private_client_factory_bound_requests_builds_on_is_unchanged.
    from huggingface_hub.utils._http import default_client_factory

    def with_timeout(request: httpx2.Request) -> None:
        asked = request.extensions.get("timeout", {})
        bounded = {phase: timeout_s if asked.get(phase) is None else min(asked[phase], timeout_s)
                   for phase in ("connect", "read", "write", "pool")}
        request.extensions = {**request.extensions, "timeout": bounded}

    def factory() -> httpx2.Client:
        client = default_client_factory()
        client.event_hooks["request"].append(with_timeout)
        return client

    set_client_factory(factory)


def allowed(repo_type: str) -> list[str]:
    """What loading reads from a repo of this type: the only files ever downloaded."""
    return list(MODEL_FILES if repo_type == "model" else DATA_FILES)


def download(repo_id: str, revision: str, repo_type: str, hub: Hub, key: str) -> Path:
    """The local snapshot folder of ``repo_id`` at commit ``revision`` (named after the commit).

    ``key`` is the param that chose the revision (``model.revision``): errors about a revision
    that cannot be had name it; a hub that does not answer names ``hub.timeout_s`` instead.
    """
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = allowed(repo_type)
    where = f"{repo_type} {repo_id}@{revision}"
    try:  # cached: no hub call at all
        return Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                      allow_patterns=patterns, local_files_only=True))
    except LocalEntryNotFoundError:  # not cached, or only in part: download what is missing
        pass
    if constants.is_offline_mode():
        raise HubError(f"{key}: {where}: not in the local hub cache ({constants.HF_HUB_CACHE}) and "
                       "HF_HUB_OFFLINE is set")
    bound_requests(hub.timeout_s)
    try:
        # One request, no retries: a silent hub fails here in timeout_s.
        HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=hub.timeout_s)
        log.info("%s: downloading %s", where, ", ".join(patterns))
        folder = snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                   allow_patterns=patterns, etag_timeout=hub.timeout_s)
    except Exception as exc:  # the client raises many kinds; all mean "cannot get it"
        raise _failure(exc, f"{key}: {where}: cannot be downloaded", where, hub) from None
    return Path(folder)


def resolve_commit(repo_id: str, revision: str, repo_type: str, hub: Hub) -> str:
    """The commit a branch or tag points at: asked of the hub, or read from the local cache
    when ``HF_HUB_OFFLINE`` is set (what this machine downloaded last)."""
    from huggingface_hub import HfApi, constants, snapshot_download

    if is_commit(revision):
        return revision
    where = f"{repo_type} {repo_id}@{revision}"
    try:
        if constants.is_offline_mode():
            return Path(snapshot_download(repo_id, revision=revision, repo_type=repo_type,
                                          allow_patterns=allowed(repo_type), local_files_only=True)).name
        bound_requests(hub.timeout_s)
        info = HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision, timeout=hub.timeout_s)
    except Exception as exc:
        raise _failure(exc, f"{where}: cannot be resolved", where, hub) from None
    return str(info.sha)


def _failure(exc: Exception, context: str, where: str, hub: Hub) -> HubError:
    """One line for a failed hub call: a timeout names the setting, anything else its first line."""
    import httpx2
    from huggingface_hub import constants

    if isinstance(exc, httpx2.TimeoutException):
        return HubError(f"{where}: the hub at {constants.ENDPOINT} did not answer within "
                        f"{hub.timeout_s:g} s ({SETTING} in params.yaml)")
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return HubError(f"{context}: {first}")


def require_commit(key: str, repo_id: str, revision: str) -> None:
    """Refuse a branch or tag: DVC sees params, not where a branch points today."""
    if not is_commit(revision):
        raise HubError(f"{key}: {revision!r} is a branch or tag of {repo_id}, and DVC cannot see it "
                       "move; run `python -m stages.hub pin` on a machine with hub access and commit "
                       "params.yaml")


def pin(params_file: Path) -> dict[str, str]:
    """Resolve ``data.revision`` (hub source) and ``model.revision`` (hub model) to commits and
    write them into ``params_file``, keeping its comments and layout. Returns what changed."""
    from ruamel.yaml import YAML

    recipe = load_params(params_file)  # validated first: a bad file is refused, not rewritten
    wanted = {}
    if recipe.data.source == "hub":
        wanted["data"] = (recipe.data.hub_id, recipe.data.revision, "dataset")
    if not Path(recipe.model.name).is_dir() and recipe.model.revision:
        wanted["model"] = (recipe.model.name, recipe.model.revision, "model")
    yaml = YAML()  # round trip: comments survive
    yaml.preserve_quotes = True
    # keep `null` spelled out (round trip would write an empty value: same meaning, noisier diff)
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    raw = yaml.load(params_file.read_text(encoding="utf-8"))
    changed = {}
    for section, (repo_id, revision, repo_type) in wanted.items():
        commit = resolve_commit(repo_id, revision, repo_type, recipe.hub)
        if commit != revision:
            raw[section]["revision"] = commit
            changed[f"{section}.revision"] = f"{revision} -> {commit}"
    if changed:
        with params_file.open("w", encoding="utf-8") as f:
            yaml.dump(raw, f)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pin"])
    parser.add_argument("--params", default=str(PARAMS_FILE), help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        changed = pin(Path(args.params))
    except InputError as exc:
        sys.exit(f"error: {exc}")
    for key, change in changed.items():
        print(f"{args.params}: {key}: {change}")
    if not changed:
        print(f"{args.params}: revisions already pinned")


if __name__ == "__main__":
    main()
