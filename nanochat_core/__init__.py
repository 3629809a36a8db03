"""nanochat_core: load nanochat checkpoints of every generation and stream replies from them.

Importing this package is cheap: torch is imported only when a model-related name is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "load_chat_model", "ChatModel", "NanochatError", "CheckpointError", "ValidationError", "SamplingParams",
    "Message", "ModelInfo", "TextDelta", "ToolCall", "ToolResult", "Done", "ErrorEvent",
    "GenerationStats", "ContextTooLong",
]

_LAZY = {
    "load_chat_model": "nanochat_core.api",
    "ChatModel": "nanochat_core.api",
    "NanochatError": "nanochat_core.errors",
    "CheckpointError": "nanochat_core.checkpoints",
    "ValidationError": "nanochat_core.chat",
    "SamplingParams": "nanochat_core.chat",
    "Message": "nanochat_core.chat",
    "ModelInfo": "nanochat_core.model_info",
    "TextDelta": "nanochat_core.events",
    "ToolCall": "nanochat_core.events",
    "ToolResult": "nanochat_core.events",
    "Done": "nanochat_core.events",
    "ErrorEvent": "nanochat_core.events",
    "GenerationStats": "nanochat_core.events",
    "ContextTooLong": "nanochat_core.context",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nanochat_core' has no attribute {name!r}")
