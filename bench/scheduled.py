"""Scheduled sends due at once: many replies scheduled for the same moment, sent by the server.

As bench/replies.py (the server as `make run` starts it, the fake Omnichannel API of
tests/fake_messente.py), but the replies are stored `scheduled` for one moment `due_in` seconds
after their commit, each with its `send_scheduled` job due then (app/replies/scheduled.py). At
that moment every job falls due together: each swaps its row for a queued reply, whose send job
sends it at the configured rate. Figures: the time from the moment they were due until the fake
had the last one (target: within a minute), against the time Messente's rate itself needs for
that many (the ceiling: count / 150 s); none sent early; each sent exactly once; and the most
requests in any one-second window (Messente allows 150).
"""

from pathlib import Path

from .replies import WINDOW_LIMIT, burst
from .report import Row


def due_in(count: int) -> float:
    """Seconds from the start of their transaction to their moment: 30 for 1,000, which commit in
    a few seconds on a quiet machine and in about 20 at load average 12 (with 15 they committed
    after their moment there, and the first send measured the bench's lateness)."""
    return 5.0 + count / 40


TARGET_SECONDS = 60.0


def measure(workdir: Path, count: int, log) -> list[Row]:
    sent = burst(workdir, "scheduled", count, log, due_in=due_in(count))
    label = f"{count:,} scheduled"
    after_due = sent.last - sent.due_at
    ceiling = count / WINDOW_LIMIT  # the fastest Messente's rate allows
    on_time = sent.first >= sent.due_at - 1.0  # the app keeps whole seconds: never a second early
    return [
        Row(
            "scheduled sends due at once: time until all are sent",
            label,
            after_due,
            "s",
            ceiling,
            ceiling / after_due if after_due > 0 else None,
            f"<= {TARGET_SECONDS:.0f} s, none early",
            after_due <= TARGET_SECONDS and on_time,
            note=f"from their moment to the fake's last request; first {sent.first - sent.due_at:+.1f} s; "
            f"committed {sent.due_at - sent.committed_at:.1f} s before it; ceiling: {count:,} at {WINDOW_LIMIT}/s",
        ),
        Row(
            "scheduled sends due at once: each sent exactly once",
            label,
            len(sent.sends),
            "API requests",
            count,
            None,
            f"{count:,}, one each, all sent",
            sent.exactly_once,
            note=f"statuses {dict(sent.statuses)}",
        ),
        Row(
            "scheduled sends due at once: most API requests in one second",
            label,
            sent.busiest,
            "requests",
            target=f"<= {WINDOW_LIMIT}",
            met=sent.busiest <= WINDOW_LIMIT,
        ),
    ]
