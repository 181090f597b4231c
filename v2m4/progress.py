"""Progress for people (tqdm bars with estimates), JSON lines for scripts (``--json-log``), or nothing.

A bar's JSON lines: ``{"stage": NAME, "progress": DONE, "total": TOTAL, "elapsed_s": ..., "eta_s": ...}``, one when
the bar opens (progress 0, or what a resumed stage had done), then one when the first unit is done, at most one
every ``Bar.json_interval`` seconds, and always the last one (progress == total); eta_s is null until a unit is
done.
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

    def bar(self, total: int, desc: str, unit: str = "frame", initial: int = 0) -> "Bar":
        return Bar(self, total, desc, unit, initial)


class Bar:
    """A bar of ``total`` units, ``initial`` of them done before it opened (a resumed stage): a tqdm bar for
    people, ``progress`` events for scripts. Use as a context manager or call ``close``."""

    json_interval = 0.5  # seconds between two JSON progress lines (the first and the last are always written)

    def __init__(self, log: Log, total: int, desc: str, unit: str, initial: int = 0):
        self.log, self.total, self.desc, self.done, self._initial = log, total, desc, initial, initial
        self._tqdm = None
        self._first = None  # (time, done) when this bar's first unit was done
        self._t0 = self._last = time.perf_counter()
        if log.mode == "bars":
            from tqdm import tqdm
            self._tqdm = tqdm(total=total, desc=desc, unit=unit, leave=False, initial=initial)
        elif log.mode == "json":
            self._emit()

    def update(self, n: int = 1) -> None:
        self.done += n
        first = n and self._first is None
        if first:
            self._first = (time.perf_counter(), self.done)
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.log.mode == "json" and n and (self.done >= self.total or first
                                                or time.perf_counter() - self._last >= self.json_interval):
            self._emit()

    def eta(self, now: float) -> float | None:
        """Seconds left at the pace since the first unit was done, or at the first unit's pace while it is the only
        one measured. The first unit is left out because it often carries a stage's set-up (the texture's atlas
        and target renders) or a harder case (the camera search's first keyframe is a global search)."""
        if self._first is None:
            return None
        t1, d1 = self._first
        if self.done > d1 and now > t1:
            pace = (now - t1) / (self.done - d1)
        else:
            pace = (t1 - self._t0) / max(d1 - self._initial, 1)
        return pace * max(self.total - self.done, 0)

    def to(self, done: float, total: int | None = None) -> None:
        """Move the bar to ``done`` units (for callbacks that report a running count; a fraction for a unit under
        way); ``total``: the work turned out larger (or smaller) than announced."""
        if total is not None and total != self.total:
            self.total = total
            if self._tqdm is not None:
                self._tqdm.total = total
                self._tqdm.refresh()
        self.update(done - self.done)

    def _emit(self) -> None:
        self._last = now = time.perf_counter()
        elapsed, eta = now - self._t0, self.eta(now)
        self.log.event(stage=self.desc, progress=round(self.done, 3), total=self.total, elapsed_s=round(elapsed, 2),
                       eta_s=None if eta is None else round(eta, 2))

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
