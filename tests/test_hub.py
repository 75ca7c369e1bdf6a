"""The hub client as the stages use it: only the files loading reads, a bounded wait, pinned revisions."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stages import hub
from stages.params import Hub, read_yaml
from tests.conftest import ROOT

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# google/flan-t5-base at 7bcac57: every weight format the repo holds.
FLAN_T5_BASE = [".gitattributes", "README.md", "config.json", "generation_config.json",
                "model.safetensors", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack",
                "special_tokens_map.json", "spiece.model", "tokenizer.json", "tokenizer_config.json"]
DIALOGSUM = [".gitattributes", "README.md", "train.csv", "validation.csv", "test.csv"]


@pytest.fixture
def online_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """What download() asks of the hub client, recorded instead of sent: an empty cache, online."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls: list[dict] = []

    def snapshot_download(repo_id: str, **kwargs):
        calls.append({"call": "snapshot_download", "repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("not cached")
        return f"/cache/{kwargs['revision']}"

    def repo_info(self, repo_id: str, **kwargs):
        calls.append({"call": "repo_info", "repo_id": repo_id, **kwargs})

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)
    monkeypatch.setattr(hub, "bound_requests", lambda seconds: calls.append({"call": "bound", "s": seconds}))
    return calls


def fetched(files: list[str], call: dict) -> list[str]:
    """What the client downloads of ``files`` for this call: its own pattern filter."""
    from huggingface_hub.utils import filter_repo_objects

    return sorted(filter_repo_objects(files, allow_patterns=call["allow_patterns"],
                                      ignore_patterns=call.get("ignore_patterns")))


def test_model_download_fetches_only_what_loading_reads(online_calls: list[dict]) -> None:
    folder = hub.download("google/flan-t5-base", COMMIT, "model", Hub(timeout_s=7), "model.revision")
    assert folder.name == COMMIT
    cached, bound, probe, download = online_calls
    assert cached["local_files_only"] is True  # the cache first: no hub call when it has the files
    assert bound == {"call": "bound", "s": 7}  # every request of the client bounded ...
    assert (probe["call"], probe["timeout"]) == ("repo_info", 7)  # ... and the first one alone
    assert (download["revision"], download["repo_type"], download["etag_timeout"]) == (COMMIT, "model", 7)
    # of flan-t5-base's ~4 GB only ~1 GB: no pickle, TensorFlow or Flax weights, no card
    assert fetched(FLAN_T5_BASE, download) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "spiece.model", "tokenizer.json", "tokenizer_config.json"]
    # sharded safetensors (the larger flan-t5 sizes) come with their index
    sharded = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model.bin.index.json"]
    assert fetched(sharded, download) == sharded[:3]


def test_data_download_fetches_only_the_data_files(online_calls: list[dict]) -> None:
    hub.download("knkarthick/dialogsum", COMMIT, "dataset", Hub(timeout_s=7), "data.revision")
    download = online_calls[-1]
    assert download["repo_type"] == "dataset"
    assert fetched(DIALOGSUM, download) == ["test.csv", "train.csv", "validation.csv"]


class SilentHub:
    """A loopback endpoint that accepts connections and never answers; it closes them on stop."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                self.held.append(self.server.accept()[0])  # read nothing, answer nothing
            except TimeoutError:
                continue

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.server.close()


@pytest.fixture
def silent_hub():
    server = SilentHub()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


PRIVATE_FACTORY = "huggingface_hub.utils._http.default_client_factory"


def test_the_private_client_factory_bound_requests_builds_on_is_unchanged() -> None:
    """stages.hub.bound_requests adds its hook to the client this private function builds (no public
    API builds the hub's own client). An upgrade that moves or changes it must fail here, loudly."""
    import httpx2

    try:
        from huggingface_hub.utils._http import default_client_factory
    except ImportError as exc:
        pytest.fail(f"{PRIVATE_FACTORY} is gone ({exc}): stages.hub.bound_requests needs another way to "
                    "bound the hub's requests")
    client = default_client_factory()
    try:
        assert isinstance(client, httpx2.Client), f"{PRIVATE_FACTORY}() returns {type(client)}, not httpx2.Client"
        hooks = client.event_hooks["request"]
        assert isinstance(hooks, list) and hooks, (
            f"{PRIVATE_FACTORY}() returns a client without the hub's request hook (offline check, request "
            f"ids): {hooks!r}; stages.hub.bound_requests appends to that list")
    finally:
        client.close()


class AnsweringServer(ThreadingHTTPServer):
    """A loopback server that answers every GET with 200 and an empty body."""

    def __init__(self) -> None:
        class Ok(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        super().__init__(("127.0.0.1", 0), Ok)
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def bounded_session(monkeypatch: pytest.MonkeyPatch):
    """The hub's shared client after bound_requests(5), with a hook that records what it sends;
    the hub's default client is restored afterwards."""
    from huggingface_hub import constants, get_session, set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.bound_requests(5)
    session = get_session()
    sent: list = []
    session.event_hooks["request"].append(sent.append)  # after the hub's and ours: sees what goes out
    server = AnsweringServer()
    yield session, f"http://127.0.0.1:{server.server_address[1]}/", sent
    server.shutdown()
    server.server_close()
    set_client_factory(default_client_factory)


def test_bounded_requests_keep_the_hubs_own_client(bounded_session, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    session, url, sent = bounded_session
    assert session.get(url, timeout=None).status_code == 200  # how the hub client calls its API
    assert session.get(url, timeout=2).status_code == 200  # a shorter timeout of the client's own
    unbounded, shorter = (request.extensions["timeout"] for request in sent)
    assert unbounded == {"connect": 5, "read": 5, "write": 5, "pool": 5}
    assert shorter == {"connect": 2, "read": 2, "write": 2, "pool": 2}
    assert all("X-Amzn-Trace-Id" in request.headers for request in sent)  # the hub's hook ran too
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineModeIsEnabled):  # and its offline check still refuses
        session.get(url)
    assert len(sent) == 2


def test_a_hub_that_never_answers_fails_in_one_line_within_the_timeout(tmp_path: Path, silent_hub: str) -> None:
    raw = read_yaml((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["data"]["revision"] = COMMIT
    raw["hub"]["timeout_s"] = 3
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps(raw), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=silent_hub, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(ROOT))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "stages.split", "--params", str(params)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: dataset knkarthick/dialogsum@{COMMIT}: the hub at {silent_hub} did not "
                      "answer within 3 s (hub.timeout_s in params.yaml)"], result.stderr
    assert "Traceback" not in result.stderr
    assert 3 <= elapsed < 30, elapsed  # the timeout, plus the interpreter's start
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]  # nothing written


def test_pin_writes_the_branch_commit_into_params_keeping_comments(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub" / "datasets--knkarthick--dialogsum"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(COMMIT)
    (cache / "snapshots" / COMMIT).mkdir(parents=True)
    (cache / "snapshots" / COMMIT / "train.csv").write_text("id,dialogue,summary,topic\n")
    # the shipped file as it is before its first pin (data.revision may already be a commit there)
    before = re.sub(r"(?ms)^(data:\n.*?^  revision: )\S+", r"\g<1>main",
                    (ROOT / "params.yaml").read_text(encoding="utf-8"), count=1)
    params = tmp_path / "params.yaml"
    params.write_text(before, encoding="utf-8")
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "stages.hub", "pin", "--params", str(params)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{params}: data.revision: main -> {COMMIT}\n"
    assert params.read_text(encoding="utf-8") == before.replace("revision: main\n", f"revision: {COMMIT}\n")
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert again.stdout == f"{params}: revisions already pinned\n"
