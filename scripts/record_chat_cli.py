"""Record nanochat's own `scripts/chat_cli.py` token histories for the golden fixtures.

For each fixture generation (tests/fixtures/nanochat-generations/<gen>/) this runs the chat_cli.py
of the nanochat commit that fixture was made with, unmodified, on CPU in float32, feeds it typed
lines as if from a keyboard, and writes what it kept in its `conversation_tokens` after every line
to tests/fixtures/chat_cli/<gen>.json. Those recordings let our line chat be tested to keep exactly
the history nanochat's CLI keeps (nanochat-format.md §5 "How nanochat's own front-ends built
prompts").

Nothing of nanochat's code is copied here: a child process extracts the commit from a nanochat git
repository (`git archive`), puts it on sys.path and runs its chat_cli.py with `runpy`. The only
things the child changes around it:

- `input()` returns the scripted lines (then EOF, which chat_cli treats as "Goodbye"); each call
  first copies chat_cli's `conversation_tokens`, so we see the history after every line.
- `Engine.generate` is wrapped to note each yielded token and its mask (1 sampled, 0 forced by the
  calculator); the tokens pass through untouched.
- `rustbpe` (only needed to TRAIN a tokenizer) gets an empty placeholder module if not installed.
- At the commits whose KVCache defaulted to bfloat16 on every device (2026-01-11 .. 2026-01-17;
  nanochat-format.md §9.5) the default is set to float32, the upstream fix f9a7e0f; without it
  that Engine crashes on CPU. The fixtures of those commits were made the same way.
- "canonical" mode only: the model handed to nanochat's Engine is wrapped so that every forward
  call still runs through nanochat's cache (positions advance as usual) but the logits returned
  come from a full-sequence forward, without a cache, of every token so far. This is chat_cli's
  protocol (sampling, stop tokens, calculator, history) with the full-sequence model's math:
  the "canonical" ids of the fixtures (expected.json "canonical"), extended to chat_cli. It
  differs from the real run only where that commit's Engine had a bug on CPU (§9.5).

Usage:
    python scripts/record_chat_cli.py record --nanochat-repo /path/to/nanochat [--gen GEN ...]
        [--plan plan.json] [--canonical auto|always|never]
Without --plan, the typed lines and flags are read back from the existing recordings, so a rerun
checks that nanochat still gives the same histories (it prints `!!` on any difference). A plan is
JSON {gen: [{name, temperature, top_k, lines, shows[, canonical_run]}]}. The canonical run costs a
full forward per token (minutes per conversation on a busy 2-core machine); `auto` runs it only at
the commits whose Engine has a known CPU bug, and a conversation's `canonical_run` overrides.

    python scripts/record_chat_cli.py search --gen GEN [--temperature T --top-k K] ...
uses OUR engine (nanochat_core) to find typed lines whose replies show a wanted case (a reply
ending in <|bos|>, an empty reply, a python block...) and prints a plan entry; confirm with `record`.
Example (the recipe of every `defaults` conversation):
    search --gen gen5-smear-backout --name defaults 'empty@  |  ' 'ends_bos@|\t' 'blank:   ' \
        'max_tokens@\t|' clear 'python_unclosed@ |' 'any@|  '

"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "nanochat-generations"
OUT_DIR = REPO / "tests" / "fixtures" / "chat_cli"
MAX_NEW_TOKENS = 256  # chat_cli's max_tokens (fixed in its code)
SEED = 42  # Engine.generate's default seed, which chat_cli never changes

SPECIAL_NAMES = ("<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>",
                 "<|assistant_end|>", "<|python_start|>", "<|python_end|>", "<|output_start|>",
                 "<|output_end|>")


# ---------------------------------------------------------------------------------------------
# The child: runs one chat_cli.py conversation inside this process.

class FullSequenceModel:
    """Stands in for nanochat's GPT inside its Engine ("canonical" mode, see the module doc).

    nanochat's cached forward still runs, so the cache's position advances exactly as nanochat's
    code expects; the logits handed back are those of an uncached forward over the whole sequence.
    """

    def __init__(self, model):
        self._model = model
        self._tokens: list[int] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def forward(self, idx, *args, kv_cache=None, **kwargs):
        import torch

        if kv_cache is None:
            return self._model.forward(idx, *args, **kwargs)
        start = kv_cache.get_pos()
        self._model.forward(idx, *args, kv_cache=kv_cache, **kwargs)
        assert idx.size(0) == 1, "chat_cli runs one sample"
        self._tokens = self._tokens[:start] + idx[0].tolist()
        full = torch.tensor([self._tokens], dtype=torch.long, device=idx.device)
        logits = self._model.forward(full)
        return logits[:, -idx.size(1):, :]


def _child(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    src = job["nanochat_src"]
    here = Path(__file__).resolve().parent  # this repository's scripts/: nothing of ours to import
    sys.path[:] = [src] + [p for p in sys.path if p and Path(p).resolve() != here]
    os.chdir(src)
    import builtins
    import importlib
    import inspect
    import runpy
    import types

    import torch

    patches = []
    try:
        importlib.import_module("rustbpe")
    except ImportError:
        sys.modules["rustbpe"] = types.ModuleType("rustbpe")
        patches.append("rustbpe: empty placeholder module (only tokenizer training uses it)")

    engine_mod = importlib.import_module("nanochat.engine")
    Engine, KVCache = engine_mod.Engine, engine_mod.KVCache
    dtype_param = inspect.signature(KVCache.__init__).parameters.get("dtype")
    if dtype_param is not None and dtype_param.default is torch.bfloat16:
        defaults = list(KVCache.__init__.__defaults__)
        defaults[defaults.index(torch.bfloat16)] = torch.float32
        KVCache.__init__.__defaults__ = tuple(defaults)
        patches.append("engine.KVCache dtype default bfloat16 -> float32 (upstream fix f9a7e0f); "
                       "without it this commit's Engine crashes on CPU")

    calls: list[dict] = []
    original_generate = Engine.generate

    def recording_generate(self, tokens, *args, **kwargs):
        call = {"prompt": list(tokens), "kwargs": {k: v for k, v in kwargs.items()},
                "tokens": [], "masks": [], "error": None}
        calls.append(call)
        try:
            for column, masks in original_generate(self, tokens, *args, **kwargs):
                call["tokens"].append(int(column[0]))
                call["masks"].append(int(masks[0]))
                yield column, masks
        except Exception as e:  # recorded, then re-raised: chat_cli itself would stop here
            call["error"] = f"{type(e).__name__}: {e}"
            raise

    Engine.generate = recording_generate

    if job["mode"] == "canonical":
        original_init = Engine.__init__

        def init_full_sequence(self, model, tokenizer):
            original_init(self, model, tokenizer)
            self.model = FullSequenceModel(model)

        Engine.__init__ = init_full_sequence

    lines = list(job["lines"])
    snapshots: list[tuple[list[int], int]] = []  # (conversation_tokens, calls so far) per input()

    def scripted_input(prompt: str = "") -> str:
        conv = sys._getframe(1).f_globals.get("conversation_tokens")
        snapshots.append((list(conv) if conv is not None else None, len(calls)))
        if not lines:
            raise EOFError
        return lines.pop(0)

    builtins.input = scripted_input
    sys.argv = ["scripts/chat_cli.py", "--device-type", "cpu",
                "-t", repr(job["temperature"]), "-k", str(job["top_k"])]
    printed = io.StringIO()
    error = None
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(os.path.join(src, "scripts", "chat_cli.py"), run_name="__main__")
    except Exception as e:  # noqa: BLE001 - chat_cli died: that is a result to record
        error = f"{type(e).__name__}: {e}"
    result = {
        "snapshots": snapshots,
        "calls": calls,
        "error": error,
        "patches": patches,
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "seconds": round(time.perf_counter() - started, 2),
    }
    Path(job["result"]).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# The parent: prepares sources and base dirs, runs children, assembles the recordings.

def extract_commit(repo: Path, commit: str, work: Path) -> Path:
    dest = work / f"nanochat-{commit}"
    if not (dest / "scripts" / "chat_cli.py").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_conversation(src: Path, gen: str, mode: str, conv: dict, work: Path) -> dict:
    """Run chat_cli.py once with `conv`'s flags and lines; return the raw child result."""
    base = work / f"base-{gen}-{mode}"
    if base.exists():
        shutil.rmtree(base)
    shutil.copytree(FIXTURES / gen / "base_dir", base)  # nanochat may write into its base dir
    job = {"nanochat_src": str(src), "mode": mode, "lines": conv["lines"],
           "temperature": conv["temperature"], "top_k": conv["top_k"],
           "result": str(work / f"result-{gen}-{mode}.json")}
    job_path = work / f"job-{gen}-{mode}.json"
    job_path.write_text(json.dumps(job))
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base), NANOCHAT_DTYPE="float32",
               PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)  # nanochat's own package only; never this repository's code
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "_child", str(job_path)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"chat_cli child failed for {gen} ({mode}):\n{proc.stderr[-3000:]}")
    return json.loads(Path(job["result"]).read_text())


