"""Progress for people (tqdm bars with estimates), JSON lines for scripts (``--json-log``), or nothing.

A bar's JSON lines: ``{"stage": NAME, "progress": DONE, "total": TOTAL, "elapsed_s": ..., "eta_s": ...}``, one when
the bar opens (progress 0), then at most one every ``Bar.json_interval`` seconds, and always the last one
(progress == total); eta_s is null until a unit is done.
"""

from __future__ import annotations

import json
import time


class Log:
    """``mode``: "bars" (human), "json" (one JSON object per line on stdout) or "quiet"."""

    def __init__(self, mode: str = "bars"):
        if mode not in ("bars", "json", "quiet"):
            raise ValueError(f"log mode must be bars, json or quiet, got {mode!r}")
        self.mode = mode

    def event(self, **fields) -> None:
        """One event; ``message`` is what a person reads."""
        if self.mode == "json":
            print(json.dumps(fields), flush=True)
        elif self.mode == "bars" and fields.get("message"):
            print(fields["message"], flush=True)

    def bar(self, total: int, desc: str, unit: str = "frame") -> "Bar":
        return Bar(self, total, desc, unit)


class Bar:
    """A bar of ``total`` units: a tqdm bar for people, ``progress`` events for scripts. Use as a context manager
    or call ``close``."""

    json_interval = 0.5  # seconds between two JSON progress lines (the first and the last are always written)

    def __init__(self, log: Log, total: int, desc: str, unit: str):
        self.log, self.total, self.desc, self.done = log, total, desc, 0
        self._tqdm = None
        self._t0 = self._last = time.perf_counter()
        if log.mode == "bars":
            from tqdm import tqdm
            self._tqdm = tqdm(total=total, desc=desc, unit=unit, leave=False)
        elif log.mode == "json":
            self._emit()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.log.mode == "json" and n and (self.done >= self.total or self.done == n
                                                or time.perf_counter() - self._last >= self.json_interval):
            self._emit()

    def to(self, done: int) -> None:
        """Move the bar to ``done`` units (for callbacks that report a running count)."""
        self.update(done - self.done)

    def _emit(self) -> None:
        self._last = now = time.perf_counter()
        elapsed = now - self._t0
        eta = elapsed / self.done * max(self.total - self.done, 0) if self.done else None
        self.log.event(stage=self.desc, progress=self.done, total=self.total, elapsed_s=round(elapsed, 2),
                       eta_s=None if eta is None else round(eta, 2))

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
