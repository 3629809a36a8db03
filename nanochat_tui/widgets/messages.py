"""What the chat log holds: user bubbles, streamed assistant replies, tool calls, notices.

Performance shapes this module. Textual lays out the whole screen whenever a widget changes
height, visiting every widget, so a chat must stay a small number of widgets:

* every message is ONE Line-API widget (`RenderedLines`) that renders a Rich renderable to
  strips once per change and per width; a change that keeps its height only repaints it;
* a reply is a few Markdown chunks (cut at block boundaries), not one widget per paragraph,
  list item and code block as Textual's Markdown widget would make;
* old messages are folded into `Archive` widgets by the ChatLog (see chat_log.py), so a chat of
  hundreds of messages is a few dozen widgets.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.align import Align
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.constrain import Constrain
from rich.markdown import Heading
from rich.markdown import Markdown as RichMarkdown
from rich.padding import Padding
from rich.styled import Styled
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from nanochat_core.text import one_line, sanitize_for_terminal

from .. import commands as registry
from .cells import cell_safe


def _message_bindings() -> list[Binding]:
    """Keys on a selected message: the registry's message keys (each runs its command on this
    message), then moving between messages and back to the input."""
    bindings = []
    for spec in registry.commands_for(registry.TUI):
        for i, key in enumerate(spec.message_keys):
            bindings.append(Binding(key, f"app.message_command('{spec.name}')", spec.message_label or spec.palette_title,
                                    show=i == 0 and bool(spec.message_label),
                                    key_display=("←→" if key == "left" else None)))
    bindings += [
        Binding("up,k", "app.select_message(-1)", "Previous", show=False),
        Binding("down,j", "app.select_message(1)", "Next", show=False),
        Binding("home", "app.select_message(-1000000)", "First", show=False),
        Binding("end", "app.select_message(1000000)", "Last", show=False),
        Binding("escape,tab,i", "app.leave_messages", "Back to input", key_display="esc"),
    ]
    return bindings


MESSAGE_BINDINGS = _message_bindings()


def versions_label(versions: tuple[int, int] | None) -> str:
    """`‹ 1/2 ›` for a message with versions (the first of `n`: 1)."""
    if not versions or versions[1] < 2:
        return ""
    return f"‹ {versions[0]}/{versions[1]} ›"


class RenderedLines(Widget):
    """A widget showing one Rich renderable (from `build()`), rendered to strips once per
    change and per width. Subclasses call `changed()` when what `build()` returns changes."""

    DEFAULT_CSS = "RenderedLines { height: auto; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._strips: list[Strip] = []
        self._width = 0  # the width the strips were rendered at (0: not rendered)
        self.renders = 0

    def build(self) -> RenderableType:  # pragma: no cover - abstract
        raise NotImplementedError

    def changed(self) -> None:
        """Re-render now; lay out the screen again only if the height changed."""
        if not self._width or not self.is_mounted:
            self._width = 0
            self.refresh(layout=True)
            return
        height = len(self._strips)
        self._render(self._width)
        self.refresh(layout=len(self._strips) != height)

    def _render(self, width: int) -> None:
        console = self.app.console
        options = self.app.console_options.update_width(width).update(highlight=False)
        lines = console.render_lines(self.build(), options, style=self.rich_style, pad=True)
        self._strips = [Strip(line, width) for line in lines]
        self._width = width
        self.renders += 1

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._width = 0  # colours changed: render again at the next layout

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width <= 0:
            return 0
        if width != self._width:
            self._render(width)
        return len(self._strips)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._width and width > 0:
            self._render(width)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def archive_renderable(self) -> RenderableType:
        """This message as a renderable that keeps its look outside the widget (for Archive)."""
        return _with_margin(self, Styled(self.build(), self.rich_style))


def _with_margin(widget: Widget, renderable: RenderableType) -> RenderableType:
    top = widget.styles.margin.top
    return Padding(renderable, (top, 0, 0, 0)) if top else renderable


class _Bubble:
    """Text in a box of `style`, right-aligned, at most `ratio` of the width."""

    def __init__(self, text: str, style, ratio: float = 0.8) -> None:
        self.text = text
        self.style = style
        self.ratio = ratio

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        box = Padding(Text(self.text, style=self.style), (0, 1), style=self.style, expand=False)
        yield Align.right(Constrain(box, max(4, int(width * self.ratio))), width=width)


class UserMessage(RenderedLines, can_focus=True):
    """A user's message: right-aligned, in a light gray bubble. Never parsed as markup.
    `node_id`: the Conversation node it shows; `versions`: (which, of how many) when edited."""

    COMPONENT_CLASSES = {"user-message--bubble", "message--versions"}
    BINDINGS = MESSAGE_BINDINGS

    def __init__(self, text: str, *, node_id: int | None = None, versions: tuple[int, int] | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = text  # as typed / stored (a paste or a saved chat may hold anything)
        self.node_id = node_id
        self.versions = versions

    def build(self) -> RenderableType:
        bubble = _Bubble(cell_safe(sanitize_for_terminal(self.text)),
                         self.get_component_rich_style("user-message--bubble"))
        label = versions_label(self.versions)
        if not label:
            return bubble
        mark = Text(label, style=self.get_component_rich_style("message--versions"), justify="right")
        return Group(bubble, mark)

    def archive_renderable(self) -> RenderableType:
        return _with_margin(self, self.build())


class Notice(RenderedLines):
    """A quiet line: cleared, stopped, settings changed, loading progress."""

    def __init__(self, text: str, *, kind: str = "info", **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = sanitize_for_terminal(text)  # loading lines name paths; notices quote servers
        self.add_class(f"-{kind}")

    def build(self) -> RenderableType:
        return Text(self.text)


class InfoPanel(RenderedLines):
    """A block of aligned rows (/help, /stats, /model). With `sections` (heading, rows) the rows
    are a two-column table, so a long value wraps inside its own column."""

    def __init__(self, text: str, *, sections: list[tuple[str, list[tuple[str, str]]]] | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = sanitize_for_terminal(text)
        self.sections = [(one_line(h), [(one_line(k), sanitize_for_terminal(v)) for k, v in rows])
                         for h, rows in (sections or [])]

    def build(self) -> RenderableType:
        if not self.sections:
            return Text(self.text)
        parts: list[RenderableType] = []
        for i, (heading, rows) in enumerate(self.sections):
            if i:
                parts.append(Text(""))
            parts.append(Text(heading, style="bold"))
            grid = Table.grid(padding=(0, 2), pad_edge=False)
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for key, value in rows:
                grid.add_row(Text(key), Text(cell_safe(value)))
            parts.append(Padding(grid, (0, 0, 0, 2)))
        return Group(*parts)

    def archive_renderable(self) -> RenderableType:
        # the left border is CSS; keep a sign of it
        inner = Styled(self.build(), self.rich_style)
        bar = Table.grid()
        bar.add_column(width=2)
        bar.add_column()
        bar.add_row(Text("▌"), inner)
        return _with_margin(self, bar)


class ToolCallView(RenderedLines):
    """A calculator call and its result, set apart from the reply text."""

    def __init__(self, expression: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.expression = expression
        self.result: str | None = None
        self.finished = False

    def set_result(self, result: str | None) -> None:
        self.result = result
        self.finished = True
        self.changed()

    @property
    def text(self) -> str:
        if not self.finished:
            answer = " = …"
        elif self.result is None:
            answer = " = (no result)"
        else:
            answer = f" = {self.result}"
        return one_line(f"calculator ▸ {self.expression}{answer}")

    def build(self) -> RenderableType:
        return Text(cell_safe(self.text))


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
        self.update(self.FRAMES[self._frame], layout=False)


CHUNK_CHARS = 800  # the live Markdown chunk is cut at the next block boundary past this size


def safe_split(text: str, start: int = 0) -> int | None:
    """The last offset >= `start` where `text` can be cut into two Markdown documents that
    render as the whole does: the start of a line that follows a blank line, outside a code
    fence, and that begins with a visible character (so it is not an indented continuation).
    None if there is no such place yet."""
    best = None
    offset = 0
    in_fence = False
    previous_blank = False
    for line in text.splitlines(keepends=True):
        if (offset >= start and offset > 0 and previous_blank and not in_fence
                and line[:1] not in ("", " ", "\t", "\n", "\r")):
            best = offset
        stripped = line.lstrip()
        if stripped.startswith("```") or stripped.startswith("~~~"):
            in_fence = not in_fence
        previous_blank = not line.strip()
        offset += len(line)
    return best


class _LeftHeading(Heading):
    LEVEL_ALIGN = {f"h{i}": "left" for i in range(1, 7)}


class ReplyMarkdown(RichMarkdown):
    """Rich's Markdown (code blocks highlighted, lists, tables, quotes), headings on the left,
    links shown as text + URL rather than as terminal hyperlinks chosen by the model."""

    elements = {**RichMarkdown.elements, "heading_open": _LeftHeading}

    def __init__(self, text: str) -> None:
        super().__init__(text, code_theme="monokai", hyperlinks=False)


class MarkdownChunk(RenderedLines):
    """A piece of a reply rendered as Markdown: one widget, however many blocks it holds."""

    def __init__(self, text: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = text

    def set_text(self, text: str) -> None:
        self.source = text
        self.changed()

    def build(self) -> RenderableType:
        return ReplyMarkdown(cell_safe(self.source))


class Mark(RenderedLines):
    """A quiet line at the end of a reply (stopped, max tokens, empty, failed, versions)."""

    def __init__(self, text: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.text = text

    def set_text(self, text: str) -> None:
        self.text = text
        self.changed()

    def build(self) -> RenderableType:
        return Text(cell_safe(self.text))


# How a reply that did not simply finish is marked (Conversation reply states, see
# nanochat_core/conversation.py); `error` adds why.
STATE_MARKS = {
    "stopped": "■ stopped",
    "length": "… max tokens reached (/max-tokens to raise it)",
    "partial": "… interrupted (the app closed while it streamed)",
    "lost": "⚠ the connection to the server was lost here",
}
DONE_REASON_STATE = {"stop": "done", "length": "length", "cancelled": "stopped"}


def reply_parts(content: str | tuple[dict, ...]) -> list[dict]:
    """A reply's content as parts (text / python / python_output)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return [dict(p) for p in content]


