"""A small Hugging Face hub on loopback for the download tests (HF_ENDPOINT=server.url).

It answers what huggingface_hub 2.x asks while downloading (read from .venv's huggingface_hub:
hf_api.py model_info / repo_info / list_repo_tree, file_download.py get_hf_file_metadata / http_get,
utils/_http.py hf_raise_for_status):

- GET /api/models/{repo} and /api/models/{repo}/revision/{rev}: the model's info; with ?blobs=True
  each sibling carries its size, blobId and, for LFS files, lfs {size, sha256, pointerSize}.
- GET /api/models/{repo}/tree/{rev}?recursive=...: the file list (type, oid, size, path, lfs), one page.
  No xetHash: this hub never advertises xet, so huggingface_hub downloads over plain HTTP.
- HEAD/GET /{repo}/resolve/{rev}/{path}: a small file answers 200 with X-Repo-Commit, ETag (the git blob
  id) and Content-Length; an LFS file answers 302 to a "CDN" on another loopback address (127.0.0.2,
  so huggingface_hub does not follow it for HEAD) with X-Repo-Commit, X-Linked-Etag (its sha256) and
  X-Linked-Size, as the real hub does. No X-Xet-Hash, no xet Link.
- Errors as the hub says them, in X-Error-Code / X-Error-Message: a gated repo's files answer 401 without
  a token and 403 with one (GatedRepo); a missing repo answers 401 RepoNotFound without a token (the hub
  hides private repos that way) and 404 with one; a token in `refused_tokens` gets 401 "Invalid
  credentials in Authorization header".

Every request is recorded in `requests` as (method, path) for the tests to check what was fetched; with
`hold` set to an Event, file bytes wait until it is set (a download caught in the middle).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_MIN_BYTES = 1_000_000
GATED_401 = ("Access to model {repo} is restricted. You must have access to it and be authenticated to "
             "access it. Please log in.")  # vllm-project/semantic-router#817, google/embeddinggemma-300m
GATED_403 = ("Access to model {repo} is restricted and you are not in the authorized list. Visit "
             "https://huggingface.co/{repo} to ask for access.")  # kubeai-project/kubeai#155, Meta-Llama-3-8B


@dataclass
class Repo:
    """files: repo path -> a local file to serve (or its bytes). gated: "manual" for a gated repo."""

    repo_id: str
    files: dict[str, Path | bytes]
    sha: str = "a" * 40
    gated: str | bool = False
    _meta: dict[str, dict] = field(default_factory=dict)

    def data(self, name: str) -> bytes | Path:
        return self.files[name]

    def size(self, name: str) -> int:
        item = self.files[name]
        return len(item) if isinstance(item, bytes) else Path(item).stat().st_size

    def meta(self, name: str) -> dict:
        """size, git blob id, and for an LFS file its sha256 (computed once)."""
        if name not in self._meta:
            item = self.files[name]
            content = item if isinstance(item, bytes) else None
            size = self.size(name)
            sha1 = hashlib.sha1(f"blob {size}\0".encode())
            sha256 = hashlib.sha256()
            if content is not None:
                sha1.update(content)
                sha256.update(content)
            else:
                with open(item, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        sha1.update(chunk)
                        sha256.update(chunk)
            meta = {"size": size, "oid": sha1.hexdigest()}
            if size >= LFS_MIN_BYTES:
                meta["lfs"] = {"size": size, "sha256": sha256.hexdigest(), "pointerSize": 134}
            self._meta[name] = meta
        return self._meta[name]


class HubServer:
    """`with HubServer([Repo(...)]) as hub:` then HF_ENDPOINT=hub.url. Repo ids not listed are missing."""

    def __init__(self, repos: list[Repo]):
        self.repos = {r.repo_id: r for r in repos}
        self.requests: list[tuple[str, str]] = []
        self.hold: threading.Event | None = None  # when given, file bytes wait until it is set
        self.refused_tokens: set[str] = set()  # tokens the hub answers "Invalid credentials" to
        self._lock = threading.Lock()
        self._hub = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cdn=False))
        self._cdn = ThreadingHTTPServer(("127.0.0.2", 0), self._handler(cdn=True))
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.2:{self._cdn.server_address[1]}"
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (self._hub, self._cdn)]

    def __enter__(self) -> "HubServer":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()

    def fetched(self) -> list[str]:
        """Repo paths whose bytes were sent (GETs of /resolve or the CDN)."""
        with self._lock:
            return [p for m, p in self.requests if m == "GET" and p.startswith("file:")]

    # -- the handler --------------------------------------------------------------------------------
    def _handler(self, cdn: bool):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self._route(body=False)

            def do_GET(self) -> None:
                self._route(body=True)

            # -- replies
            def _send(self, status: int, headers: dict[str, str], body: bytes | Path | None = None,
                      send_body: bool = True, length: int | None = None) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if length is None:
                    length = 0 if body is None else (len(body) if isinstance(body, bytes) else Path(body).stat().st_size)
                self.send_header("Content-Length", str(length))
                self.end_headers()
                if not send_body or body is None:
                    return
                if isinstance(body, bytes):
                    self.wfile.write(body)
                    return
                with open(body, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        self.wfile.write(chunk)

            def _json(self, obj, send_body: bool) -> None:
                self._send(200, {"Content-Type": "application/json"}, json.dumps(obj).encode(), send_body)

            def _error(self, status: int, code: str, message: str, send_body: bool, commit: str | None = None) -> None:
                headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
                if commit:
                    headers["X-Repo-Commit"] = commit
                self._send(status, headers, json.dumps({"error": message}).encode(), send_body)

            def _record(self, what: str) -> None:
                with hub._lock:
                    hub.requests.append((self.command, what))

            # -- routes
            def _route(self, body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                auth = self.headers.get("Authorization") or ""
                authed = bool(auth)
                if cdn:
                    return self._cdn(path, body)
                if auth.removeprefix("Bearer ").strip() in hub.refused_tokens:
                    # lldacing/ComfyUI_PuLID_Flux_ll#30: a revoked or mistyped HF_TOKEN
                    self._record(path)
                    return self._error(401, "RepoNotFound", "Invalid credentials in Authorization header", body)
                if path.startswith("/api/models/"):
                    self._record(path)
                    return self._api(path[len("/api/models/"):], body, authed)
                if "/resolve/" in path:
                    return self._resolve(path.lstrip("/"), body, authed)
                self._record(path)
                self._error(404, "NotFound", "not found", body)

            def _repo_or_error(self, repo_id: str, body: bool, authed: bool):
                repo = hub.repos.get(repo_id)
                if repo is None:
                    if authed:
                        self._error(404, "RepoNotFound", "Repository not found", body)
                    else:  # mudler/LocalAI#6238: the hub's answer to an anonymous request for a missing repo
                        self._error(401, "RepoNotFound", "Invalid username or password.", body)
                return repo

            def _api(self, rest: str, body: bool, authed: bool) -> None:
                parts = rest.split("/")
                repo_id = "/".join(parts[:2])
                repo = self._repo_or_error(repo_id, body, authed)
                if repo is None:
                    return
                tail = parts[2:]
                if not tail or tail[0] == "revision":
                    siblings = []
                    for name in sorted(repo.files):
                        m = repo.meta(name)
                        sib = {"rfilename": name, "size": m["size"], "blobId": m["oid"]}
                        if "lfs" in m:
                            sib["lfs"] = m["lfs"]
                        siblings.append(sib)
                    return self._json({"_id": "x", "id": repo_id, "modelId": repo_id, "sha": repo.sha,
                                       "private": False, "gated": repo.gated, "disabled": False,
                                       "siblings": siblings, "tags": [], "downloads": 0, "likes": 0}, body)
                if tail[0] == "tree":
                    entries = []
                    for n in sorted(repo.files):  # the tree API names the LFS sha256 "oid" (hf_api.RepoFile)
                        m = repo.meta(n)
                        entry = {"type": "file", "oid": m["oid"], "size": m["size"], "path": n}
                        if "lfs" in m:
                            entry["lfs"] = {"oid": m["lfs"]["sha256"], "size": m["size"], "pointerSize": 134}
                        entries.append(entry)
                    return self._json(entries, body)
                self._error(404, "NotFound", "not found", body)

            def _resolve(self, rest: str, body: bool, authed: bool) -> None:
                before, _, after = rest.partition("/resolve/")
                repo = self._repo_or_error(before, body, authed)
                if repo is None:
                    return
                _rev, _, name = after.partition("/")
                self._record(f"resolve:{name}")
                if repo.gated:
                    if authed:
                        return self._error(403, "GatedRepo", GATED_403.format(repo=repo.repo_id), body)
                    return self._error(401, "GatedRepo", GATED_401.format(repo=repo.repo_id), body)
                if name not in repo.files:
                    return self._error(404, "EntryNotFound", f"{name} does not exist", body, commit=repo.sha)
                m = repo.meta(name)
                if "lfs" in m:  # the hub sends LFS files from its CDN: a redirect carrying the metadata
                    location = f"{hub.cdn_url}/{repo.repo_id}/{m['lfs']['sha256']}/{name}"
                    return self._send(302, {"Location": location, "X-Repo-Commit": repo.sha,
                                            "X-Linked-Etag": f'"{m["lfs"]["sha256"]}"',
                                            "X-Linked-Size": str(m["size"]), "ETag": f'"{m["oid"]}"'}, None, body)
                if body:
                    self._record(f"file:{name}")
                    if hub.hold is not None:
                        hub.hold.wait(60)
                self._send(200, {"X-Repo-Commit": repo.sha, "ETag": f'"{m["oid"]}"',
                                 "Content-Type": "application/octet-stream"}, repo.data(name), body)

            def _cdn(self, path: str, body: bool) -> None:
                parts = path.lstrip("/").split("/")
                repo = hub.repos.get("/".join(parts[:2]))
                name = "/".join(parts[3:])
                if repo is None or name not in repo.files:
                    return self._send(404, {}, b"", body)
                if body:
                    self._record(f"file:{name}")
                    if hub.hold is not None:
                        hub.hold.wait(60)
                self._send(200, {"Content-Type": "application/octet-stream", "ETag": f'"{parts[2]}"'},
                           repo.data(name), body)

        return Handler
