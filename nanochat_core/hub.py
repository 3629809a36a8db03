"""nanochat checkpoints on the Hugging Face Hub: `--hf OWNER/REPO[@REVISION]`.

Published nanochat checkpoints are nanochat's files in a repository, at its root or in a
subfolder, sometimes several stages, tags or steps (docs/checkpoints.md "From the Hugging Face
Hub"). We read the repository's file list first, choose one checkpoint in it with the same rules
as for a folder on disk (checkpoints.scan/choose over a ListTree), and download through
`huggingface_hub` only that checkpoint's three files (model, meta, tokenizer; never optimizer
shards) into the standard HF cache. The library gives us resumable downloads, the cache layout
(`hub/models--OWNER--NAME/{refs,snapshots,blobs}`), HF_TOKEN, HF_ENDPOINT and offline mode.
Then the files are loaded like any other folder (same restricted unpickler, weights_only).

Environment read at call time: HF_HUB_OFFLINE (nothing is asked of the network; the cache must
hold the checkpoint), HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME (where the cache is), HF_TOKEN
(private and gated repos), HF_ENDPOINT (another Hub, a mirror), HF_HUB_DISABLE_PROGRESS_BARS.

Importing this module is cheap (no huggingface_hub, no torch): the CLI validates `--hf` with
parse_repo_spec before loading anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from .checkpoint_files import CheckpointError
from .checkpoints import CheckpointLocation, ListTree, Scan, choose, location_in, scan

# file name (repo-relative), bytes done, bytes in all (None while unknown)
DownloadProgress = Callable[[str, int, "int | None"], None]
Progress = Callable[[str], None]

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
REPO_ID = re.compile(rf"^({_NAME})/({_NAME})$")
REVISION = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
HUB_URL = re.compile(r"^https?://(?:www\.)?(?:huggingface\.co|hf\.co)/(?P<repo>[^/@]+/[^/@]+?)(?:/tree/(?P<rev>[^?#]+))?/?$")
MAX_CACHED_FILES = 20_000  # a snapshot listing is never read forever


@dataclass(frozen=True)
class HubOrigin:
    """Where a checkpoint came from on the Hub, precisely."""

    repo: str  # OWNER/NAME
    revision: str  # what was asked for ("main" by default)
    commit: str  # what it resolved to

    @property
    def spec(self) -> str:
        return self.repo if self.revision == "main" else f"{self.repo}@{self.revision}"


def parse_repo_spec(spec: str) -> tuple[str, str]:
    """`OWNER/NAME[@REVISION]` (or a huggingface.co URL) -> (repo id, revision)."""
    text = spec.strip()
    revision = "main"
    if m := HUB_URL.match(text):
        text = m.group("repo") + (f"@{m.group('rev')}" if m.group("rev") else "")
    if "@" in text:
        text, revision = text.split("@", 1)
        if not REVISION.match(revision) or ".." in revision or revision.startswith("/"):
            raise CheckpointError(f"--hf revision {revision!r} is not a branch, tag or commit name")
    if not REPO_ID.match(text) or ".." in text or "--" in text:
        raise CheckpointError(
            f"--hf {spec!r} is not a Hugging Face repo id: give OWNER/NAME, optionally @REVISION "
            "(a branch, tag or commit)"
        )
    return text, revision


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), read now, as the library reads it at import."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir() -> Path:
    """The library's cache folder rule, read now: HF_HUB_CACHE, else HF_HOME/hub, else
    XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub."""
    if value := os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expandvars(value)).expanduser()
    if value := os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(value)).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def _library():
    """huggingface_hub, with its offline switch set from the environment as it is NOW: the
    library reads HF_HUB_OFFLINE once at import, we promise to honour it per call."""
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = is_offline()
    return huggingface_hub


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _token() -> str | None:
    return os.environ.get("HF_TOKEN") or None  # None: the library's saved login, if any


# ---------------------------------------------------------------------------------------------
# Errors: one line each


def _is_network_error(e: BaseException) -> bool:
    root = type(e).__module__.split(".")[0]
    return root in {"httpx", "httpx2", "httpcore", "requests", "urllib3", "socket", "ssl"} or isinstance(
        e, (ConnectionError, TimeoutError)
    )


def _status(e: BaseException) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def hub_error(e: BaseException, repo: str, revision: str, filename: str | None = None) -> CheckpointError:
    """A huggingface_hub / network exception as one line saying what to do."""
    from huggingface_hub import errors as hf

    where = repo if revision == "main" else f"{repo}@{revision}"
    if isinstance(e, hf.GatedRepoError):
        return CheckpointError(f"{repo} is a gated repo: accept its conditions on the Hub, then set HF_TOKEN "
                               "to a token of that account")
    if isinstance(e, hf.RevisionNotFoundError):
        return CheckpointError(f"no revision {revision!r} in {repo} (a branch, tag or commit of the repo)")
    if isinstance(e, hf.RepositoryNotFoundError):
        return CheckpointError(f"no model repo {repo} on the Hugging Face Hub (a private repo needs HF_TOKEN)")
    if isinstance(e, (hf.OfflineModeIsEnabled, hf.LocalEntryNotFoundError)):
        what = f"{filename} of {where}" if filename else where
        return CheckpointError(f"{what} is not in the Hugging Face cache ({hub_cache_dir()}) and the Hub "
                               "is not asked (HF_HUB_OFFLINE is set): run once without it to download")
    if isinstance(e, hf.EntryNotFoundError):
        return CheckpointError(f"{filename or 'a file'} is listed in {where} but the Hub does not serve it")
    if isinstance(e, hf.HFValidationError):
        return CheckpointError(f"--hf {where!r} is not a Hugging Face repo id (OWNER/NAME)")
    status = _status(e)
    if status in (401, 403):
        return CheckpointError(f"the Hub refused access to {where} (HTTP {status}): check HF_TOKEN")
    if status is not None:
        return CheckpointError(f"the Hugging Face Hub answered HTTP {status} for {where}: try again later, "
                               "or set HF_HUB_OFFLINE=1 to use the cache")
    if _is_network_error(e) or isinstance(e, OSError):
        reason = " ".join(str(e).split())[:120] or type(e).__name__
        return CheckpointError(f"cannot reach the Hugging Face Hub for {where} ({reason}): check the network, "
                               "or set HF_HUB_OFFLINE=1 to use the cache")
    reason = " ".join(str(e).split())[:160] or type(e).__name__
    return CheckpointError(f"cannot fetch {where} from the Hugging Face Hub: {reason}")


# ---------------------------------------------------------------------------------------------
# Listing a repo: online, or from the cache


def remote_listing(repo: str, revision: str) -> tuple[str, list[str]]:
    """(commit, file paths) of `repo` at `revision`, asked of the Hub."""
    HfApi = _library().HfApi
    info = HfApi(endpoint=_endpoint(), token=_token()).model_info(repo, revision=revision)
    if not info.sha:
        raise CheckpointError(f"the Hub did not say which commit {repo}@{revision} is")
    return info.sha, [s.rfilename for s in (info.siblings or [])]


def cached_commit(cache: Path, repo: str, revision: str) -> str | None:
    folder = repo_folder(cache, repo)
    if COMMIT.match(revision) and (folder / "snapshots" / revision).is_dir():
        return revision
    try:
        commit = (folder / "refs" / revision).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return commit if COMMIT.match(commit) else None


def snapshot_files(snapshot: Path) -> list[str]:
    """Files in a cached snapshot (links into blobs/), as repo-relative POSIX paths."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(snapshot):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(snapshot)
        found.extend((PurePosixPath(*rel.parts) / name).as_posix() for name in sorted(filenames))
        if len(found) > MAX_CACHED_FILES:
            break
    return found