def code_blocks(markdown: str) -> list[str]:
    """The code blocks of a Markdown text (fenced or indented), in order, without fences."""
    from markdown_it import MarkdownIt

    return [token.content for token in MarkdownIt("commonmark").parse(markdown)
            if token.type in ("fence", "code_block")]


class AssistantMessage(Vertical, can_focus=True):
    """One reply: Markdown chunks, with tool calls between them.

    Streamed: text arrives through `append()` (batched by the app; sanitized here). Only the last
    ("live") chunk is re-rendered as text arrives, and it is cut at block boundaries once it
    passes CHUNK_CHARS, so the cost of an update stays flat however long the reply gets.
    From a saved reply: `AssistantMessage(node=…)` shows its parts and how it ended.
    `node_id` is the Conversation node it shows; `versions` (which, of how many) when regenerated.
    """

    BINDINGS = MESSAGE_BINDINGS

    def __init__(self, *, node: Any = None, node_id: int | None = None,
                 versions: tuple[int, int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.node_id = node.id if node is not None else node_id
        self.versions = versions
        self.segments: list[str] = []  # the reply's text, split where tool calls sit
        self.chunks: list[MarkdownChunk] = []
        self._segment_open = False
        self._live: MarkdownChunk | None = None  # the chunk that still grows
        self._indicator: TypingIndicator | None = None
        self._tools: list[ToolCallView] = []
        self._versions_mark: Mark | None = None
        self.finished = node is not None
        self.stop_reason: str | None = None
        self.state: str | None = node.state if node is not None else None
        self.error: str | None = None
        self._node = node
        self.copied_block = -1  # which code block `b` copied last (the next press copies the next)

    def compose(self) -> ComposeResult:
        if self._node is None:
            self._indicator = TypingIndicator(classes="typing")
            yield self._indicator
            return
        yield from self._saved_children(self._node)
        self._node = None

    def _saved_children(self, node: Any) -> Iterable[Widget]:
        tool: ToolCallView | None = None
        for part in reply_parts(node.content):
            text = sanitize_for_terminal(part["text"])
            if part["type"] == "text":
                self.segments.append(text)
                for piece in _blocks(text):
                    chunk = MarkdownChunk(piece, classes="reply")
                    self.chunks.append(chunk)
                    yield chunk
            elif part["type"] == "python":
                tool = ToolCallView(text, classes="tool")
                self._tools.append(tool)
                yield tool
            elif tool is not None:
                tool.result, tool.finished = text, True
        for view in self._tools:
            view.finished = True
        yield from self._end_marks(node.state, node.error)

    def _end_marks(self, state: str | None, error: str | None) -> Iterable[Widget]:
        self.state, self.error = state, error
        self.stop_reason = {"done": "stop", "stopped": "cancelled", "length": "length"}.get(state or "", state)
        if not self.segments and not self._tools and state not in ("error", "lost"):
            yield Mark("(empty reply)", classes="empty")
        if state == "stopped":
            self.add_class("-stopped")
        if state == "error":
            self.add_class("-failed")
            yield Mark(f"⚠ failed: {one_line(error or 'unknown error')}", classes="mark failed")
        elif state in STATE_MARKS:
            yield Mark(STATE_MARKS[state], classes="mark")
        if versions_label(self.versions):
            self._versions_mark = Mark(versions_label(self.versions), classes="versions")
            yield self._versions_mark

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

    async def _new_chunk(self, text: str) -> None:
        self._live = MarkdownChunk(text, classes="reply")
        self.chunks.append(self._live)
        await self.mount(self._live)

    async def append(self, text: str) -> None:
        if not text:
            return
        text = sanitize_for_terminal(text)  # model text: never raw to the terminal
        await self._drop_indicator()
        if not self._segment_open:
            self._segment_open = True
            self.segments.append("")
        self.segments[-1] += text
        if self._live is None:
            await self._new_chunk(text)
            return
        live = self._live.source + text
        cut = safe_split(live) if len(live) > CHUNK_CHARS else None
        if cut is None:
            self._live.set_text(live)
            return
        self._live.set_text(live[:cut])  # sealed: never rendered again (unless resized)
        await self._new_chunk(live[cut:])

    def _close_segment(self) -> None:
        self._live = None
        self._segment_open = False

    async def add_tool_call(self, expression: str) -> None:
        await self._drop_indicator()
        self._close_segment()
        view = ToolCallView(sanitize_for_terminal(expression), classes="tool")
        self._tools.append(view)
        await self.mount(view)

    def set_tool_result(self, expression: str, result: str | None) -> None:
        for view in reversed(self._tools):
            if not view.finished:
                view.set_result(None if result is None else sanitize_for_terminal(result))
                return

    async def finish(self, reason: str, *, state: str | None = None, error: str | None = None) -> None:
        """The stream ended. reason: stop | length | cancelled | error; `state` (a Conversation
        reply state) says how to mark it, `error` why it failed."""
        self.finished = True
        await self._drop_indicator()
        self._close_segment()
        for view in self._tools:
            if not view.finished:
                view.set_result(None)
        state = state or ("error" if reason == "error" else DONE_REASON_STATE.get(reason, "done"))
        await self.mount_all(list(self._end_marks(state, error)))
        self.stop_reason = reason

    def set_versions(self, versions: tuple[int, int] | None) -> None:
        self.versions = versions
        label = versions_label(versions)
        if self._versions_mark is not None:
            self._versions_mark.set_text(label)
            self._versions_mark.display = bool(label)
        elif label and self.finished:
            self._versions_mark = Mark(label, classes="versions")
            self.mount(self._versions_mark)

    def code_blocks(self) -> list[str]:
        return [block for segment in self.segments for block in code_blocks(segment)]

    def archive_renderable(self) -> RenderableType:
        parts = [child.archive_renderable() for child in self.children
                 if isinstance(child, RenderedLines) and child.display]
        return _with_margin(self, Group(*parts))


def _blocks(text: str, size: int = CHUNK_CHARS * 4) -> list[str]:
    """A long saved reply cut at block boundaries into chunks of about `size` characters (so a
    width change re-renders pieces, not one huge document)."""
    pieces = []
    while len(text) > size:
        cut = safe_split(text[: size * 2], size)
        if cut is None:
            break
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return [p for p in pieces if p] or [""]


class Archive(RenderedLines):
    """Older messages folded into one widget: what they showed, as renderables."""

    def __init__(self, parts: Iterable[RenderableType], count: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.parts = list(parts)
        self.count = count  # how many messages it holds

    def build(self) -> RenderableType:
        return Group(*self.parts)

    def archive_renderable(self) -> RenderableType:
        return self.build()
