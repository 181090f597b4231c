"""The Khronos glTF validator (npm ``gltf-validator``, installed under tools/ by ``cd tools && npm ci``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import V2M4Error

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def validator_available() -> str | None:
    """None when the validator can run, else why not (for test skips and messages)."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (TOOLS / "node_modules" / "gltf-validator").is_dir():
        return f"gltf-validator is not installed (run: cd {TOOLS} && npm ci)"
    return None


def validate_glb(path: str | os.PathLike) -> dict:
    """Validator report of one file: errors, warnings, infos, hints counts and the messages."""
    why = validator_available()
    if why:
        raise V2M4Error(f"cannot validate {path}: {why}")
    proc = subprocess.run(["node", str(TOOLS / "validate.js"), str(path)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise V2M4Error(f"the glTF validator failed on {path}: {proc.stderr.strip()[:300]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
