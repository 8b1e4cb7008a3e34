"""scripts/download_models.py (and scripts/downloads/) against a fake hub on 127.0.0.1.

``FakeHub`` answers the few endpoints huggingface_hub and modelscope call
(repo info, file listing, file download with Range resume) for tiny fixture
repositories, so the real client code paths run end to end without network.
The script runs as a subprocess, as users run it: both hub clients read their
settings from the environment at import time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.downloads.hubs import HubEndpoints
from scripts.downloads.models import SILERO_HUBCONF, DownloadOptions, fetch_silero
from services.common import model_paths
from services.common.model_paths import MODEL_SPECS, resolve_models

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT_ROOT / "scripts" / "download_models.py"


def _fixture_files(name: str, extra: dict[str, bytes] | None = None) -> dict[str, bytes]:
    files = {}
    for alternatives in MODEL_SPECS[name].required_files:
        relative = alternatives[0]
        files[relative] = f"{name}:{relative}\n".encode() * 3
    files.update(extra or {})
    return files


def _repos() -> dict[tuple[str, str], dict[str, bytes]]:
    ms = {
        ("ms", MODEL_SPECS[name].repo_id): _fixture_files(name, {"README.md": b"readme\n"})
        for name in ("paraformer", "fsmn_vad", "ct_punc", "emotion2vec", "campplus")
    }
    # Two identical files share one blob in the HF cache: materialising the
    # snapshot's symlinks must cope with that.
    sensevoice = _fixture_files("sensevoice", {"README.md": b"same\n", "docs/copy.md": b"same\n"})
    speechbrain = {
        relative: data
        for relative, data in _fixture_files("speechbrain_emotion").items()
        if not relative.startswith("wav2vec2-base/")
    }
    speechbrain["wav2vec2_checkpoints/CKPT.yaml"] = b"training artefact\n"
    wav2vec2 = {
        "config.json": b"{}",
        "preprocessor_config.json": b"{}",
        "model.safetensors": b"weights" * 100,
        "pytorch_model.bin": b"old weights" * 100,
        "README.md": b"not fetched\n",
    }
    return {
        **ms,
        ("hf", "FunAudioLLM/SenseVoiceSmall"): sensevoice,
        ("hf", "speechbrain/emotion-recognition-wav2vec2-IEMOCAP"): speechbrain,
        ("hf", "facebook/wav2vec2-base"): wav2vec2,
    }


def _silero_archive() -> bytes:
    """A .tar.gz shaped like GitHub's archive of snakers4/silero-vad, built from the installed package."""
    import importlib.util

    package = Path(next(iter(importlib.util.find_spec("silero_vad").submodule_search_locations)))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=f"silero-vad-6.2.3/src/silero_vad/{path.relative_to(package)}")
        hubconf = SILERO_HUBCONF.encode()
        info = tarfile.TarInfo("silero-vad-6.2.3/hubconf.py")
        info.size = len(hubconf)
        tar.addfile(info, io.BytesIO(hubconf))
    return buffer.getvalue()


