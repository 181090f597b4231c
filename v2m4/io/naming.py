"""File ordering shared by every folder reader."""

import re


def natural_key(name: str):
    """Sort key that puts frame2 before frame10."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]