def cached_listing(repo: str, revision: str) -> tuple[str, list[str]] | None:
    """(commit, files) of a snapshot already in the cache, or None."""
    cache = hub_cache_dir()
    commit = cached_commit(cache, repo, revision)
    if commit is None:
        return None
    snapshot = repo_folder(cache, repo) / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    return commit, snapshot_files(snapshot)


# ---------------------------------------------------------------------------------------------
# Download progress


def _reporting_tqdm(report: DownloadProgress):
    """A tqdm class for huggingface_hub that reports to `report` instead of drawing a bar."""
    from tqdm.auto import tqdm

    class ReportingTqdm(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
            self._label = str(kwargs.get("desc") or "")
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            result = super().update(n)
            report(self._label, int(self.n), int(self.total) if self.total else None)
            return result

        def close(self):
            file = self.fp
            super().close()
            try:
                file.close()
            except Exception:  # pragma: no cover
                pass

    return ReportingTqdm


def download_lines(progress: Progress, step_percent: int = 10) -> DownloadProgress:
    """A download_progress callback that reports as occasional text lines through `progress`
    (`Downloading model_000650.pt: 1.2 GB of 3.4 GB (30%)`, every `step_percent`): for a UI
    that shows status lines rather than a bar (the TUI passes this to ModelSelection.load)."""
    from .checkpoint_files import human_bytes

    last: dict[str, int] = {}

    def report(name: str, done: int, total: int | None) -> None:
        short = name.rsplit("/", 1)[-1]
        if not total:
            return
        percent = min(100, done * 100 // total)
        bucket = percent // step_percent
        if last.get(name) == bucket:
            return
        last[name] = bucket
        progress(f"Downloading {short}: {human_bytes(done)} of {human_bytes(total)} ({percent}%)")

    return report


def _write_ref(cache: Path, repo: str, revision: str, commit: str) -> None:
    """Remember revision -> commit as the library does, so an offline run finds the snapshot."""
    if revision == commit:
        return
    ref = repo_folder(cache, repo) / "refs" / revision
    try:
        if ref.is_file() and ref.read_text(encoding="ascii").strip() == commit:
            return
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
        tmp.write_text(commit, encoding="ascii")
        os.replace(tmp, ref)
    except OSError:
        pass  # the download worked; only a later offline run would miss the ref


# ---------------------------------------------------------------------------------------------
# Fetching one checkpoint


def read_repo(repo: str, revision: str, progress: Progress) -> tuple[str, list[str], bool]:
    """(commit, files, offline) for `repo@revision`: from the Hub, or the cache when offline or
    when the Hub cannot be reached but the cache has the revision."""
    if not is_offline():
        try:
            commit, files = remote_listing(repo, revision)
            return commit, files, False
        except CheckpointError:
            raise
        except Exception as e:
            error = hub_error(e, repo, revision)
            network = _is_network_error(e) or (_status(e) or 0) >= 500
            cached = cached_listing(repo, revision) if network else None
            if cached is None:
                raise error from None
            progress(f"{error}; using the cached copy")
            return cached[0], cached[1], True
    cached = cached_listing(repo, revision)
    if cached is None:
        where = repo if revision == "main" else f"{repo}@{revision}"
        raise CheckpointError(f"{where} is not in the Hugging Face cache ({hub_cache_dir()}) and the Hub is not "
                              "asked (HF_HUB_OFFLINE is set): run once without it to download")
    return cached[0], cached[1], True


def scan_repo(repo: str, files: list[str]) -> Scan:
    return scan(ListTree(files), root_name=repo.split("/", 1)[1])


def fetch_checkpoint(spec: str, source: str | None = None, model_tag: str | None = None,
                     step: int | None = None, progress: Progress | None = None,
                     download_progress: DownloadProgress | None = None) -> tuple[CheckpointLocation, HubOrigin]:
    """Choose a checkpoint in a Hub repo by -i/-g/-s and download its three files (if not
    cached). Returns its location in the cache and where it came from. CheckpointError (one
    line) for every problem: a bad spec, no such repo or revision, a gated repo, no network,
    no nanochat checkpoint in the repo."""
    say = progress or (lambda _line: None)
    repo, revision = parse_repo_spec(spec)
    origin_where = repo if revision == "main" else f"{repo}@{revision}"
    try:
        _library()
    except ImportError:  # pragma: no cover - a dependency, but a broken install says so
        raise CheckpointError("--hf needs the huggingface_hub package: pip install huggingface_hub") from None
    say(f"Looking for nanochat checkpoints in hf:{origin_where}")
    commit, files, offline = read_repo(repo, revision, say)
    s = scan_repo(repo, files)
    folder, step, note = choose(s, f"hf:{origin_where}", source, model_tag, step)
    if note:
        say(note)
    if folder.tokenizer is None:
        raise CheckpointError(
            f"no tokenizer for {folder.rel} in hf:{origin_where}: looked for tokenizer.pkl and "
            "tokenizer/tokenizer.pkl there and up to 2 folders above"
        )
    wanted = [folder.model_rel(step), folder.meta_rel(step), folder.tokenizer]
    cache = hub_cache_dir()
    snapshot = repo_folder(cache, repo) / "snapshots" / commit
    missing = [rel for rel in wanted if not (snapshot / rel).is_file()]
    if missing:
        say(f"Downloading {', '.join(str(r) for r in missing)} from hf:{origin_where} "
            f"(commit {commit[:12]}) into {cache}")
    hf_hub_download = _library().hf_hub_download
    tqdm_class = _reporting_tqdm(download_progress) if download_progress else None
    for rel in wanted:
        try:
            hf_hub_download(repo, rel.as_posix(), revision=commit, cache_dir=cache, token=_token(),
                            endpoint=_endpoint(), local_files_only=offline, tqdm_class=tqdm_class)
        except Exception as e:
            raise hub_error(e, repo, revision, rel.as_posix()) from None
    if not offline:
        _write_ref(cache, repo, revision, commit)
    loc = location_in(snapshot, s, folder, step)
    return loc, HubOrigin(repo, revision, commit)
