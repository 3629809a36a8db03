"""Train the bundled demo model and write it to assets/demo in nanochat's on-disk format.

    .venv/bin/python scripts/train_demo.py            # defaults = the shipped model (seed 1234)

Steps (all deterministic for a given seed, thread count and torch build):
1. Generate the synthetic chat corpus (scripts/make_demo_data.py) and a held-out validation set.
2. Train a byte-level BPE tokenizer on it (scripts/bpe.py) with nanochat's split pattern and
   special tokens; save tokenizer/tokenizer.pkl (a pickled tiktoken Encoding, like nanochat) and
   tokenizer/token_bytes.pt.
3. Render every conversation exactly as nanochat's render_conversation does (bos, user/assistant
   blocks, python and output parts, assistant_end) with nanochat's SFT loss mask (assistant text,
   python parts and assistant_end supervised; tool output not).
4. Train nanochat_core.model.GPT with the gen5 architecture (nanochat HEAD: smear, backout, value
   embeddings with 12-channel gates) from scratch with AdamW on CPU.
5. Save chatsft_checkpoints/<tag>/model_<step>.pt (embedding tables bf16, the rest fp32, as a CUDA
   run of nanochat stores them) and meta_<step>.json, then greedy-decode a few prompts as a check.

See docs/demo-model.md for the figures of the shipped model.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import random
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bpe import build_encoding, token_byte_lengths, train_bpe  # noqa: E402
from make_demo_data import corpus_texts, generate_conversations  # noqa: E402
from nanochat_core.calculator import calculate  # noqa: E402
from nanochat_core.model import GENERATIONS, GPT, ModelConfig  # noqa: E402

ARCH = "gen5-smear-backout"
EMBEDDING_PREFIXES = ("transformer.wte.", "value_embeds.")  # stored in bf16, like a CUDA run

EVAL_PROMPTS = [
    "hi",
    "what are you?",
    "how do I start a new conversation?",
    "how do I load my own checkpoint?",
    "what does --web do?",
    "what is 37*12?",
    "How much is 4821 - 977?",
    "what is 1234 divided by 4?",
    "what are the limits?",
    "what is the capital of France?",
]


# ---------------------------------------------------------------------------------------------
# Rendering (nanochat's render_conversation, with its SFT mask)

class Renderer:
    def __init__(self, enc):
        self.enc = enc
        sp = enc._special_tokens
        self.bos = sp["<|bos|>"]
        self.user_start, self.user_end = sp["<|user_start|>"], sp["<|user_end|>"]
        self.assistant_start, self.assistant_end = sp["<|assistant_start|>"], sp["<|assistant_end|>"]
        self.python_start, self.python_end = sp["<|python_start|>"], sp["<|python_end|>"]
        self.output_start, self.output_end = sp["<|output_start|>"], sp["<|output_end|>"]

    def render(self, messages: list[dict]) -> tuple[list[int], list[int]]:
        """(ids, mask) exactly as nanochat's tokenizer.render_conversation (1 = supervised)."""
        if messages and messages[0]["role"] == "system":
            first = messages[1]
            assert first["role"] == "user"
            messages = [{"role": "user", "content": messages[0]["content"] + "\n\n" + first["content"]},
                        *messages[2:]]
        ids, mask = [self.bos], [0]

        def add(tokens, m):
            tokens = [tokens] if isinstance(tokens, int) else tokens
            ids.extend(tokens)
            mask.extend([m] * len(tokens))

        for i, msg in enumerate(messages):
            assert msg["role"] == ("user" if i % 2 == 0 else "assistant")
            content = msg["content"]
            if msg["role"] == "user":
                add(self.user_start, 0)
                add(self.enc.encode_ordinary(content), 0)
                add(self.user_end, 0)
                continue
            add(self.assistant_start, 0)
            if isinstance(content, str):
                add(self.enc.encode_ordinary(content), 1)
            else:
                for part in content:
                    toks = self.enc.encode_ordinary(part["text"])
                    if part["type"] == "text":
                        add(toks, 1)
                    elif part["type"] == "python":
                        add(self.python_start, 1)
                        add(toks, 1)
                        add(self.python_end, 1)
                    elif part["type"] == "python_output":
                        add(self.output_start, 0)
                        add(toks, 0)
                        add(self.output_end, 0)
                    else:
                        raise ValueError(part["type"])
            add(self.assistant_end, 1)
        return ids, mask

    def prompt(self, messages: list[dict]) -> list[int]:
        ids, _ = self.render(messages + [{"role": "assistant", "content": ""}])
        return ids[:-1]  # drop the empty reply's <|assistant_end|>, keep <|assistant_start|>


