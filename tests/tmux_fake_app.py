"""The full-screen app on a fake engine, for real-terminal tests (tests/test_tui_tmux.py): replies
that are known in advance (code blocks, emoji) or slow enough to interrupt, which a real
checkpoint cannot give on demand.

    python tests/tmux_fake_app.py '{"reply": "...", "token_delay": 0.05}'

Keys are the FakeBackend's (tests/fake_backend.py). History and settings go to $NANOCHAT_TUI_HOME.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fake_backend import FakeBackend

from nanochat_core.chat import SamplingParams
from nanochat_tui.app import GOODBYE, NanochatApp
from nanochat_tui.config import ChatConfig


def main() -> int:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    max_tokens = options.pop("max_tokens", 4096)
    app = NanochatApp(ChatConfig(sampling=SamplingParams(max_tokens=max_tokens)),
                      backend=FakeBackend(**options), manage_gc=True)
    result = app.run()
    if result == GOODBYE:
        print("Goodbye!")
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
