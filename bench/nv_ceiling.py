"""How far any texture could take the novel-view PSNR on a run's geometry, split by what the video saw.

``nv_psnr_texture_bound`` gives every pixel both silhouettes cover the reference's colour: a perfect texture
everywhere, including the sides the video never saw, where a method has nothing but the generated colours. This
program splits that bound. On the kept runs of a ``full`` table (resumed, nothing re-fitted), at every evaluated
frame and novel view (the bench's own cameras and once-alignment), each pixel both silhouettes cover is
classed by its texel: *seen* where the texture stage's video supervision reached it (the stage's own test), else
*unseen*. Then:

- ``ours``: the run as it is (the bench's ``nv_psnr``);
- ``seen_perfect``: seen pixels take the reference's colour: the most any change to the video-supervised
  texture could give;
- ``seen_perfect_gen``: that, and unseen pixels take the generator's own colour there, from its mesh at the
  frame's true pose (the synthetic generator's record of what it removed) under the affine colour map that best
  fits it to the reference in that frame (an oracle of ``colour_transfer``): the most a texture could give
  that fills the unseen side from the generated appearance, which is all a method knows of it;
- ``texture_bound``: every shared pixel perfect (the bench's ``nv_psnr_texture_bound``).

The shares of the union's pixels (seen, unseen, one silhouette only) say where the error lives.

    python -m v2m4.bench --method full --resolution 256 --max-frames 12 --keep-runs /tmp/keep_full
    python bench/nv_ceiling.py --keep /tmp/keep_full --note "kept runs of full_cc99f6d"
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import BENCH_DIR, write_table  # noqa: E402
from v2m4 import render as R  # noqa: E402
from v2m4.bench import BenchSettings, git_commit, machine_description, run_item, true_pose_output  # noqa: E402
from v2m4.camera import Camera  # noqa: E402
from v2m4.data.bench import item_dir, load_item, render_ground_truth  # noqa: E402
from v2m4.metrics import geometry as G  # noqa: E402
from v2m4.metrics import image as I  # noqa: E402
from v2m4.metrics.novel_view import framing, orbit_views  # noqa: E402
from v2m4.stages.texture import _reached, _supervised_pixels  # noqa: E402
from v2m4.types import Mesh  # noqa: E402

ROWS = ("ours", "seen_perfect", "seen_perfect_gen", "texture_bound")


def video_seen(ctx, anim, key: list[int], camera: Camera, rgba: torch.Tensor) -> torch.Tensor:
    """(S, S) float: the texels the texture stage's video supervision reached (its ``_reached`` of the
    reference views' supervised pixels), for the run's keyframes as the stage saw them."""
    K = len(key)
    cams = Camera(camera.K.expand(K, 3, 3), camera.cam_from_world.expand(K, 4, 4), camera.resolution)
    uv, _, _, foot = _supervised_pixels(ctx, anim.mesh, anim.vertices[key], cams, rgba, 1.0)
    return _reached(uv, foot, anim.mesh.texture.shape[0]).float()


def affine_fit(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """(4, 3) least-squares affine colour map src (P, 3) -> dst (P, 3)."""
    X = torch.cat([src, torch.ones_like(src[:, :1])], 1).double()
    return torch.linalg.lstsq(X, dst.double()).solution.to(src)


def item_ceiling(item_id: str, keep: Path, bench_dir: Path, views: int, resolution: int, frames: int) -> dict:
    settings = BenchSettings(method="full", items=(item_id,), resolution=resolution, max_frames=frames,
                             bench_dir=str(bench_dir))
    frames, gen, _, result = run_item(item_id, settings, keep / item_id / "run", resume=True)
    key = result.keyframes.tolist()
    anim = result.animation
    ctx = R.context("torch", torch.device("cpu"))
    item = load_item(item_dir(item_id, bench_dir))
    gt = item.gt_vertices[key].float()
    seen_tex = video_seen(ctx, anim, key, result.video_camera, frames.rgba[key])
    ours = [anim.frame(t) for t in key]
    _, once = G.sequence_geometry([m.vertices.detach() for m in ours], [m.faces for m in ours], gt, item.faces,
                                  n_points=5000, seed=0)
    generated = [gen.generate(frames.rgba[t], t) for t in key]
    placed = true_pose_output(item, _Keyed(gen, key), generated).meshes
    centres, radius = framing(gt)
    H = frames.rgba.shape[1]
    cams_all = orbit_views(centres, radius, views=views, resolution=(H, H))
    psnr = {k: [] for k in ROWS}
    share = {"seen": [], "unseen": [], "one_silhouette": []}
    for i in range(len(key)):
        cams = cams_all[i * views:(i + 1) * views]
        v = G.apply(once, ours[i].vertices.float())
        with torch.no_grad():
            o = R.render(ctx, ours[i], cams, channels=("rgb", "mask"), vertices=v)
            seen_mesh = Mesh(ours[i].vertices, ours[i].faces, uv=ours[i].uv,
                             texture=seen_tex[..., None].expand(-1, -1, 3))
            s = R.render(ctx, seen_mesh, cams, channels=("rgb",), vertices=v)["rgb"][..., 0]
            ref, ref_mask = render_ground_truth(item, gt[i], cams, ctx)
            g = R.render(ctx, placed[i], cams, channels=("rgb", "mask"))
        rgb, mask = o["rgb"], o["mask"]
        union = torch.maximum(mask, ref_mask)
        both = (mask > 0.5) & (ref_mask > 0.5)
        seen = both & (s > 0.5)
        unseen = both & ~seen
        gen_ok = unseen & (g["mask"] > 0.5)
        gen_rgb = g["rgb"]
        fit = both & (g["mask"] > 0.5)
        if int(fit.sum()) >= 16:
            A = affine_fit(gen_rgb[fit], ref[fit])
            gen_rgb = (torch.cat([gen_rgb, torch.ones_like(gen_rgb[..., :1])], -1) @ A).clamp(0, 1)
        rows = {"ours": rgb,
                "seen_perfect": torch.where(seen[..., None], ref, rgb),
                "texture_bound": torch.where(both[..., None], ref, rgb)}
        rows["seen_perfect_gen"] = torch.where(gen_ok[..., None], gen_rgb, rows["seen_perfect"])
        for k in ROWS:
            psnr[k].extend(I.masked_psnr(rows[k], ref, union).tolist())
        u = (union > 0.5).flatten(1).sum(1).clamp_min(1).float()
        share["seen"].extend((seen.flatten(1).sum(1) / u).tolist())
        share["unseen"].extend((unseen.flatten(1).sum(1) / u).tolist())
        share["one_silhouette"].extend((((union > 0.5) & ~both).flatten(1).sum(1) / u).tolist())
    out = {k: round(statistics.median(v), 3) for k, v in psnr.items()}
    out.update({f"share_{k}": round(statistics.mean(v), 3) for k, v in share.items()})
    return out


class _Keyed:
    """The generator seen through a clip's keyframes: ``removed_transform(i)`` of the i-th keyframe."""

    def __init__(self, gen, key: list[int]):
        self.gen, self.key = gen, key

    def removed_transform(self, i: int) -> torch.Tensor:
        return self.gen.removed_transform(self.key[i])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", required=True, help="kept runs of a `full` table (its --keep-runs folder)")
    ap.add_argument("--items", nargs="*", default=None)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--max-frames", type=int, default=12)
    ap.add_argument("--note", default="", help="what the kept runs are (their table, commit)")
    ap.add_argument("--name", default="nv_ceiling")
    a = ap.parse_args()
    keep = Path(a.keep)
    items = a.items or sorted(p.name for p in keep.iterdir() if (p / "run").is_dir())
    torch.set_num_threads(1)
    table = {}
    for item_id in items:
        table[item_id] = item_ceiling(item_id, keep, BENCH_DIR, a.views, a.resolution, a.max_frames)
        print(item_id, table[item_id], flush=True)
    med = {k: round(statistics.median(r[k] for r in table.values()), 3) for k in next(iter(table.values()))}
    out = {"date": datetime.date.today().isoformat(), "machine": machine_description("cpu"), "commit": git_commit(),
           "note": a.note, "views": a.views, "resolution": a.resolution, "max_frames": a.max_frames,
           "items": table, "median": med}
    cols = ROWS + ("share_seen", "share_unseen", "share_one_silhouette")
    lines = [f"**{a.name}** (bench/nv_ceiling.py) on {out['machine']}, {out['date']}, commit {out['commit']}; "
             f"{a.note}. Novel-view PSNR (dB, median over {a.views} views x {a.max_frames} frames) with the shared "
             "pixels' colour replaced by the reference's where the video saw them (seen_perfect), and the "
             "unseen ones by the generator's own colour at the true pose (seen_perfect_gen); shares of the "
             "union's pixels (means).", "", "| item | " + " | ".join(cols) + " |",
             "|---|" + "---|" * len(cols)]
    for k, r in table.items():
        lines.append(f"| {k} | " + " | ".join(f"{r[c]:.3f}" if "share" in c else f"{r[c]:.2f}" for c in cols) + " |")
    lines.append("| **median** | " + " | ".join(f"{med[c]:.3f}" if "share" in c else f"{med[c]:.2f}" for c in cols)
                 + " |")
    write_table(a.name, out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
