"""Finding a nanochat checkpoint in a folder (nanochat-format.md §1; docs/checkpoints.md).

People have checkpoints in three shapes: the base dir nanochat's training wrote
(`<base>/chatsft_checkpoints/d20/model_000650.pt`), a copy of part of it (a stage folder, a tag
folder), or a flat folder as published on the Hugging Face Hub (`model_000650.pt`,
`meta_000650.json` and `tokenizer.pkl` side by side, at the root or in a subfolder). The rules
that find one, in order (docs/checkpoints.md "Which folders work"):

1. a checkpoint folder: the folder itself holds `model_<step>.pt` files;
2. a base dir: it holds stage folders (`base_checkpoints/`, `mid_checkpoints/`,
   `chatsft_checkpoints/`, `sft_checkpoints/`, `chatrl_checkpoints/`, or `base/`, `mid/`, `sft/`,
   `rl/`), whose sub-folders are tags;
3. anything else: the checkpoint folders found up to MAX_DEPTH levels down (a stage folder's
   tags, a repository's subfolder), hidden folders skipped.

Each checkpoint folder has a stage (from the nearest folder named like a stage, else unknown), a
tag (its name; for a folder not named like a tag, the `dNN` in its name, else its name) and
steps. `-i` picks the stage (default: sft, else the only stage there is), `-g` the tag
(default: nanochat's rule, largest dNN, else newest), `-s` the step (default: largest). The
tokenizer is the nearest `tokenizer.pkl` or `tokenizer/tokenizer.pkl` in the checkpoint folder,
its parent or its grandparent (in nanochat's layout, the base dir), never above a Hub snapshot.

The same rules run over a folder on disk (DiskTree) and over a Hub repository's file list
(ListTree, hub.py), so a repo is understood before anything is downloaded. Reading the files is
checkpoint_files.py's job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Protocol, Sequence

from .checkpoint_files import (  # re-exported: the loader's public names live here too
    CheckpointError,
    build_model,
    detect_generation,
    read_model_config,
    read_state_dict,
)

__all__ = [
    "CheckpointError", "CheckpointLocation", "CheckpointFolder", "SOURCE_DIRS", "find_checkpoint",
    "locate", "scan", "default_base_dir", "describe_available", "read_model_config",
    "read_state_dict", "detect_generation", "build_model",
]

SOURCE_DIRS = {
    "base": ("base_checkpoints",),
    # sft_checkpoints: chat_sft wrote there for one day (2026-01-31, nanochat 1ddaad1).
    "sft": ("chatsft_checkpoints", "sft_checkpoints"),
    "rl": ("chatrl_checkpoints",),
    "mid": ("mid_checkpoints",),  # midtraining existed until 2026-01-31
}
# Folder name -> stage. Published repos also use the bare stage names.
STAGE_OF_DIR = {name: stage for stage, names in SOURCE_DIRS.items() for name in (*names, stage)}
STAGE_ORDER = ("base", "mid", "sft", "rl")
DEFAULT_SOURCE = "sft"
MODEL_FILE = re.compile(r"^model_(\d+)\.pt$")
TAG_DEPTH = re.compile(r"^d(\d+)")  # prefix match, so "d12-long" counts as depth 12
TAG_IN_NAME = re.compile(r"(?:^|[^A-Za-z0-9])(d\d+)(?![0-9])")  # "nanochat-d32" -> d32
TOKENIZER_FILES = ("tokenizer.pkl", "tokenizer/tokenizer.pkl")
TOKENIZER_LEVELS = 2  # the checkpoint folder, its parent, its grandparent
MAX_DEPTH = 3  # how deep rule 3 looks for checkpoint folders
MAX_ENTRIES = 20_000  # directory entries rule 3 reads at most (a huge folder is not searched forever)

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# Trees: a folder on disk, or a repository's file list


class Tree(Protocol):
    def entries(self, rel: PurePosixPath) -> tuple[list[str], list[str]]:
        """(file names, folder names) directly in `rel` ('.' is the root); empty if absent."""

    def mtime(self, rel: PurePosixPath) -> float | None:
        """Modification time of folder `rel`, None where there is none (a file list)."""


class DiskTree:
    """A folder on disk. Links are followed (a tag folder may be a link to a training box)."""

    def __init__(self, root: Path):
        self.root = root
        self._cache: dict[PurePosixPath, tuple[list[str], list[str]]] = {}

    def entries(self, rel: PurePosixPath) -> tuple[list[str], list[str]]:
        if rel not in self._cache:
            files, dirs = [], []
            try:
                with os.scandir(self.root / rel) as it:
                    for entry in it:
                        try:
                            (dirs if entry.is_dir() else files).append(entry.name)
                        except OSError:
                            continue
            except OSError:
                pass
            self._cache[rel] = (sorted(files), sorted(dirs))
        return self._cache[rel]

    def mtime(self, rel: PurePosixPath) -> float | None:
        try:
            return (self.root / rel).stat().st_mtime
        except OSError:
            return None


class ListTree:
    """A repository as a list of POSIX file paths relative to its root (hub.py)."""

    def __init__(self, paths: Iterable[str]):
        self._dirs: dict[PurePosixPath, tuple[set[str], set[str]]] = {}
        for p in paths:
            path = PurePosixPath(p)
            parent = path.parent
            self._dirs.setdefault(parent, (set(), set()))[0].add(path.name)
            while parent != PurePosixPath("."):
                self._dirs.setdefault(parent.parent, (set(), set()))[1].add(parent.name)
                parent = parent.parent

    def entries(self, rel: PurePosixPath) -> tuple[list[str], list[str]]:
        files, dirs = self._dirs.get(rel, (set(), set()))
        return sorted(files), sorted(dirs)

    def mtime(self, rel: PurePosixPath) -> float | None:
        return None


# ---------------------------------------------------------------------------------------------
# Scanning


@dataclass(frozen=True)
class CheckpointFolder:
    """One folder holding model_<step>.pt files, relative to the scanned root."""

    rel: PurePosixPath
    stage: str | None  # base | mid | sft | rl, None when no folder name says
    tag: str
    steps: dict[int, str]  # step -> its digits as written (model_650.pt and model_000650.pt both occur)
    tokenizer: PurePosixPath | None  # relative to the root; may start with ".." on disk
    mtime: float | None = None

    def model_rel(self, step: int) -> PurePosixPath:
        return self.rel / f"model_{self.steps[step]}.pt"

    def meta_rel(self, step: int) -> PurePosixPath:
        return self.rel / f"meta_{self.steps[step]}.json"


@dataclass
class Scan:
    """What a folder holds: its checkpoint folders, and how it was read (for messages)."""

    layout: str  # "checkpoint folder" | "base dir" | "folder"
    folders: list[CheckpointFolder] = field(default_factory=list)
    files_seen: list[str] = field(default_factory=list)  # the root's own entries, for "found: …"
    dirs_seen: list[str] = field(default_factory=list)


def _steps(files: Sequence[str]) -> dict[int, str]:
    steps: dict[int, str] = {}
    for name in files:
        if m := MODEL_FILE.match(name):
            step = int(m.group(1))
            # Two spellings of one step: keep nanochat's zero-padded one.
            if step not in steps or len(m.group(1)) == 6:
                steps[step] = m.group(1)
    return dict(sorted(steps.items()))


def _tag_for(name: str, in_stage_folder: bool) -> str:
    if in_stage_folder or TAG_DEPTH.match(name):
        return name
    m = TAG_IN_NAME.search(name)
    return m.group(1) if m else name


def _stage_for(parts: Sequence[str]) -> str | None:
    """The stage named by the nearest folder, looking from the checkpoint folder upwards."""
    for name in reversed(parts):
        if name in STAGE_OF_DIR:
            return STAGE_OF_DIR[name]
    return None


def _find_tokenizer(tree: Tree, rel: PurePosixPath, above_root: bool) -> PurePosixPath | None:
    here = rel
    for _level in range(TOKENIZER_LEVELS + 1):
        for candidate in TOKENIZER_FILES:
            path = here / candidate
            files, _ = tree.entries(path.parent)
            if path.name in files:
                return path
        if here == PurePosixPath("."):
            if not above_root:
                return None
            here = PurePosixPath("..")
        elif here.name == "..":
            here = here / ".."
        else:
            here = here.parent
    return None


def scan(tree: Tree, root_name: str = "", root_parents: Sequence[str] = (), above_root: bool = False) -> Scan:
    """Apply the rules in the module docstring to `tree`. `root_name` and `root_parents` (the
    names of the root and the folders above it, nearest last) let a tag folder named on the
    command line know its stage from where it sits; `above_root` lets the tokenizer be found in
    the parent or grandparent of the root (on disk, not in a Hub snapshot)."""
    dot = PurePosixPath(".")
    files, dirs = tree.entries(dot)
    context = [*root_parents, root_name]
    result = Scan("folder", files_seen=files, dirs_seen=dirs)

    def folder(rel: PurePosixPath, parts: Sequence[str], files: Sequence[str]) -> None:
        steps = _steps(files)
        if not steps:
            return
        stage = _stage_for(parts)
        in_stage_folder = len(parts) >= 2 and parts[-2] in STAGE_OF_DIR
        name = parts[-1] if parts else root_name
        result.folders.append(CheckpointFolder(
            rel, stage, _tag_for(name or "model", in_stage_folder), steps,
            _find_tokenizer(tree, rel, above_root), tree.mtime(rel),
        ))

    # Rule 1: the folder itself is a checkpoint folder.
    if _steps(files):
        result.layout = "checkpoint folder"
        folder(dot, context, files)
        return result
    # Rule 2: a base dir (stage folders inside).
    stage_dirs = [d for d in dirs if d in STAGE_OF_DIR]
    if stage_dirs:
        result.layout = "base dir"
        for d in stage_dirs:
            stage_files, tags = tree.entries(dot / d)
            folder(dot / d, [*context, d], stage_files)
            for tag in tags:
                folder(dot / d / tag, [*context, d, tag], tree.entries(dot / d / tag)[0])
        return result
    # Rule 3: look down for checkpoint folders.
    budget = [MAX_ENTRIES]

    def walk(rel: PurePosixPath, parts: list[str], depth: int) -> None:
        for d in tree.entries(rel)[1]:
            if d.startswith(".") or budget[0] <= 0:
                continue
            sub_files, _sub_dirs = tree.entries(rel / d)
            budget[0] -= len(sub_files) + len(_sub_dirs) + 1
            folder(rel / d, [*parts, d], sub_files)
            if depth + 1 < MAX_DEPTH and not _steps(sub_files):
                walk(rel / d, [*parts, d], depth + 1)

    walk(dot, context, 0)
    return result


# ---------------------------------------------------------------------------------------------
# Choosing


@dataclass(frozen=True)
class CheckpointLocation:
    """One checkpoint, chosen: its folder, step and the three files to read."""

    base_dir: Path  # the folder that was searched (--model-dir, a Hub snapshot)
    source: str  # base | mid | sft | rl, or "" when no folder name tells the stage
    tag_dir: Path
    model_tag: str
    step: int
    model_path: Path
    meta_path: Path
    tokenizer_path: Path | None  # None: none found (the loader says where it looked)
    layout: str = "base dir"


def default_base_dir() -> Path:
    env = os.environ.get("NANOCHAT_BASE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nanochat"


def _describe_folder(f: CheckpointFolder) -> str:
    where = "" if str(f.rel) == "." else f" in {f.rel}/"
    steps = ", ".join(map(str, f.steps))
    return f"{f.stage or 'stage ?'} {f.tag} (steps {steps}){where}"


def describe_scan(s: Scan) -> str:
    """`sft d20 (steps 700, 800); base d20 (steps 21400)`, or what the root holds."""
    if s.folders:
        return "; ".join(_describe_folder(f) for f in s.folders)
    shown = [*(d + "/" for d in s.dirs_seen[:6]), *s.files_seen[:6]]
    more = len(s.dirs_seen) + len(s.files_seen) - len(shown)
    if not shown:
        return "nothing (an empty folder)"
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def describe_available(base_dir: Path) -> str:
    """What checkpoints exist under base_dir (one line)."""
    s = scan(DiskTree(base_dir), base_dir.name)
    return describe_scan(s) if s.folders else "no checkpoints at all"


LOOKED_FOR = ("model_<step>.pt with meta_<step>.json (a checkpoint folder), stage folders such as "
              "chatsft_checkpoints/ (a base dir), or checkpoint folders up to 3 levels down")


def choose(s: Scan, where: str, source: str | None, model_tag: str | None,
           step: int | None) -> tuple[CheckpointFolder, int, str | None]:
    """Pick a folder and step by -i/-g/-s (module docstring). Returns (folder, step, note),
    where note says what was chosen on the user's behalf when it was not the obvious one."""
    if not s.folders:
        raise CheckpointError(f"no nanochat checkpoint in {where}: looked for {LOOKED_FOR}; found {describe_scan(s)}")
    note = None
    folders = s.folders
    known = sorted({f.stage for f in folders if f.stage}, key=STAGE_ORDER.index)
    if source is not None:
        if known:
            folders = [f for f in folders if f.stage == source]
            if not folders:
                dirs = ", ".join(d + "/" for d in SOURCE_DIRS[source])
                raise CheckpointError(f"no {source} checkpoints in {where} (looked for {dirs}; "
                                      f"found: {describe_scan(s)})")
    elif any(f.stage == DEFAULT_SOURCE for f in folders):
        folders = [f for f in folders if f.stage == DEFAULT_SOURCE]
    elif len({f.stage for f in folders}) > 1:
        stages = ", ".join(known + (["unnamed"] if any(f.stage is None for f in folders) else []))
        raise CheckpointError(f"{where} holds several stages ({stages}) and no sft: choose one with -i "
                              f"(found: {describe_scan(s)})")
    elif known:
        note = f"no sft checkpoint in {where}; using its {known[0]} checkpoint (choose with -i)"
    if model_tag is not None:
        chosen = [f for f in folders if model_tag in (f.tag, f.rel.name)]
        if not chosen:
            tags = ", ".join(sorted({f.tag for f in folders}))
            raise CheckpointError(f"no model tag {model_tag!r} in {where} (tags present: {tags})")
        picked = chosen[0]
    else:
        picked = _guess_tag(folders)
    if step is None:
        step = max(picked.steps)
    elif step not in picked.steps:
        present = ", ".join(map(str, picked.steps))
        raise CheckpointError(f"no step {step} in {where}{'' if str(picked.rel) == '.' else '/' + str(picked.rel)} "
                              f"(steps present: {present})")
    return picked, step, note


