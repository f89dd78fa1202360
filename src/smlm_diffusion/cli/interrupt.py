"""Ctrl-C and SIGTERM (what a cluster scheduler sends before it kills a job) as a request
to stop: the run ends after the frame in progress and its finished frames are written. A
second signal stops at once (KeyboardInterrupt); the last periodic checkpoint is kept."""

from __future__ import annotations

import signal
import sys
import threading

_HANDLED = (signal.SIGINT, signal.SIGTERM)


#: what ``reconstruct`` says at the first signal
FRAME_ANNOUNCEMENT = (
    "stopping after the frame in progress (its finished frames are written; send it again to stop at once)"
)


class StopOnSignals:
    """Context manager; ``requested()`` turns true at the first SIGINT or SIGTERM and
    ``signal_name`` says which; ``announcement`` (if any) is printed then. With
    ``second_stops_at_once`` a second signal raises KeyboardInterrupt, else it is only
    noted again (the training loop always finishes its checkpoint). Outside the main
    thread it installs nothing."""

    def __init__(self, announcement: str | None = FRAME_ANNOUNCEMENT, second_stops_at_once: bool = True) -> None:
        self.signal_name: str | None = None
        self.announcement = announcement
        self.second_stops_at_once = second_stops_at_once
        self._previous: dict = {}

    def requested(self) -> bool:
        return self.signal_name is not None

    def exit_code(self) -> int:
        """The shell's code for a job ended by the signal (128 + its number)."""
        return 128 + int(getattr(signal, self.signal_name or "SIGINT"))

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and self.second_stops_at_once:
            raise KeyboardInterrupt
        first = self.signal_name is None
        self.signal_name = signal.Signals(signum).name
        if first and self.announcement:
            print(f"\n{self.signal_name}: {self.announcement}", file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in _HANDLED}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
