"""The chat app's widgets, one module each (styles in nanochat_tui/app.tcss)."""

from .chat_log import ChatLog
from .error_banner import ErrorBanner
from .header import ChatHeader
from .messages import (
    Archive,
    AssistantMessage,
    InfoPanel,
    MarkdownChunk,
    Notice,
    ToolCallView,
    TypingIndicator,
    UserMessage,
)
from .model_picker import ModelPickerScreen
from .prompt_input import PromptInput
from .screens import ConfirmScreen, ConversationsScreen, RenameScreen, SettingsScreen
from .status_bar import StatusBar

__all__ = [
    "Archive", "AssistantMessage", "ChatHeader", "ChatLog", "ErrorBanner", "InfoPanel", "MarkdownChunk", "Notice",
    "PromptInput", "StatusBar", "ToolCallView", "TypingIndicator", "UserMessage",
    "ConfirmScreen", "ConversationsScreen", "ModelPickerScreen", "RenameScreen", "SettingsScreen",
]