def special_ids(gen: str) -> dict[str, int]:
    return json.loads((FIXTURES / gen / "expected.json").read_text())["tokenizer"]["special_token_ids"]


def assemble(gen: str, conv: dict, raw: dict) -> dict:
    """Per typed line: what chat_cli did and the history after it."""
    sp = special_ids(gen)
    lines, snaps, calls = conv["lines"], raw["snapshots"], raw["calls"]
    turns = []
    for i, line in enumerate(lines):
        if i + 1 >= len(snaps):
            # chat_cli died during this line (the exception ended the script): keep what the
            # Engine yielded before it, and the error; the history was never extended.
            if i < len(snaps) and snaps[i][1] < len(calls):
                call = calls[snaps[i][1]]
                turns.append({"typed": line, "action": "error",
                              "user_ids": call["prompt"][len(snaps[i][0]):],
                              "reply_ids": call["tokens"], "reply_masks": call["masks"],
                              "error": call["error"] or raw["error"], "history": snaps[i][0]})
            break
        (before, n_before), (after, n_after) = snaps[i], snaps[i + 1]
        turn: dict = {"typed": line}
        if n_after > n_before:
            call = calls[n_before]
            user_ids = call["prompt"][len(before):]
            reply = call["tokens"]
            turn.update(
                action="reply",
                user_ids=user_ids,
                reply_ids=reply,
                reply_masks=call["masks"],
                appended_assistant_end=bool(reply) and reply[-1] != sp["<|assistant_end|>"],
                reply_case=reply_case(reply, call["masks"], sp),
            )
        elif after == [sp["<|bos|>"]] and line.strip().lower() == "clear":
            turn["action"] = "clear"
        else:
            turn["action"] = "skipped"  # an empty line after strip(): chat_cli asks again
        turn["history"] = after
        turns.append(turn)
    return {"turns": turns, "error": raw["error"]}


