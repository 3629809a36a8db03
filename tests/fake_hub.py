"""A tiny Hugging Face Hub on loopback for --hf tests (HF_ENDPOINT points at it; nothing else
is reached). It answers the three requests huggingface_hub makes for our downloads:

    GET  /api/models/OWNER/NAME/revision/REV        the commit and file list
    HEAD /OWNER/NAME/resolve/COMMIT/PATH            size, etag, commit
    GET  /OWNER/NAME/resolve/COMMIT/PATH            the bytes (Range honoured)

and the Hub's error headers (X-Error-Code: RepoNotFound, RevisionNotFound, GatedRepo). Every
request is recorded so tests can check which files were fetched; `cut_once` drops the
connection half-way through the first GET of a file, so the retry must resume with Range.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    revisions: dict[str, str]  # branch/tag -> commit
    gated: bool = False


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    cut_once: set[str] = field(default_factory=set)  # repo paths whose first GET is cut short
    server: ThreadingHTTPServer | None = None

    def add(self, repo: str, files: dict[str, Path | bytes], commit: str, revisions: tuple[str, ...] = ("main",),
            gated: bool = False) -> None:
        data = {k: v if isinstance(v, bytes) else Path(v).read_bytes() for k, v in files.items()}
        self.repos[repo] = FakeRepo(data, {r: commit for r in revisions} | {commit: commit}, gated)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def downloaded(self) -> list[str]:
        """Repo paths whose bytes were requested with GET."""
        return [p.split("/resolve/", 1)[1].split("/", 1)[1] for m, p, _ in self.requests
                if m == "GET" and "/resolve/" in p]

    def start(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _error(self, status: int, code: str) -> None:
                body = json.dumps({"error": code}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _repo(self, owner: str, name: str) -> FakeRepo | None:
                repo = hub.repos.get(f"{owner}/{name}")
                if repo is None:
                    self._error(404, "RepoNotFound")
                elif repo.gated:
                    self._error(403, "GatedRepo")
                    return None
                return repo

            def _serve(self, head: bool) -> None:
                path = unquote(self.path.split("?", 1)[0])
                hub.requests.append((self.command, path, self.headers.get("Range")))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                    repo = self._repo(parts[2], parts[3])
                    if repo is None:
                        return
                    commit = repo.revisions.get("/".join(parts[5:]))
                    if commit is None:
                        return self._error(404, "RevisionNotFound")
                    body = json.dumps({"id": f"{parts[2]}/{parts[3]}", "sha": commit,
                                       "siblings": [{"rfilename": f} for f in sorted(repo.files)]}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = self._repo(parts[0], parts[1])
                    if repo is None:
                        return
                    commit = repo.revisions.get(parts[3])
                    if commit is None:
                        return self._error(404, "RevisionNotFound")
                    rel = "/".join(parts[4:])
                    data = repo.files.get(rel)
                    if data is None:
                        return self._error(404, "EntryNotFound")
                    start = 0
                    if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
                        start = int(rng[6:].split("-", 1)[0] or 0)
                    body = data[start:]
                    self.send_response(206 if start else 200)
                    self.send_header("X-Repo-Commit", commit)
                    self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                    self.send_header("Content-Length", str(len(body)))
                    if start:
                        self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    self.end_headers()
                    if head:
                        return
                    if rel in hub.cut_once and len(body) > 2:
                        hub.cut_once.discard(rel)
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.wfile.write(body)
                    return
                self._error(404, "NotFound")

            def do_GET(self):
                self._serve(head=False)

            def do_HEAD(self):
                self._serve(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
