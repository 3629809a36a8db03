"""Every checkpoint this machine has, as one list: `nanochat-tui models` and the TUI's model
picker show the same entries (docs/core-api.md "Model catalog").

Where it looks, in this order (docs/checkpoints.md "Listing models"):
1. the base dir (--model-dir, else $NANOCHAT_BASE_DIR, else ~/.cache/nanochat), any layout;
2. extra folders (the config file's list, `models --dir`), any layout;
3. nanochat repos already in the Hugging Face cache (only steps whose three files are there);
4. the bundled demo model, last and marked.
Each entry is one step of one checkpoint folder. Generation and parameter count come from the
model file's tensor table (torch.load with mmap: the weights themselves are not read).

`load_entry` loads one entry (blocking); `load_in_background` does it on a worker thread with
progress callbacks, for a UI that must keep responding.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from .checkpoint_files import CheckpointError
from .checkpoints import (
    STAGE_ORDER,
    CheckpointLocation,
    DiskTree,
    Scan,
    default_base_dir,
    location_in,
    scan,
    scan_dir,
)
from .hub import HubOrigin, hub_cache_dir

if TYPE_CHECKING:  # pragma: no cover
    from .api import ChatModel

Progress = Callable[[str], None]
DownloadProgress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class CatalogEntry:
    """One loadable checkpoint (one step of one folder)."""

    kind: str  # "folder" | "hf" | "demo"
    stage: str | None  # base | mid | sft | rl; None when no folder name says
    tag: str
    step: int
    generation: str | None  # None when the model file could not be read (see `problem`)
    params: int | None
    size_bytes: int  # model + meta + tokenizer on disk
    where: str  # the checkpoint folder, or hf:OWNER/NAME@REVISION
    model_path: str
    meta_path: str
    tokenizer_path: str | None
    layout: str
    hf_repo: str | None = None
    hf_revision: str | None = None
    hf_commit: str | None = None
    problem: str | None = None  # why this entry would not load, when already known

    @property
    def is_demo(self) -> bool:
        return self.kind == "demo"

    @property
    def key(self) -> str:
        """A stable id for pickers: the model file's path."""
        return self.model_path

    @property
    def label(self) -> str:
        stage = self.stage or "?"
        name = "demo model" if self.is_demo else self.tag
        return f"{name} · {stage} step {self.step} · {self.generation or '?'}"

    def to_json(self) -> dict:
        data = asdict(self)
        data["demo"] = self.is_demo
        return data

    def location(self) -> CheckpointLocation:
        tag_dir = Path(self.model_path).parent
        return CheckpointLocation(
            base_dir=tag_dir, source=self.stage or "", tag_dir=tag_dir, model_tag=self.tag, step=self.step,
            model_path=Path(self.model_path), meta_path=Path(self.meta_path),
            tokenizer_path=Path(self.tokenizer_path) if self.tokenizer_path else None, layout=self.layout,
        )


# ---------------------------------------------------------------------------------------------
# Listing


def _size(paths: Iterable[Path | None]) -> int:
    total = 0
    for p in paths:
        if p is None:
            continue
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def _describe_weights(model_path: Path) -> tuple[str | None, int | None, str | None]:
    """(generation, parameters, problem) from the model file's tensor table."""
    from .checkpoint_files import detect_generation, read_state_dict

    try:
        state = read_state_dict(model_path)
    except CheckpointError as e:
        return None, None, str(e)
    return detect_generation(state), sum(t.numel() for t in state.values()), None


def _entries_of(root: Path, s: Scan, kind: str, hub: HubOrigin | None = None,
                need_files: bool = False) -> list[CatalogEntry]:
    entries = []
    for folder in s.folders:
        for step in folder.steps:
            loc = location_in(root, s, folder, step)
            files = (loc.model_path, loc.meta_path, loc.tokenizer_path)
            if need_files and not all(p is not None and p.is_file() for p in files):
                continue  # a Hub snapshot holds only what was downloaded
            problem = None
            if not loc.meta_path.is_file():
                problem = f"no {loc.meta_path.name} beside {loc.model_path.name}"
            elif loc.tokenizer_path is None:
                problem = "no tokenizer found"
            generation, params, weights_problem = _describe_weights(loc.model_path)
            entries.append(CatalogEntry(
                kind=kind, stage="sft" if kind == "demo" else (folder.stage or None), tag=folder.tag, step=step,
                generation=generation, params=params, size_bytes=_size(files),
                where=f"hf:{hub.spec}" if hub else str(loc.tag_dir),
                model_path=str(loc.model_path), meta_path=str(loc.meta_path),
                tokenizer_path=str(loc.tokenizer_path) if loc.tokenizer_path else None, layout=s.layout,
                hf_repo=hub.repo if hub else None, hf_revision=hub.revision if hub else None,
                hf_commit=hub.commit if hub else None, problem=problem or weights_problem,
            ))
    entries.sort(key=lambda e: (STAGE_ORDER.index(e.stage) if e.stage in STAGE_ORDER else len(STAGE_ORDER),
                                e.tag, e.step))
    return entries


def folder_entries(root: Path) -> list[CatalogEntry]:
    """Entries in one folder of any layout; [] when it does not exist or holds none."""
    try:
        s = scan_dir(root)
    except CheckpointError:
        return []
    return _entries_of(root, s, "folder")


