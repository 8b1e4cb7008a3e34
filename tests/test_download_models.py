"""scripts/download_models.py against a fake hub on 127.0.0.1.

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
import shutil
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
        for name in ("paraformer", "fsmn_vad", "ct_punc")
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
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import download_models
    finally:
        sys.path.remove(str(SCRIPT.parent))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                tar.add(path, arcname=f"silero-vad-6.2.3/src/silero_vad/{path.relative_to(package)}")
        hubconf = download_models.SILERO_HUBCONF.encode()
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
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
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

    def _send(self, handler, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)

    def _json(self, handler, payload: object, status: int = 200) -> None:
        self._send(handler, status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _file(self, handler, data: bytes, headers: dict[str, str], head: bool) -> None:
        range_header = handler.headers.get("Range")
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
                return self._file(handler, files[query["FilePath"]], {}, head)
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
            return self._file(handler, data, headers, head)
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