# ---------------------------------------------------------------------------------------------
# Greedy chat with the engine's protocol (full recompute each step; spec §6)

@torch.no_grad()
def greedy_reply(model: GPT, renderer: Renderer, messages: list[dict], max_tokens: int = 200) -> list[dict]:
    """The reply as nanochat parts, decoding greedily and running the calculator like the Engine."""
    enc = renderer.enc
    ids = renderer.prompt(messages)
    forced: list[int] = []
    parts: list[dict] = []
    cur_type, cur_ids = "text", []
    in_python, expr_ids = False, []

    def flush():
        nonlocal cur_ids
        if cur_ids:
            parts.append({"type": cur_type, "text": enc.decode(cur_ids)})
        cur_ids = []

    for _ in range(max_tokens):
        if forced:
            tok = forced.pop(0)
        else:
            logits = model(torch.tensor([ids[-model.config.sequence_len:]]))[0, -1]
            tok = int(torch.argmax(logits))
        ids.append(tok)
        if tok in (renderer.assistant_end, renderer.bos):
            break
        if tok == renderer.python_start:
            flush()
            cur_type, in_python, expr_ids = "python", True, []
        elif tok == renderer.python_end:
            flush()
            cur_type = "text"
            if in_python:
                result = calculate(enc.decode(expr_ids))
                if result is not None:
                    forced = [renderer.output_start, *enc.encode_ordinary(result), renderer.output_end]
            in_python = False
        elif tok == renderer.output_start:
            flush()
            cur_type = "python_output"
        elif tok == renderer.output_end:
            flush()
            cur_type = "text"
        else:
            cur_ids.append(tok)
            if in_python:
                expr_ids.append(tok)
    flush()
    return parts


def format_reply(parts: list[dict]) -> str:
    out = []
    for p in parts:
        if p["type"] == "text":
            out.append(p["text"])
        elif p["type"] == "python":
            out.append(f"<|python_start|>{p['text']}<|python_end|>")
        else:
            out.append(f"<|output_start|>{p['text']}<|output_end|>")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Data batches

def make_batches(rows: list[tuple[list[int], list[int]]], tokens_per_batch: int, rng: random.Random,
                 pad_id: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of (inputs, targets, loss mask) batches: shuffled, bucketed by length so little is
    padding. Every conversation starts at position 0, as at inference."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    batches = []
    window = 2048  # sort within windows of shuffled conversations, then cut into batches
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: len(rows[i][0]))
        i = 0
        while i < len(chunk):
            longest = len(rows[chunk[i]][0])
            j = i
            while j < len(chunk) and (j - i + 1) * max(longest, len(rows[chunk[j]][0])) <= tokens_per_batch:
                longest = max(longest, len(rows[chunk[j]][0]))
                j += 1
            j = max(j, i + 1)
            sel = chunk[i:j]
            T = max(len(rows[k][0]) for k in sel)
            x = torch.full((len(sel), T - 1), pad_id, dtype=torch.long)
            y = torch.full((len(sel), T - 1), -1, dtype=torch.long)
            for r, k in enumerate(sel):
                ids, mask = rows[k]
                t = torch.tensor(ids)
                m = torch.tensor(mask[1:], dtype=torch.bool)
                x[r, : len(ids) - 1] = t[:-1]
                y[r, : len(ids) - 1] = torch.where(m, t[1:], torch.full_like(t[1:], -1))
            batches.append((x, y))
            i = j
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def evaluate(model: GPT, batches, token_bytes: torch.Tensor) -> tuple[float, float]:
    """(mean loss per supervised token, bits per byte over supervised tokens with bytes)."""
    model.eval()
    nats, count, bpb_nats, nbytes = 0.0, 0, 0.0, 0
    for x, y in batches:
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1, reduction="none")
        valid = y.view(-1) >= 0
        nats += loss[valid].sum().item()
        count += int(valid.sum())
        b = token_bytes[y.view(-1).clamp(min=0)] * valid
        bpb_nats += (loss * (b > 0)).sum().item()
        nbytes += int(b.sum())
    model.train()
    return nats / max(count, 1), bpb_nats / (math.log(2) * max(nbytes, 1))