def reply_case(reply: list[int], masks: list[int], sp: dict[str, int]) -> list[str]:
    """Labels for what a reply shows (the cases the recordings are chosen to cover)."""
    cases = []
    if reply == [sp["<|assistant_end|>"]]:
        cases.append("empty")
    elif reply and reply[-1] == sp["<|assistant_end|>"]:
        cases.append("ends_assistant_end")
    elif reply and reply[-1] == sp["<|bos|>"]:
        cases.append("ends_bos")
    else:
        cases.append("max_tokens")
    if sp["<|python_start|>"] in reply:
        cases.append("python_block")
        last_start = len(reply) - 1 - reply[::-1].index(sp["<|python_start|>"])
        if sp["<|python_end|>"] not in reply[last_start:]:
            cases.append("python_unclosed")
        else:
            cases.append("python_closed")
    if 0 in masks:
        cases.append("calculator_output")
    return cases


def check_consistent(turns: list[dict], bos: int, assistant_end: int) -> None:
    history = [bos]
    for t in turns:
        if t["action"] == "reply":
            history = history + t["user_ids"] + t["reply_ids"]
            if t["appended_assistant_end"]:
                history.append(assistant_end)
        elif t["action"] == "clear":
            history = [bos]
        elif t["action"] == "error":
            assert t["history"] == history and t["user_ids"][0] != bos
            continue
        assert t["history"] == history, f"history mismatch after {t['typed']!r}"


