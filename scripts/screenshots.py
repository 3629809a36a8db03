#!/usr/bin/env python3
"""Render the chat page into docs/screenshots/*.png: light and dark, desktop and phone, with a
short conversation (Markdown, a table, highlighted code) answered by a scripted fake model.

    PYTHONPATH=. python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Uses the real server (nanochat_tui.web) on a free local port and Debian's Chromium through
Playwright, started as the browser tests start them (tests/browser_harness.py). Nothing leaves
the machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the scripted backend the tests use

from web_fakes import FakeModel, fake_info  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--font-render-hinting=none"]  # testing.md's flags, plus steadier text rendering

REPLIES = {
    "How do I reverse a list in Python?": """There are **two common ways**, depending on whether you want a new list:

- `reversed(items)` or `items[::-1]` give you a *reversed copy*
- `items.reverse()` reverses the list **in place** and returns `None`

```python
items = [1, 2, 3]
backwards = items[::-1]   # [3, 2, 1], items unchanged
items.reverse()           # items is now [3, 2, 1]
```

| Way | New list? | Cost |
|-----|:---------:|-----:|
| `items[::-1]` | yes | O(n) memory |
| `items.reverse()` | no | O(1) memory |""",
    "What is a KV cache?": "It keeps the keys and values of earlier tokens so each new token only "
                           "attends to them instead of recomputing the whole prompt.",
    "Write a haiku about tokens": "Small pieces of words\nstreaming one after the next:\na sentence takes shape.",
}


def reply(messages, sampling):
    return REPLIES.get(messages[-1].text, "Sure.")


def chat(page, text):
    page.fill("#chat-input", text)
    page.get_by_role("button", name="Send").click()
    page.locator("#stop-button").wait_for(state="hidden")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from browser_harness import start_server  # the browser tests' server on a thread

    args.out.mkdir(parents=True, exist_ok=True)
    server = start_server([FakeModel(reply=reply, token_delay=0.01, info=fake_info(is_demo=True))])
    url = server.url
    shots = {
        "desktop": dict(viewport={"width": 1280, "height": 860}, device_scale_factor=1),
        "phone": dict(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True),
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            for theme in ("light", "dark"):
                for name, options in shots.items():
                    context = browser.new_context(color_scheme=theme, reduced_motion="reduce", **options)
                    page = context.new_page()
                    page.goto(url)
                    if name == "desktop":  # a few saved conversations for the sidebar
                        for earlier in ("Write a haiku about tokens", "What is a KV cache?"):
                            chat(page, earlier)
                            page.get_by_role("button", name="New Conversation").click()
                    chat(page, "How do I reverse a list in Python?")
                    page.locator("#toast").evaluate("e => e.hidden = true")
                    page.locator("#chat-input").evaluate("e => e.blur()")
                    page.evaluate("document.getElementById('chat-container').scrollTop = 0")
                    path = args.out / f"web-{theme}-{name}.png"
                    page.screenshot(path=str(path))
                    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
                    context.close()
            browser.close()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