# ---------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description="Train the bundled demo model (docs/demo-model.md).")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default=str(REPO / "assets" / "demo"), help="base dir to write")
    ap.add_argument("--num-conversations", type=int, default=60000)
    ap.add_argument("--num-val", type=int, default=1000)
    ap.add_argument("--vocab-size", type=int, default=1536)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-head", type=int, default=2)
    ap.add_argument("--n-kv-head", type=int, default=2)
    ap.add_argument("--sequence-len", type=int, default=512)
    ap.add_argument("--window-pattern", default="SSSL")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--tokens-per-batch", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=4e-3, help="peak AdamW lr for matrices")
    ap.add_argument("--embedding-lr", type=float, default=1e-2)
    ap.add_argument("--scalar-lr", type=float, default=1e-2)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--warmup-steps", type=int, default=50)
    ap.add_argument("--final-lr-frac", type=float, default=0.05)
    ap.add_argument("--loss-on", choices=["assistant", "all"], default="assistant")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (fixed for reproducibility)")
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--model-tag", default="d4")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop early after this long (0 = off)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t_start = time.time()

    # 1. data
    convs = generate_conversations(args.num_conversations, args.seed)
    val_convs = generate_conversations(args.num_val, args.seed + 1)
    print(f"data: {len(convs)} train / {len(val_convs)} val conversations (seed {args.seed})", flush=True)

    # 2. tokenizer
    ranks = train_bpe(corpus_texts(convs), args.vocab_size)
    enc = build_encoding(ranks)
    vocab_size = enc.n_vocab
    print(f"tokenizer: {vocab_size} tokens ({len(ranks) - 256} merges) in {time.time() - t_start:.1f}s", flush=True)
    token_bytes = torch.tensor(token_byte_lengths(enc), dtype=torch.int32)

    # 3. render
    renderer = Renderer(enc)

    def rows_of(cs):
        rows = []
        for c in cs:
            ids, mask = renderer.render(c["messages"])
            if args.loss_on == "all":
                mask = [0] + [1] * (len(ids) - 1)
            rows.append((ids[: args.sequence_len + 1], mask[: args.sequence_len + 1]))
        return rows

    train_rows, val_rows = rows_of(convs), rows_of(val_convs)
    n_tokens = sum(len(r[0]) for r in train_rows)
    n_sup = sum(sum(r[1]) for r in train_rows)
    print(f"rendered: {n_tokens} tokens ({n_sup} supervised), longest {max(len(r[0]) for r in train_rows)}",
          flush=True)

    # 4. model
    config = ModelConfig(sequence_len=args.sequence_len, vocab_size=vocab_size, n_layer=args.n_layer,
                         n_head=args.n_head, n_kv_head=args.n_kv_head, n_embd=args.n_embd,
                         window_pattern=args.window_pattern)
    model = GPT(config, GENERATIONS[ARCH])
    model.init_weights(seed=args.seed)
    model.train()
    n_params = model.num_params()
    print(f"model: {ARCH}, {n_params:,} parameters, windows {model.windows}", flush=True)

    emb, mats, scalars = [], [], []
    for name, p in model.named_parameters():
        if name.startswith(EMBEDDING_PREFIXES):
            emb.append(p)
        elif p.ndim < 2 or name == "smear_gate.weight":
            scalars.append(p)
        else:
            mats.append(p)
    groups = [
        {"params": mats, "lr": args.lr, "weight_decay": args.weight_decay, "base_lr": args.lr},
        {"params": emb, "lr": args.embedding_lr, "weight_decay": 0.0, "base_lr": args.embedding_lr},
        {"params": scalars, "lr": args.scalar_lr, "weight_decay": 0.0, "base_lr": args.scalar_lr},
    ]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8)

    def lr_mult(step: int) -> float:
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
        return args.final_lr_frac + (1 - args.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    data_rng = random.Random(args.seed)
    pad_id = renderer.bos
    val_batches = make_batches(val_rows, args.tokens_per_batch, random.Random(0), pad_id)
    batches: list = []
    epoch = 0
    smooth = None
    t_train = time.time()
    tokens_seen = 0
    last_step = 0
    val_loss = val_bpb = float("nan")
    for step in range(args.steps):
        if not batches:
            batches = make_batches(train_rows, args.tokens_per_batch, data_rng, pad_id)
            epoch += 1
        x, y = batches.pop()
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_mult(step)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens_seen += x.numel()
        last_step = step + 1
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t_train
            print(f"step {step:5d}/{args.steps} epoch {epoch} loss {loss.item():.4f} (smooth {smooth:.4f}) "
                  f"lr x{lr_mult(step):.3f} {tokens_seen / el:.0f} tok/s {el / 60:.1f} min", flush=True)
        if (args.eval_every and (step + 1) % args.eval_every == 0) or step == args.steps - 1:
            val_loss, val_bpb = evaluate(model, val_batches, token_bytes)
            print(f"  val loss {val_loss:.4f}  val bpb {val_bpb:.4f}", flush=True)
        if args.max_minutes and time.time() - t_train > args.max_minutes * 60:
            print(f"stopping at step {last_step}: --max-minutes {args.max_minutes} reached", flush=True)
            val_loss, val_bpb = evaluate(model, val_batches, token_bytes)
            break
    train_seconds = time.time() - t_train

    # 5. save in nanochat's format (embedding tables in bf16 as a CUDA run stores them) ...
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().clone().contiguous()
        state[k] = v.to(torch.bfloat16) if k.startswith(EMBEDDING_PREFIXES) else v.float()
    # ... and evaluate the model exactly as shipped (bf16-rounded tables, upcast like the loader).
    model.load_state_dict({k: v.float() for k, v in state.items()})
    final_val_loss, final_val_bpb = evaluate(model, val_batches, token_bytes)
    print(f"final (as saved, bf16 tables): val loss {final_val_loss:.4f}  val bpb {final_val_bpb:.4f}", flush=True)

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    tok_dir = out / "tokenizer"
    ckpt_dir = out / "chatsft_checkpoints" / args.model_tag
    tok_dir.mkdir(parents=True)
    ckpt_dir.mkdir(parents=True)
    with open(tok_dir / "tokenizer.pkl", "wb") as f:
        pickle.dump(enc, f, protocol=4)
    torch.save(token_bytes, tok_dir / "token_bytes.pt")
    torch.save(state, ckpt_dir / f"model_{last_step:06d}.pt")
    meta = {
        "step": last_step,
        "val_bpb": round(final_val_bpb, 6),
        "model_config": {
            "sequence_len": config.sequence_len,
            "vocab_size": config.vocab_size,
            "n_layer": config.n_layer,
            "n_head": config.n_head,
            "n_kv_head": config.n_kv_head,
            "n_embd": config.n_embd,
            "window_pattern": config.window_pattern,
        },
        "user_config": {
            "run": "nanochat-tui demo (scripts/train_demo.py)",
            **{k: v for k, v in vars(args).items() if k != "out"},
            "val_loss": round(final_val_loss, 6),
            "final_train_loss_smoothed": round(smooth, 6),
            "train_seconds": round(train_seconds, 1),
            "tokens_seen": tokens_seen,
            "params": n_params,
            "torch": torch.__version__,
        },
    }
    with open(ckpt_dir / f"meta_{last_step:06d}.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB): step {last_step}, {n_params:,} params, "
          f"train {train_seconds / 60:.1f} min, total {(time.time() - t_start) / 60:.1f} min", flush=True)

    # 6. a look at what it says
    model.eval()
    for prompt in EVAL_PROMPTS:
        reply = greedy_reply(model, renderer, [{"role": "user", "content": prompt}])
        print(f"\nUser: {prompt}\nAssistant: {format_reply(reply)}", flush=True)


if __name__ == "__main__":
    main()