def _refs_by_commit(repo_dir: Path) -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    refs_dir = repo_dir / "refs"
    for dirpath, _dirs, files in os.walk(refs_dir):
        for name in files:
            path = Path(dirpath) / name
            try:
                commit = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            refs.setdefault(commit, []).append(path.relative_to(refs_dir).as_posix())
    return refs


def hub_cache_entries(cache: Path | None = None) -> list[CatalogEntry]:
    """nanochat checkpoints already downloaded into the Hugging Face cache (no network)."""
    cache = cache or hub_cache_dir()
    entries: list[CatalogEntry] = []
    try:
        repo_dirs = sorted(p for p in cache.iterdir() if p.name.startswith("models--") and p.is_dir())
    except OSError:
        return []
    for repo_dir in repo_dirs:
        parts = repo_dir.name.split("--")
        if len(parts) != 3:
            continue
        repo = f"{parts[1]}/{parts[2]}"
        refs = _refs_by_commit(repo_dir)
        try:
            snapshots = sorted(p for p in (repo_dir / "snapshots").iterdir() if p.is_dir())
        except OSError:
            continue
        for snapshot in snapshots:
            names = sorted(refs.get(snapshot.name, []), key=lambda r: (r != "main", r))
            origin = HubOrigin(repo, names[0] if names else snapshot.name, snapshot.name)
            s = scan(DiskTree(snapshot), root_name=parts[2], above_root=False)
            entries.extend(_entries_of(snapshot, s, "hf", origin, need_files=True))
    return entries


def demo_entries() -> list[CatalogEntry]:
    from .resources import demo_model_dir

    demo = demo_model_dir()
    try:
        s = scan_dir(demo)
    except CheckpointError:
        return []
    return _entries_of(demo, s, "demo")


def list_models(base_dir: str | Path | None = None, extra_dirs: Sequence[str | Path] = (),
                include_hub: bool = True, include_demo: bool = True) -> list[CatalogEntry]:
    """Every checkpoint found: the base dir, `extra_dirs` (e.g. the config file's folders), the
    HF cache, then the demo model (marked). A folder listed twice appears once."""
    roots = [Path(base_dir) if base_dir is not None else default_base_dir()]
    roots = [Path(os.path.abspath(p.expanduser())) for p in [*roots, *map(Path, extra_dirs)]]
    found: list[CatalogEntry] = []
    for root in roots:
        found += folder_entries(root)
    if include_hub:
        found += hub_cache_entries()
    if include_demo:
        found += demo_entries()
    seen: set[str] = set()
    unique = []
    for entry in found:
        key = os.path.realpath(entry.model_path)
        if key not in seen:
            seen.add(key)
            unique.append(entry)
    return unique


# ---------------------------------------------------------------------------------------------
# Loading


def load_entry(entry: CatalogEntry, *, device: str | None = None, dtype: str | None = None,
               softcap: float | None = None, progress: Progress | None = None,
               quantize: str | None = None) -> "ChatModel":
    """Load exactly this entry (its files, no search, no network). CheckpointError on problems.
    `quantize="int8"`: int8 weights on CPU, as --quantize (a front-end keeps its choice)."""
    from .api import load_location

    hub = HubOrigin(entry.hf_repo, entry.hf_revision or "main", entry.hf_commit or "") if entry.hf_repo else None
    return load_location(entry.location(), device=device, dtype=dtype, softcap=softcap,
                         is_demo=entry.is_demo, progress=progress, hub=hub, quantize=quantize)


class BackgroundLoad:
    """A load running on a worker thread. `done` is set when it ends; then `model` or `error`
    holds the outcome. Callbacks run on the worker thread (a UI hands them to its own loop)."""

    def __init__(self, entry: CatalogEntry, progress: Progress | None,
                 on_done: Callable[["ChatModel | None", BaseException | None], None] | None, **options):
        self.entry = entry
        self.model: "ChatModel | None" = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._progress = progress
        self._on_done = on_done
        self._options = options
        self.thread = threading.Thread(target=self._run, name=f"load {entry.tag}", daemon=True)

    def _run(self) -> None:
        try:
            self.model = load_entry(self.entry, progress=self._progress, **self._options)
        except BaseException as e:  # handed to the caller, never lost on the thread
            self.error = e
        finally:
            self.done.set()
            if self._on_done is not None:
                self._on_done(self.model, self.error)

    def wait(self, timeout: float | None = None) -> "ChatModel":
        """Block until loaded; re-raises the load's error. TimeoutError if not done in time."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"loading {self.entry.label} is still running")
        if self.error is not None:
            raise self.error
        assert self.model is not None
        return self.model


def load_in_background(entry: CatalogEntry, *, progress: Progress | None = None,
                       on_done: Callable[["ChatModel | None", BaseException | None], None] | None = None,
                       device: str | None = None, dtype: str | None = None,
                       softcap: float | None = None, quantize: str | None = None) -> BackgroundLoad:
    """Start loading `entry` on a worker thread and return at once (see BackgroundLoad)."""
    job = BackgroundLoad(entry, progress, on_done, device=device, dtype=dtype, softcap=softcap, quantize=quantize)
    job.thread.start()
    return job
