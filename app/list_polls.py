"""List polls answered from one rendering shared by everyone watching the same list.

Under steady traffic the list changes every few milliseconds, so nearly every poll finds
something new, and rendering the first page for each of them saturates the server long before
the database is busy. Instead each process keeps, per list (its query string), the last
rendering and the change number it was made at, and gives it to every poll that is behind that
number for SHARED_SECONDS. A row shows up at most that much later; nothing is missed, because
the rendering carries its change number and the next poll asks from there. A poll that already
has the shared rendering's number gets a fresh one, so a lone watcher never waits.
"""
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from . import clock

SHARED_SECONDS = 0.25  # well under POLL_SECONDS: live latency barely moves
MOST_LISTS = 256  # distinct searches and filters kept per process, then forgotten all at once


@dataclass
class Rendering:
    lock: threading.Lock = field(default_factory=threading.Lock)
    change: int = -1
    body: str = ""
    rendered_at: float = float("-inf")

    def serves(self, since: int, now: float) -> bool:
        return self.change > since and 0 <= now - self.rendered_at < SHARED_SECONDS


_guard = threading.Lock()


def shared(list_key: tuple, since: int, render: Callable[[], tuple[int, str]]) -> tuple[int, str]:
    """The list's (change number, HTML) for a poll that has seen up to `since`.

    `render` makes a new one; while it runs, other polls of the same list wait for it rather
    than render the same page again.
    """
    renderings: dict[tuple, Rendering] = current_app.extensions.setdefault("list_polls", {})
    with _guard:
        rendering = renderings.get(list_key)
        if rendering is None:
            if len(renderings) >= MOST_LISTS:
                renderings.clear()
            rendering = renderings[list_key] = Rendering()
    with rendering.lock:
        if not rendering.serves(since, clock.timestamp()):
            started = clock.timestamp()
            rendering.change, rendering.body = render()
            rendering.rendered_at = started
        return rendering.change, rendering.body
