#!/usr/bin/env python3
"""Render the chat page into docs/screenshots/*.png: light and dark, desktop and phone, with a
short conversation (Markdown, a table, highlighted code) answered by a scripted fake model.

    PYTHONPATH=. python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Uses the real server (nanochat_tui.web) on a free local port and Debian's Chromium through
Playwright, as the browser tests do (docs: tests/browser_harness.py). Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the scripted backend the tests use

from nanochat_core.chat import SamplingParams  # noqa: E402
from nanochat_tui import web as webmod  # noqa: E402
from nanochat_tui.config import WebConfig  # noqa: E402
from web_fakes import FakeModel, fake_info  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--font-render-hinting=none"]

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


def serve(app, config):
    lines: list[str] = []
    loop = asyncio.new_event_loop()
    stop = {}

    def run():
        asyncio.set_event_loop(loop)

        async def main():
            stop["event"] = asyncio.Event()
            await webmod.serve(app, config, lines.append, stop["event"])

        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not any("Press Ctrl+C" in line for line in lines):
        if not thread.is_alive():
            raise SystemExit("the server did not start:\n" + "\n".join(lines))
        threading.Event().wait(0.02)
    url = next(line.strip() for line in lines if line.strip().startswith("http://127.0.0.1:"))

    def close():
        loop.call_soon_threadsafe(stop["event"].set)
        thread.join(15)

    return url, close


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

    args.out.mkdir(parents=True, exist_ok=True)
    config = WebConfig(host="127.0.0.1", port=0,
                       sampling=SamplingParams(temperature=0.8, top_k=50, max_tokens=512, seed=None))
    fake = FakeModel(reply=reply, token_delay=0.01, info=fake_info(is_demo=True))
    url, close = serve(webmod.create_app(config, [fake]), config)
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
        close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