def record(args) -> None:
    repo = Path(args.nanochat_repo).resolve()
    plan = json.loads(Path(args.plan).read_text()) if args.plan else None
    gens = args.gen or sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    work = Path(tempfile.mkdtemp(prefix="record-chat-cli-")) if not args.work_dir else Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for gen in gens:
        expected = json.loads((FIXTURES / gen / "expected.json").read_text())
        commit = expected["nanochat_commit"]
        src = extract_commit(repo, commit, work)
        out_path = OUT_DIR / f"{gen}.json"
        old = json.loads(out_path.read_text()) if out_path.exists() else None
        if plan is not None:
            convs = plan[gen]
        elif old is not None:
            convs = [{k: c[k] for k in ("name", "temperature", "top_k", "lines", "shows", "canonical_run")
                      if k in c} for c in old["conversations"]]
        else:
            raise SystemExit(f"{gen}: no --plan and no existing {out_path}")
        sp = special_ids(gen)
        recorded = []
        meta_raw = None
        for conv in convs:
            results = {}
            policy = conv.get("canonical_run") or args.canonical  # a conversation may say itself
            modes = ("engine", "canonical") if policy == "always" or (
                policy == "auto" and gen in ENGINE_BUGS) else ("engine",)
            for mode in modes:
                raw = run_conversation(src, gen, mode, conv, work)
                meta_raw = raw
                results[mode] = assemble(gen, conv, raw)
                check_consistent(results[mode]["turns"], sp["<|bos|>"], sp["<|assistant_end|>"])
            entry = {
                "name": conv["name"],
                "shows": conv.get("shows", ""),
                **({"canonical_run": conv["canonical_run"]} if conv.get("canonical_run") else {}),
                "temperature": conv["temperature"],
                "top_k": conv["top_k"],
                "seed": SEED,
                "max_new_tokens": MAX_NEW_TOKENS,
                "lines": conv["lines"],
                "chat_cli": results["engine"],
            }
            # None: not run (--canonical auto skips commits whose Engine matches a full recompute,
            # nanochat-format.md §9.5)
            same = None if "canonical" not in results else (
                [t["history"] for t in results["engine"]["turns"]]
                == [t["history"] for t in results["canonical"]["turns"]])
            entry["canonical_equals_chat_cli"] = same
            if same is False:
                entry["canonical"] = results["canonical"]
                entry["first_difference"] = first_difference(results["engine"], results["canonical"])
            entry["our_engine_must_equal"] = "canonical" if same is False else "chat_cli"
            recorded.append(entry)
            print(f"{gen} {conv['name']}: " + ", ".join(
                f"{t['action']}:{'/'.join(t.get('reply_case', []))}" for t in results["engine"]["turns"])
                + {True: "  [= canonical]", False: "  [Engine != canonical]", None: ""}[same], flush=True)
        doc = {
            "generation": gen,
            "nanochat_commit": commit,
            "nanochat_commit_date": expected["nanochat_commit_date"],
            "chat_cli_sha256": _sha256(src / "scripts" / "chat_cli.py"),
            "torch_version": meta_raw["torch_version"],
            "python_version": meta_raw["python_version"],
            "how_made": HOW_MADE,
            "patches_applied": meta_raw["patches"],
            "engine_bugs_on_cpu": ENGINE_BUGS.get(gen),
            "softcap_override": 20.0 if gen == "gen3-softcap20" else None,
            "special_ids": sp,
            "conversations": recorded,
        }
        if old is not None and _histories(old) != _histories(doc):
            print(f"!! {gen}: histories differ from the committed recording", flush=True)
        out_path.write_text(dump(doc))
    if not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)


