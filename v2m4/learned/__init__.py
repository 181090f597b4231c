"""Learned models, all optional: DreamSim and LPIPS scorers, a DUSt3R point-map model for the stereo
prior, CLIP similarity as a metric. Each adapter imports its library lazily, finds its weights in the standard
cache or a folder the user names, and otherwise raises ``LearnedUnavailable`` with one line saying what is
missing; ``resolve`` turns that into the weight-free path plus one note for the run's report and log.

Weights are never downloaded here: a user fetches them once (each message says how) and v2m4 finds them.
"""

from __future__ import annotations

from .common import LearnedUnavailable, weights_root

__all__ = ["LearnedUnavailable", "weights_root", "check_scorer", "load_scorer", "resolve_scorer"]

SCORERS = ("silhouette-colour", "dreamsim", "lpips", "auto")


def load_scorer(name: str, device="cpu", *, weights: str | None = None, batch: int = 64):
    """A scorer by name (``v2m4.scoring.Scorer``). Raises LearnedUnavailable when a learned one cannot load."""
    from ..errors import V2M4Error
    from ..scoring import SilhouetteColourScorer

    if name == "silhouette-colour":
        return SilhouetteColourScorer()
    if name == "dreamsim":
        from .dreamsim import load_dreamsim
        return load_dreamsim(device, cache_dir=weights, batch=batch)
    if name == "lpips":
        from .lpips import load_lpips
        return load_lpips(device, weights=weights, batch=batch)
    raise V2M4Error(f"unknown scorer {name!r}; choose {', '.join(SCORERS)}")


def check_scorer(name: str, *, weights: str | None = None) -> None:
    """Raise now (LearnedUnavailable / V2M4Error) what ``load_scorer`` would raise later, without building the
    model: a run checks this before it writes anything."""
    from ..errors import V2M4Error
    if name in ("auto", "silhouette-colour"):
        return
    if name == "dreamsim":
        from .dreamsim import missing_files
        from .common import require
        require("dreamsim", "dreamsim")
        missing_files(weights)
    elif name == "lpips":
        from .common import require
        from .lpips import vgg_weights
        require("lpips", "lpips")
        vgg_weights(weights)
    else:
        raise V2M4Error(f"unknown scorer {name!r}; choose {', '.join(SCORERS)}")


def resolve_scorer(name: str, device="cpu", *, weights: str | None = None) -> tuple[object, list[str]]:
    """(scorer, notes). "auto" is DreamSim (the paper's) when it loads, else the weight-free scorer with a note
    naming what was missing. A learned scorer asked for by name must load: its absence is an error."""
    if name != "auto":
        return load_scorer(name, device, weights=weights), []
    try:
        return load_scorer("dreamsim", device, weights=weights), []
    except LearnedUnavailable as exc:
        return load_scorer("silhouette-colour"), [f"DreamSim: {exc}"]
