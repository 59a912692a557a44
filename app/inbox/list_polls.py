"""List polls answered from one rendering shared by everyone watching the same list.

Under steady traffic the list changes every few milliseconds, so nearly every poll finds
something new, and rendering the first page for each of them saturates the server long before
the database is busy. Instead each process keeps, per list (its query string), the last
rendering and the change number it was made at, and gives it to every poll that is behind that
number for as long as nothing changes, and for SHARED_SECONDS after it does. A row shows up at
most that much later; nothing is missed, because the rendering carries its change number and
the next poll asks from there. A poll that already has the shared rendering's number gets a
fresh one, so a lone watcher never waits.

How many messages arrived since a poll's number (its live region says so) is counted once per
number too: pages that shared one rendering poll again in step, from the same number.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from app import clock

SHARED_SECONDS = 0.25  # well under POLL_SECONDS: live latency barely moves
MOST_LISTS = 256  # distinct searches and filters kept per process, then forgotten all at once


@dataclass
class Rendering:
    lock: threading.Lock = field(default_factory=threading.Lock)
    change: int = -1
    body: str = ""
    rendered_at: float = float("-inf")
    arrivals: dict[int, int] = field(default_factory=dict)  # since -> messages in (since, change]

    def serves(self, since: int, latest: int, now: float) -> bool:
        """Whether this rendering is news for the poll, and still the list or only just not."""
        return since < self.change and (self.change == latest or 0 <= now - self.rendered_at < SHARED_SECONDS)


_guard = threading.Lock()


def shared(
    list_key: tuple,
    since: int,
    latest: int,
    render: Callable[[], tuple[int, str]],
    count_arrivals: Callable[[int, int], int],
) -> tuple[str, int]:
    """The list's HTML for a poll that has seen up to change number `since` (the latest is
    `latest`), and how many messages arrived after `since` up to the change the HTML shows.

    `render` makes (change number, HTML); while it runs, other polls of the same list wait for
    it rather than render the same page again. `count_arrivals(since, change)` counts.
    """
    renderings: dict[tuple, Rendering] = current_app.extensions.setdefault("list_polls", {})
    with _guard:
        rendering = renderings.get(list_key)
        if rendering is None:
            if len(renderings) >= MOST_LISTS:
                renderings.clear()
            rendering = renderings[list_key] = Rendering()
    with rendering.lock:
        if not rendering.serves(since, latest, clock.timestamp()):
            started = clock.timestamp()
            rendering.change, rendering.body = render()
            rendering.rendered_at, rendering.arrivals = started, {}
        change, body, arrivals = rendering.change, rendering.body, rendering.arrivals
    if since not in arrivals:
        arrivals[since] = count_arrivals(since, change)
    return body, arrivals[since]