def dump(doc: dict) -> str:
    """Indented JSON with every list of token ids on one line (readable, reviewable diffs)."""
    import re

    text = json.dumps(doc, indent=1, ensure_ascii=True)
    # only lists json.dumps spread over lines: a JSON string never holds a raw newline
    return re.sub(r"\[\n\s*(-?\d+(?:,\n\s*-?\d+)*)\n\s*\]",
                  lambda m: "[" + ",".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def first_difference(engine: dict, canonical: dict) -> dict:
    for i, (a, b) in enumerate(zip(engine["turns"], canonical["turns"])):
        if a["history"] != b["history"]:
            n = next((j for j, (x, y) in enumerate(zip(a["history"], b["history"])) if x != y),
                     min(len(a["history"]), len(b["history"])))
            return {"turn": i, "history_position": n}
    return {}


def _histories(doc: dict) -> list:
    return [[t["history"] for t in c["chat_cli"]["turns"]] for c in doc["conversations"]]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


HOW_MADE = (
    "scripts/record_chat_cli.py: that commit's scripts/chat_cli.py run unmodified with runpy on "
    "CPU in float32 (--device-type cpu; NANOCHAT_DTYPE=float32 where the commit reads it; "
    "NANOCHAT_BASE_DIR = a copy of the fixture's base_dir), flags -t TEMPERATURE -k TOP_K, typed "
    "lines fed through input() then EOF. chat_cli: conversation_tokens starts as [<|bos|>]; a line "
    "is strip()ped; 'clear' resets to [<|bos|>]; an empty line is skipped; otherwise "
    "<|user_start|> encode(line) <|user_end|> <|assistant_start|> are appended, Engine.generate("
    "num_samples=1, max_tokens=256, temperature, top_k, seed=42) runs, every yielded token is "
    "appended and <|assistant_end|> is added unless the last token was <|assistant_end|>. "
    "'history' is conversation_tokens after the line; 'reply_masks' are the Engine's masks "
    "(0 = forced by the calculator). 'canonical' (only where it differs) is the same run with the "
    "logits of every Engine step taken from a full-sequence forward of that commit's model, "
    "without a KV cache: what a correct implementation of chat_cli's protocol gives."
)

ENGINE_BUGS = {
    "gen3-engram": "decode steps ignore the sliding window (SDPA fallback before 3ba42e8) and the "
                   "bigram hash of a single decoded token uses the position-0 row "
                   "(nanochat-format.md §9.5): the real chat_cli run diverges from the model",
    "gen3-proto-lowrank-ve": "decode steps ignore the sliding window (SDPA fallback before 3ba42e8, "
                             "nanochat-format.md §9.5) once the context passes 129 tokens",
    "gen3-proto-perlayer-ve": "decode steps ignore the sliding window (SDPA fallback before 3ba42e8, "
                              "nanochat-format.md §9.5) once the context passes 129 tokens",
    "gen3-proto-single-ve": "decode steps ignore the sliding window (SDPA fallback before 3ba42e8, "
                            "nanochat-format.md §9.5) once the context passes 129 tokens",
}


# ---------------------------------------------------------------------------------------------
# Search (our engine): find typed lines whose chat_cli replies show a wanted case.
#
# Sampling facts this relies on (checked with torch 2.13 on CPU): torch.multinomial drawing ONE
# sample picks argmax(p / E) with E a fresh vector of Exp(1) draws from the generator, one per
# candidate; so with seed 42 at the start of every reply, step s of a reply with top-k uses the
# k draws number (s-1)*k .. s*k-1 of one fixed stream, matched to the candidates in descending
# logit order (token-id order when top-k is off). A line can therefore be tuned, by a simple
# hill-climb on its words, until the token wanted at step 1 (2, 3) wins that race with a margin.

WORDS = ("the a an vim file buffer window line what is how do I you open close save quit search "
         "replace text mode insert normal command help please compute number add times plus "
         "minus cursor word move delete yank put undo redo tab split visual select copy paste "
         "tell me about show why can use key map option set read write find next previous").split()

CASE_NAMES = ("any", "empty", "bos_only", "ends_bos", "ends_assistant_end", "max_tokens",
              "python_block", "python_unclosed", "python_closed", "calculator_output")


def candidate_lines(seed: int):
    """An endless, reproducible stream of plain sentences to try as typed lines."""
    import random

    rng = random.Random(seed)
    while True:
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 7))]
        line = " ".join(words)
        r = rng.random()
        if r < 0.25:
            line += f" {rng.randint(0, 99)}{rng.choice('+-*/')}{rng.randint(0, 99)}"
        elif r < 0.4:
            line = line.capitalize() + rng.choice("?.!")
        if line.strip().lower() not in ("clear", "quit", "exit"):
            yield line


def _protocol_ids(tokenizer) -> dict[str, int]:
    sp = tokenizer.special
    return {n: (tokenizer.bos_id if n == "<|bos|>" else sp(n)) for n in SPECIAL_NAMES}


