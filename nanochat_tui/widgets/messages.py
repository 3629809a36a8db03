"""What the chat log holds: user bubbles, streamed assistant replies, tool calls, notices."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream


class UserMessage(Vertical):
    """A user's message: right-aligned, in a light gray bubble. Never parsed as markup."""

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(self.text, classes="bubble", markup=False)


class Notice(Static):
    """A quiet line: cleared, stopped, settings changed, loading progress."""

    def __init__(self, text: str, *, kind: str = "info", **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        self.text = text
        self.add_class(f"-{kind}")


class InfoPanel(Static):
    """A block of aligned text (/help, /stats)."""

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(text, markup=False, **kwargs)
        self.text = text


class TypingIndicator(Static):
    """Animated dots from send until the first token."""

    FRAMES = ("●··", "·●·", "··●", "·●·")

    def __init__(self, **kwargs) -> None:
        super().__init__(self.FRAMES[0], markup=False, **kwargs)
        self._frame = 0

    def on_mount(self) -> None:
        self._timer = self.set_interval(0.25, self._advance)

    def _advance(self) -> None:
        self._frame = (self._frame + 1) % len(self.FRAMES)
        self.update(self.FRAMES[self._frame])


class ToolCallView(Static):
    """A calculator call and its result, set apart from the reply text."""

    def __init__(self, expression: str, **kwargs) -> None:
        super().__init__("", markup=False, **kwargs)
        self.expression = expression
        self.result: str | None = None
        self.finished = False
        self._render_text()

    def set_result(self, result: str | None) -> None:
        self.result = result
        self.finished = True
        self._render_text()

    def _render_text(self) -> None:
        if not self.finished:
            answer = " = …"
        elif self.result is None:
            answer = " = (no result)"
        else:
            answer = f" = {self.result}"
        self.update(f"calculator ▸ {self.expression}{answer}")


class AssistantMessage(Vertical):
    """One reply, streamed: Markdown segments, with tool calls between them.

    Text arrives through `append()` (already sanitized and batched by the app); a MarkdownStream
    coalesces appends further when rendering falls behind; `finish()` sets each segment's final
    text once and marks a stopped or truncated reply.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.segments: list[str] = []  # text of each Markdown segment
        self._markdown: Markdown | None = None
        self._stream: MarkdownStream | None = None
        self._indicator: TypingIndicator | None = None
        self._tools: list[ToolCallView] = []
        self.finished = False
        self.stop_reason: str | None = None

    def compose(self) -> ComposeResult:
        self._indicator = TypingIndicator(classes="typing")
        yield self._indicator

    @property
    def text(self) -> str:
        return "".join(self.segments)

    @property
    def waiting(self) -> bool:
        """True while the typing indicator shows (nothing has arrived yet)."""
        return self._indicator is not None

    async def _drop_indicator(self) -> None:
        if self._indicator is not None:
            indicator, self._indicator = self._indicator, None
            await indicator.remove()

    async def append(self, text: str) -> None:
        if not text:
            return
        await self._drop_indicator()
        if self._markdown is None:
            self.segments.append("")
            self._markdown = Markdown("", classes="reply")
            await self.mount(self._markdown)
            self._stream = Markdown.get_stream(self._markdown)
        self.segments[-1] += text
        assert self._stream is not None
        await self._stream.write(text)

    async def _close_segment(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if self._markdown is not None:
            await self._markdown.update(self.segments[-1])  # the final text, once
            self._markdown = None

    async def add_tool_call(self, expression: str) -> None:
        await self._drop_indicator()
        await self._close_segment()
        view = ToolCallView(expression, classes="tool")
        self._tools.append(view)
        await self.mount(view)

    def set_tool_result(self, expression: str, result: str | None) -> None:
        for view in reversed(self._tools):
            if not view.finished:
                view.set_result(result)
                return

    async def finish(self, reason: str) -> None:
        """reason: stop | length | cancelled | error."""
        self.stop_reason = reason
        self.finished = True
        await self._drop_indicator()
        await self._close_segment()
        if not self.segments and not self._tools and reason != "error":
            await self.mount(Static("(empty reply)", classes="empty", markup=False))
        if reason == "cancelled":
            self.add_class("-stopped")
            await self.mount(Static("■ stopped", classes="mark", markup=False))
        elif reason == "length":
            await self.mount(Static("… max tokens reached (/max-tokens to raise it)", classes="mark", markup=False))