class FakeHub:
    """Minimal Hugging Face + ModelScope + archive server for the download clients."""

    def __init__(self) -> None:
        self.repos = _repos()
        self.archives: dict[str, bytes] = {}
        self.failing: set[str] = set()  # file paths answered with 404
        self.stalling: set[str] = set()  # file paths whose body stops half-way until `release`
        self.release = threading.Event()
        self.ranges: list[tuple[str, str]] = []  # (file path, Range header) of resumed requests
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

            def do_GET(self) -> None:
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def sha(repo_id: str) -> str:
        return hashlib.sha1(repo_id.encode()).hexdigest()

    def downloads(self, path_suffix: str) -> int:
        """How many GET requests fetched a file whose path ends with ``path_suffix``."""
        return sum(1 for method, path in self.requests if method == "GET" and path.endswith(path_suffix))

    # -- plumbing -----------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        url = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = urllib.parse.unquote(url.path)
        file_path = query.get("FilePath") or path
        self.requests.append(("HEAD" if head else "GET", file_path))
        try:
            self._route(handler, path, query, head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, handler, status: int, body: bytes, headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _json(self, handler, payload: object, status: int = 200) -> None:
        self._send(handler, status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _file(self, handler, data: bytes, headers: dict[str, str], head: bool, name: str = "") -> None:
        range_header = handler.headers.get("Range")
        if range_header:
            self.ranges.append((name, range_header))
        if name in self.stalling and not head and not range_header:
            # Send 3/4 of the body, then hang like a dead connection.
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data[: len(data) * 3 // 4])
            handler.wfile.flush()
            self.release.wait(30)
            handler.close_connection = True
            return
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
            headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            self._send(handler, 206, data[start:], headers, head)
        else:
            self._send(handler, 200, data, headers, head)

    def _route(self, handler, path: str, query: dict[str, str], head: bool) -> None:
        parts = path.strip("/").split("/")
        if path in self.archives:
            return self._send(handler, 200, self.archives[path], {"Content-Type": "application/gzip"}, head)
        # ModelScope: /api/v1/models/<owner>/<name>/repo/files and .../repo?FilePath=
        if parts[:3] == ["api", "v1", "models"] and len(parts) >= 5:
            repo_id = "/".join(parts[3:5])
            files = self.repos.get(("ms", repo_id))
            if files is None:
                return self._json(handler, {"Code": 10010205001, "Message": "not found", "Success": False}, 404)
            if parts[5:] == ["repo", "files"]:
                listing = [
                    {"Path": p, "Name": p.rsplit("/", 1)[-1], "Type": "blob", "Size": len(d),
                     "Sha256": hashlib.sha256(d).hexdigest()}
                    for p, d in files.items()
                ]
                return self._json(handler, {"Code": 200, "Success": True, "Data": {"Files": listing}})
            if parts[5:] == ["repo"] and query.get("FilePath") in files:
                if query["FilePath"] in self.failing:
                    return self._json(handler, {"Code": 404, "Message": "gone", "Success": False}, 404)
                return self._file(handler, files[query["FilePath"]], {}, head, query["FilePath"])
            if parts[5:] == []:
                return self._json(handler, {"Code": 200, "Success": True, "Data": {"Path": repo_id}})
            return self._json(handler, {"Code": 404, "Success": False}, 404)
        # Hugging Face API: /api/models/<owner>/<name>/revision/<rev> and /tree/<rev>
        if parts[:2] == ["api", "models"] and len(parts) >= 6:
            repo_id = "/".join(parts[2:4])
            files = self.repos.get(("hf", repo_id))
            if files is None:
                return self._json(handler, {"error": "Repository not found"}, 404)
            if parts[4] == "revision":
                siblings = [{"rfilename": p} for p in files]
                return self._json(handler, {"id": repo_id, "sha": self.sha(repo_id), "siblings": siblings})
            if parts[4] == "tree":
                tree = [
                    {"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                    for p, d in files.items()
                ]
                return self._json(handler, tree)
        # Hugging Face files: /<owner>/<name>/resolve/<rev>/<path>
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id = "/".join(parts[:2])
            files = self.repos.get(("hf", repo_id), {})
            file_path = "/".join(parts[4:])
            if file_path not in files or file_path in self.failing:
                return self._send(handler, 404, b"", {"X-Error-Code": "EntryNotFound"}, head)
            data = files[file_path]
            headers = {"X-Repo-Commit": self.sha(repo_id), "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
            return self._file(handler, data, headers, head, file_path)
        self._send(handler, 404, b"not found", {}, head)


@pytest.fixture
def hub():
    with FakeHub() as server:
        yield server


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_script(tmp_path: Path, *args: str, hf: str, ms: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "MODELSCOPE_", "HUGGINGFACE_")) and key not in ("MODEL_CACHE_DIR", "PROJECT_ROOT")
    }
    env.update(
        HF_ENDPOINT=hf,
        MODELSCOPE_ENDPOINT=ms,
        HF_HOME=str(tmp_path / "home" / "hf"),
        MODELSCOPE_HOME=str(tmp_path / "home" / "modelscope"),
        MODELSCOPE_CACHE=str(tmp_path / "home" / "modelscope-cache"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--project-root", str(tmp_path / "project"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _hidden_entries(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def _make_complete(directory: Path, name: str) -> None:
    for relative, data in _fixture_files(name).items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(data)


# ---------------------------------------------------------------------------


def test_downloads_everything_into_the_resolved_layout(tmp_path: Path, hub: FakeHub) -> None:
    cache = tmp_path / "cache"
    project = tmp_path / "project"
    # An incomplete Paraformer dir is replaced, a complete FSMN-VAD in the
    # hub/models/iic layout is kept, an older SenseVoice snapshot survives.
    stale = model_paths.modelscope_dir(cache, "paraformer")
    stale.mkdir(parents=True)
    (stale / "config.yaml").write_text("stale")
    kept = cache / "hub" / "models" / "iic" / "speech_fsmn_vad_zh-cn-16k-common-pytorch"
    _make_complete(kept, "fsmn_vad")
    repo_dir = model_paths.sensevoice_repo_dir(cache)
    (repo_dir / "snapshots" / "0ld").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0ld")

    result = run_script(tmp_path, "--cache-dir", str(cache), hf=hub.url, ms=hub.url)
    assert result.returncode == 0, result.stderr

    layout = resolve_models(project, str(cache))
    assert all(model.complete for model in layout.models()), layout.describe()
    assert layout.fsmn_vad.path == kept and hub.downloads("speech_fsmn_vad_zh-cn-16k-common-pytorch/repo/files") == 0
    assert layout.paraformer.path == stale and (stale / "config.yaml").read_bytes() != b"stale"
    assert (stale / "model.pt").read_bytes() == _repos()[("ms", MODEL_SPECS["paraformer"].repo_id)]["model.pt"]

    sha = hub.sha("FunAudioLLM/SenseVoiceSmall")
    assert layout.sensevoice.path == repo_dir / "snapshots" / sha
    assert (repo_dir / "refs" / "main").read_text() == sha
    assert (repo_dir / "snapshots" / "0ld").is_dir()
    snapshot = layout.sensevoice.path
    assert not any(p.is_symlink() for p in snapshot.rglob("*")), "snapshot must hold real files"
    assert (snapshot / "README.md").read_bytes() == (snapshot / "docs" / "copy.md").read_bytes() == b"same\n"

    emotion = layout.speechbrain_emotion.path
    assert not (emotion / "wav2vec2_checkpoints").exists()
    assert sorted(p.name for p in (emotion / "wav2vec2-base").iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    # No staging directories, locks or hub bookkeeping are left behind.
    assert _hidden_entries(project) == []
    assert _hidden_entries(cache) == []

    # A second run finds everything complete and fetches nothing.
    hub.requests.clear()
    again = run_script(tmp_path, "--cache-dir", str(cache), hf=hub.url, ms=hub.url)
    assert again.returncode == 0, again.stderr
    assert hub.requests == []
    assert "already complete" in again.stderr

    check = run_script(tmp_path, "--check", "--cache-dir", str(cache), hf=hub.url, ms=hub.url)
    assert check.returncode == 0, check.stdout
    assert "MISSING" not in check.stdout


def test_without_network_each_model_fails_fast_and_writes_nothing(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    result = run_script(
        tmp_path,
        "--cache-dir", str(tmp_path / "cache"),
        "--paraformer", "--sensevoice", "--speechbrain",
        "--silero", "--silero-source", "github", "--silero-archive-url", f"{dead}/silero.tar.gz",
        hf=dead, ms=dead,
    )
    elapsed_s = time.monotonic() - started
    assert result.returncode == 1
    assert elapsed_s < 30
    for name in ("paraformer", "fsmn_vad", "ct_punc", "sensevoice", "speechbrain_emotion", "silero_vad"):
        assert f"{name}: cannot reach 127.0.0.1" in result.stderr
    assert "FAILED: --paraformer, --sensevoice, --speechbrain, --silero" in result.stderr
    assert not (tmp_path / "cache").exists()
    assert not (tmp_path / "project").exists()


def test_failed_download_is_never_accepted_and_the_rerun_completes_it(tmp_path: Path, hub: FakeHub) -> None:
    cache = tmp_path / "cache"
    hub.failing = {"model.pt", "wav2vec2.ckpt"}
    args = ("--cache-dir", str(cache), "--paraformer", "--sensevoice", "--speechbrain")
    failed = run_script(tmp_path, *args, hf=hub.url, ms=hub.url)
    assert failed.returncode == 1
    assert "Partial files stay in" in failed.stderr

    layout = resolve_models(tmp_path / "project", str(cache))
    for model in layout.models(["paraformer", "fsmn_vad", "ct_punc", "sensevoice", "speechbrain_emotion"]):
        assert not model.complete, model
    assert not model_paths.modelscope_dir(cache, "paraformer").exists()
    assert not model_paths.sensevoice_repo_dir(cache).exists()
    assert not (tmp_path / "project" / model_paths.SPEECHBRAIN_EMOTION_SUBDIR).exists()
    paraformer_dir = model_paths.modelscope_dir(cache, "paraformer")
    assert (paraformer_dir.parent / f".{paraformer_dir.name}.partial" / "config.yaml").is_file()

    hub.failing = set()
    fetched_before = hub.downloads("config.yaml")
    resumed = run_script(tmp_path, *args, hf=hub.url, ms=hub.url)
    assert resumed.returncode == 0, resumed.stderr
    assert all(m.complete for m in resolve_models(tmp_path / "project", str(cache)).models(
        ["paraformer", "fsmn_vad", "ct_punc", "sensevoice", "speechbrain_emotion"]))
    assert hub.downloads("config.yaml") == fetched_before, "files fetched by the first run are not fetched again"


def test_killed_download_resumes_where_it_stopped(tmp_path: Path, hub: FakeHub) -> None:
    cache = tmp_path / "cache"
    repo_id = MODEL_SPECS["paraformer"].repo_id
    big = os.urandom(3 * 1024 * 1024)
    hub.repos[("ms", repo_id)]["model.pt"] = big
    hub.stalling = {"model.pt"}
    staging = model_paths.modelscope_dir(cache, "paraformer").parent / (
        "." + model_paths.modelscope_dir(cache, "paraformer").name + ".partial")
    partial_file = staging / "model.pt.incomplete"

    env_args = ["--cache-dir", str(cache), "--paraformer"]
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--project-root", str(tmp_path / "project"), *env_args],
        env={**os.environ, "HF_ENDPOINT": hub.url, "MODELSCOPE_ENDPOINT": hub.url,
             "MODELSCOPE_HOME": str(tmp_path / "home"), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (partial_file.exists() and partial_file.stat().st_size >= 1024 * 1024):
            assert time.monotonic() < deadline, "download never got going"
            assert process.poll() is None
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    hub.release.set()
    written = partial_file.stat().st_size
    assert 0 < written < len(big)
    assert not resolve_models(tmp_path / "project", str(cache)).paraformer.complete

    hub.stalling = set()
    result = run_script(tmp_path, *env_args, hf=hub.url, ms=hub.url)
    assert result.returncode == 0, result.stderr
    assert ("model.pt", f"bytes={written}-") in hub.ranges
    final = resolve_models(tmp_path / "project", str(cache)).paraformer
    assert final.complete and (final.path / "model.pt").read_bytes() == big


def test_silero_from_the_package_loads_with_torch_hub(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    options = DownloadOptions(project_root=tmp_path, cache=model_paths.ModelCacheDir(tmp_path / "c", "test"))
    target = fetch_silero(options)
    assert target == tmp_path / "silero-vad"
    assert resolve_models(tmp_path, None, data_fallbacks=()).silero_vad.complete

    model, utils = torch.hub.load(repo_or_dir=str(target), model="silero_vad", source="local")
    with torch.no_grad():
        probability = float(model(torch.zeros(512), 16000))
    assert 0.0 <= probability <= 1.0
    assert callable(utils[0])  # get_speech_timestamps


def test_silero_from_a_github_archive(tmp_path: Path, hub: FakeHub) -> None:
    archive_path = "/snakers4/silero-vad/archive/refs/tags/v6.2.3.tar.gz"
    hub.archives[archive_path] = _silero_archive()
    options = DownloadOptions(
        project_root=tmp_path,
        cache=model_paths.ModelCacheDir(tmp_path / "c", "test"),
        endpoints=HubEndpoints(silero_archive_url=hub.url + archive_path),
        silero_source="github",
    )
    fetch_silero(options)
    assert resolve_models(tmp_path, None, data_fallbacks=()).silero_vad.complete
    assert _hidden_entries(tmp_path) == []


def test_check_names_what_is_missing_and_how_to_fetch_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    result = run_script(tmp_path, "--check", "--mode", "sensevoice", hf="http://127.0.0.1:9", ms="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "sensevoice:" in result.stdout and "paraformer:" not in result.stdout
    assert "python scripts/download_models.py --sensevoice --speechbrain --silero" in result.stdout

    # Silero is optional: its absence is reported but does not fail the check.
    _make_complete(model_paths.sensevoice_repo_dir(project / "pretrained_models" / "model_cache") / "snapshots" / "r1",
                   "sensevoice")
    _make_complete(project / model_paths.SPEECHBRAIN_EMOTION_SUBDIR, "speechbrain_emotion")
    result = run_script(tmp_path, "--check", "--mode", "sensevoice", hf="http://127.0.0.1:9", ms="http://127.0.0.1:9")
    assert result.returncode == 0, result.stdout
    assert "silero_vad:" in result.stdout and "optional" in result.stdout


def test_mode_without_check_is_a_usage_error(tmp_path: Path) -> None:
    result = run_script(tmp_path, "--mode", "both", hf="http://127.0.0.1:9", ms="http://127.0.0.1:9")
    assert result.returncode == 2
    assert "--mode and --no-emotion only apply to --check" in result.stderr


def test_unknown_repository_is_reported_as_such(tmp_path: Path, hub: FakeHub) -> None:
    hub.repos.clear()
    result = run_script(tmp_path, "--cache-dir", str(tmp_path / "cache"), "--paraformer", "--sensevoice",
                        hf=hub.url, ms=hub.url)
    assert result.returncode == 1
    assert "paraformer: 127.0.0.1" in result.stderr and "repository not found" in result.stderr
    assert "sensevoice: 127.0.0.1" in result.stderr
    assert not (tmp_path / "cache").exists()


def test_emotion2vec_flag_downloads_into_the_modelscope_layout(tmp_path: Path, hub: FakeHub) -> None:
    cache = tmp_path / "cache"
    project = tmp_path / "project"
    check = run_script(tmp_path, "--check", "--mode", "paraformer", "--emotion-model", "emotion2vec",
                       "--cache-dir", str(cache), hf=hub.url, ms=hub.url)
    assert check.returncode == 1
    assert "emotion2vec:" in check.stdout and "speechbrain_emotion:" not in check.stdout
    assert "--emotion2vec" in check.stdout

    result = run_script(tmp_path, "--cache-dir", str(cache), "--emotion2vec", hf=hub.url, ms=hub.url)
    assert result.returncode == 0, result.stderr
    layout = resolve_models(project, str(cache))
    assert layout.emotion2vec.complete and layout.emotion2vec.path == cache / "models" / "iic" / "emotion2vec_plus_base"
    assert (layout.emotion2vec.path / "tokens.txt").read_bytes() == _repos()[
        ("ms", "iic/emotion2vec_plus_base")]["tokens.txt"]
    assert not layout.paraformer.complete  # only what the flag names
    assert _hidden_entries(cache) == []


def test_speaker_flag_downloads_cam_plus_plus_into_the_modelscope_layout(tmp_path: Path, hub: FakeHub) -> None:
    cache = tmp_path / "cache"
    project = tmp_path / "project"
    check = run_script(tmp_path, "--check", "--speaker", "--cache-dir", str(cache), hf=hub.url, ms=hub.url)
    assert check.returncode == 1
    assert "campplus:" in check.stdout and "paraformer:" not in check.stdout
    assert f"python scripts/download_models.py --speaker --cache-dir {cache}" in check.stdout

    result = run_script(tmp_path, "--cache-dir", str(cache), "--speaker", hf=hub.url, ms=hub.url)
    assert result.returncode == 0, result.stderr
    layout = resolve_models(project, str(cache))
    expected = cache / "models" / "iic" / "speech_campplus_sv_zh-cn_16k-common"
    assert layout.campplus.complete and layout.campplus.path == expected
    repo = _repos()[("ms", "iic/speech_campplus_sv_zh-cn_16k-common")]
    for name in ("configuration.json", "config.yaml", "campplus_cn_common.bin"):
        assert (expected / name).read_bytes() == repo[name]
    assert not layout.paraformer.complete and not layout.emotion2vec.complete  # only what the flag names
    assert _hidden_entries(cache) == []
    check = run_script(tmp_path, "--check", "--speaker", "--cache-dir", str(cache), hf=hub.url, ms=hub.url)
    assert check.returncode == 0, check.stdout