class LineClimber:
    """Tunes a typed line so that the first reply tokens are the wanted ones (see above)."""

    def __init__(self, model, temperature: float, top_k: int):
        import torch

        self.m, self.t, self.k = model, temperature, top_k
        tok = model.tokenizer
        self.ids = _protocol_ids(tok)
        gen = torch.Generator()
        gen.manual_seed(SEED)
        self.stream = torch.empty(4 * tok.vocab_size).exponential_(1, generator=gen)
        # printable pieces of the vocabulary to build lines from
        self.pool = [s for s in (tok.decode([i]) for i in range(tok.vocab_size) if i not in tok.special_ids)
                     if s.strip() and "\ufffd" not in s and all(ord(ch) >= 32 for ch in s)]
        # tokens that alone are an expression the calculator answers (an integer literal)
        self.numbers = [i for i in range(tok.vocab_size) if i not in tok.special_ids
                        and tok.decode([i]).isdigit() and str(int(tok.decode([i]))) == tok.decode([i])]

    def margin(self, logits, step: int, wanted: list[int]) -> tuple[float, int]:
        """How far the best wanted token wins (>0) or loses (<0) step `step`'s race; and it."""
        import torch

        k = self.k if self.k and self.k > 0 else logits.numel()
        values, index = torch.topk(logits, min(k, logits.numel())) if self.k and self.k > 0 \
            else (logits, torch.arange(logits.numel()))
        draws = self.stream[(step - 1) * values.numel(): step * values.numel()]
        score = values / self.t - torch.log(draws)
        is_wanted = torch.isin(index, torch.tensor(wanted))
        if not bool(is_wanted.any()):
            return -100.0, wanted[0]
        best = int(torch.where(is_wanted, score, torch.tensor(-1e9)).argmax())
        rival = float(torch.where(is_wanted, torch.tensor(-1e9), score).max())
        return float(score[best]) - rival, int(index[best])

    def objective(self, history: list[int], line: str, plan: list[list[int]]) -> float:
        import torch

        ids = self.ids
        prompt = history + [ids["<|user_start|>"], *self.m.tokenizer.encode(line),
                            ids["<|user_end|>"], ids["<|assistant_start|>"]]
        chosen: list[int] = []
        total, worst = 0.0, 1e9
        for step, wanted in enumerate(plan, start=1):
            with torch.inference_mode():
                logits = self.m.model(torch.tensor([prompt + chosen]))[0, -1].float()
            mg, tok = self.margin(logits, step, wanted)
            total += min(mg, 1.0)
            worst = min(worst, mg)
            chosen.append(tok)
        return total if worst < 0.05 else 100.0 + worst

    def climb(self, history: list[int], plan: list[list[int]], seed: int, iters: int) -> str | None:
        import random

        rng = random.Random(seed)
        pool = self.pool

        def text(words):
            return "".join(words).strip()

        words = [rng.choice(pool) for _ in range(rng.randint(2, 6))]
        best = self.objective(history, text(words), plan) if text(words) else -1e9
        for _ in range(iters):
            w = list(words)
            r = rng.random()
            if r < 0.4:
                w[rng.randrange(len(w))] = rng.choice(pool)
            elif r < 0.7 and len(w) < 12:
                w.insert(rng.randrange(len(w) + 1), rng.choice(pool))
            elif len(w) > 1:
                del w[rng.randrange(len(w))]
            line = text(w)
            if not line or line.lower() in ("clear", "quit", "exit"):
                continue
            score = self.objective(history, line, plan)
            if score >= best:
                best, words = score, w
                if best >= 100.0:
                    return line
        return None


