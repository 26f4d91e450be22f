"""State shared by the plugins answering one ``firstresult`` look-up (one question, many asked).

The plugin host runs each call on the plugin's own worker thread, so a thread-local cannot
carry what one provider tells the next (the world average's note names the live providers that
failed before it). The host runs every call of one look-up in a copy of one context, and
``lookup_state()`` returns the dict that those copies share.
"""

from __future__ import annotations

import contextvars
from typing import Any

__all__ = ["lookup_state", "new_lookup"]

_LOOKUP: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "carbontrack_lookup", default=None
)


def lookup_state() -> dict[str, Any]:
    """The current look-up's shared dict (outside a look-up: one for the current context)."""
    state = _LOOKUP.get()
    if state is None:
        state = {}
        _LOOKUP.set(state)
    return state


def new_lookup() -> contextvars.Context:
    """A context whose copies share one fresh look-up dict: one per ``firstresult`` call."""
    context = contextvars.copy_context()
    context.run(_LOOKUP.set, {})
    return context