def _guess_tag(folders: list[CheckpointFolder]) -> CheckpointFolder:
    """nanochat's rule: the largest dNN tag, else the most recently modified folder (on the
    Hub, where folders have no dates: the last by name)."""
    with_depth = [(int(m.group(1)), f) for f in folders if (m := TAG_DEPTH.match(f.tag))]
    if with_depth:
        return max(with_depth, key=lambda pair: pair[0])[1]
    return max(folders, key=lambda f: (f.mtime or 0.0, str(f.rel)))


def _parents(path: Path, n: int) -> list[str]:
    names = [p.name for p in list(path.parents)[:n]]
    return list(reversed(names))


def scan_dir(root: Path) -> Scan:
    """scan() over a folder on disk; a missing folder or a file is a CheckpointError."""
    if not root.exists():
        raise CheckpointError(f"{root} does not exist")
    if not root.is_dir():
        raise CheckpointError(f"{root} is not a folder (--model-dir names a folder holding checkpoints)")
    absolute = root.resolve()
    return scan(DiskTree(root), absolute.name, _parents(absolute, TOKENIZER_LEVELS), above_root=True)


def location_in(root: Path, s: Scan, folder: CheckpointFolder, step: int) -> CheckpointLocation:
    tag_dir = root / folder.rel if str(folder.rel) != "." else root
    tokenizer = root / folder.tokenizer if folder.tokenizer is not None else None
    return CheckpointLocation(
        base_dir=root, source=folder.stage or "", tag_dir=tag_dir, model_tag=folder.tag, step=step,
        model_path=root / folder.model_rel(step), meta_path=root / folder.meta_rel(step),
        tokenizer_path=tokenizer, layout=s.layout,
    )


def no_tokenizer(loc: CheckpointLocation) -> CheckpointError:
    return CheckpointError(
        f"no tokenizer for {loc.tag_dir}: looked for {' and '.join(TOKENIZER_FILES)} there and up to "
        f"{TOKENIZER_LEVELS} folders above (nanochat keeps it in <base dir>/tokenizer/)"
    )


def locate(root: Path, source: str | None = None, model_tag: str | None = None, step: int | None = None,
           progress: Progress | None = None) -> CheckpointLocation:
    """Find the checkpoint `-i/-g/-s` ask for in any folder (module docstring). Raises
    CheckpointError naming what was looked for and what exists."""
    if source is not None and source not in SOURCE_DIRS:
        raise CheckpointError(f"unknown source {source!r}: choose base, mid, sft or rl")
    s = scan_dir(root)
    folder, step, note = choose(s, str(root), source, model_tag, step)
    if note and progress:
        progress(note)
    return location_in(root, s, folder, step)


def find_checkpoint(base_dir: Path, source: str | None = "sft", model_tag: str | None = None,
                    step: int | None = None) -> CheckpointLocation:
    """Resolve source / tag / step in a folder of any layout (see locate)."""
    return locate(Path(base_dir), source, model_tag, step)
