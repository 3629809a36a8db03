"""The command palette (Ctrl+P): every command of the registry (nanochat_tui/commands.py), by
its title, with its key and what it does."""

from __future__ import annotations

from functools import partial
from typing import Callable, Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .. import commands as registry


class RegistryCommands(Provider):
    """Commands from the one registry; choosing one runs it through the app's dispatch."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        run = getattr(self.app, "palette_command")
        for spec in registry.commands_for(registry.TUI):
            if not spec.palette:
                continue
            help_text = registry.spec_help(spec) + (f" ({spec.key_display})" if spec.key_display else "")
            yield spec.palette_title, help_text, partial(run, spec.name)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = max(matcher.match(title), matcher.match(help_text) * 0.5)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