def search(args) -> None:
    """Build a conversation line by line: for each wanted case, find a line (decorated with the
    step's whitespace) whose reply from our engine shows it."""
    sys.path.insert(0, str(REPO))
    import torch

    from nanochat_core import load_chat_model

    torch.set_num_threads(1)
    gen = args.gen
    m = load_chat_model(base_dir=FIXTURES / gen / "base_dir", device="cpu",
                        softcap=20.0 if gen == "gen3-softcap20" else None)
    ids = _protocol_ids(m.tokenizer)
    t, k = args.temperature, args.top_k
    climber = LineClimber(m, t, k)
    plans = {
        "empty": [[ids["<|assistant_end|>"]]],
        "bos_only": [[ids["<|bos|>"]]],
        "python_unclosed": [[ids["<|python_start|>"]]],
        "python_block": [[ids["<|python_start|>"]]],
        "calculator_output": [[ids["<|python_start|>"]], climber.numbers, [ids["<|python_end|>"]]],
    }
    history = [ids["<|bos|>"]]
    lines: list[str] = []
    candidates = candidate_lines(args.seed)
    for step in args.steps:  # "clear", "blank:<text>", or CASE[@PREFIX|SUFFIX]
        if step == "clear":
            lines.append("clear")
            history = [ids["<|bos|>"]]
            continue
        if step.startswith("blank:"):
            lines.append(step[len("blank:"):].replace("\\t", "\t"))
            continue
        want, _, pad = step.partition("@")
        prefix, _, suffix = pad.partition("|")
        prefix, suffix = prefix.replace("\\t", "\t"), suffix.replace("\\t", "\t")
        assert want in CASE_NAMES, want
        started = time.perf_counter()
        for tries in range(1, args.max_tries + 1):
            body = None
            if want in plans and tries <= args.max_climbs:
                body = climber.climb(history, plans[want], seed=args.seed * 1000 + tries, iters=args.climb_iters)
            if body is None:  # no climb for this case, or it failed: a plain random line
                body = next(candidates)
            line = prefix + body + suffix
            prompt = history + [ids["<|user_start|>"], *m.tokenizer.encode(line.strip()),
                                ids["<|user_end|>"], ids["<|assistant_start|>"]]
            if want in ("empty", "bos_only"):  # screen on the first token only
                first = next(iter(m.engine.generate(prompt, t, k, 1, SEED))).token
                if first != plans[want][0][0]:
                    continue
            steps = list(m.engine.generate(prompt, t, k, MAX_NEW_TOKENS, SEED))
            reply = [s.token for s in steps]
            cases = reply_case(reply, [0 if s.forced else 1 for s in steps], ids)
            if reply == [ids["<|bos|>"]]:
                cases.append("bos_only")
            if want == "any" or want in cases:
                break
        else:
            print(f"# {want}: NOT FOUND in {args.max_tries} tries; step left out", file=sys.stderr, flush=True)
            continue
        lines.append(line)
        history = prompt + reply + ([] if reply[-1] == ids["<|assistant_end|>"] else [ids["<|assistant_end|>"]])
        print(f"# {want}: {tries} tries {time.perf_counter() - started:.0f}s, reply {len(reply)} "
              f"tokens {cases}, history {len(history)}: {line!r}", file=sys.stderr, flush=True)
    print(json.dumps({"name": args.name, "temperature": t, "top_k": k, "lines": lines,
                      "shows": args.shows}))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        _child(argv[1])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="run nanochat's chat_cli.py and write the recordings")
    rec.add_argument("--nanochat-repo", required=True, help="a nanochat git repository (clone or mirror)")
    rec.add_argument("--gen", action="append", help="fixture generation (repeatable; default all)")
    rec.add_argument("--plan", help="JSON {gen: [{name, temperature, top_k, lines, shows}]}")
    rec.add_argument("--work-dir", help="keep extracted sources and raw results here")
    rec.add_argument("--canonical", choices=("auto", "always", "never"), default="always",
                     help="also run the full-sequence ('canonical') variant: always, never, or "
                          "auto = only at commits whose Engine has a known CPU bug")
    sea = sub.add_parser("search", help="find typed lines for wanted cases with our engine")
    sea.add_argument("--gen", required=True)
    sea.add_argument("--temperature", type=float, default=0.6)
    sea.add_argument("--top-k", type=int, default=50)
    sea.add_argument("--seed", type=int, default=0, help="seed of the candidate-line stream")
    sea.add_argument("--max-tries", type=int, default=400)
    sea.add_argument("--max-climbs", type=int, default=6, help="hill-climbs before plain random lines")
    sea.add_argument("--climb-iters", type=int, default=1500)
    sea.add_argument("--name", default="conversation")
    sea.add_argument("--shows", default="")
    sea.add_argument("steps", nargs="+",
                     help="clear | blank:TEXT | CASE[@PREFIX|SUFFIX], CASE one of " + ", ".join(CASE_NAMES))
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args)
    else:
        search(args)


if __name__ == "__main__":
    main()
