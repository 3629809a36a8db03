"""Batch-1 decode captured in a CUDA graph.

A decode step of a small model is dozens of tiny kernels; launched one by one from Python, the
GPU waits on the CPU most of the time. A CUDA graph records the whole step once and replays it
with one launch. Requirements, met by `GPT.decode_rows(..., static=True)`: fixed tensor shapes
(attention spans the cache's whole capacity, masked) and no host reads inside the step.

Graphs are keyed by cache capacity (a request that needs a bigger cache gets a new capture).
The eager path stays available (`NANOCHAT_CUDA_GRAPHS=0`) and is what runs on CPU/MPS.
"""

from __future__ import annotations

import os

import torch

from .model import GPT, KVCache


def cuda_graphs_enabled(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("NANOCHAT_CUDA_GRAPHS", "1") != "0"


class GraphedDecode:
    """decode(token, position, prev_token) -> logits (1, V), replaying a captured graph."""

    def __init__(self, model: GPT, cache: KVCache):
        device = model.device
        self.model, self.cache = model, cache
        self.token = torch.zeros(1, dtype=torch.long, device=device)
        self.position = torch.zeros(1, dtype=torch.long, device=device)
        self.prev = torch.zeros(1, dtype=torch.long, device=device)
        self._scratch_pos = cache.capacity - 1  # warm-up writes land in the last slot only
        self.position.fill_(self._scratch_pos)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(2):  # warm-up: allocator and kernel selection before capture
                self._step()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.logits = self._step()

    def _step(self) -> torch.Tensor:
        return self.model.decode_rows(self.token, self.position, self.prev, self.cache, static=True)

    def __call__(self, token: int, position: int, prev_token: int) -> torch.Tensor:
        # fill_ with Python ints is an async host-to-device copy: no sync here.
        self.token.fill_(token)
        self.position.fill_(position)
        self.prev.fill_(prev_token)
        self.graph.replay()
        return self.logits
