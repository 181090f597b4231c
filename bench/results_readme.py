"""Write bench/results/README.md and bench/results/plots/*.png from the JSON tables in bench/results/.

Every figure in the page is read from a committed table here; nothing is copied by hand. Re-run after any table
changes: ``python bench/results_readme.py`` (needs matplotlib for the plots; without it the page is still written,
without plots). Tables or columns that are missing are left out, so the script runs on any subset of results.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# method tables (``python -m v2m4.bench``), in the page's order, with a line on what each measures
METHOD_TABLES = {
    "full": "the whole pipeline as `v2m4 run` ran it at the table's commit (since e37f0f9: every frame registered "
            "at once)",
    "register": "the whole pipeline without its texture stage (generated colours on the registered mesh)",
    "full_seq": "the whole pipeline with keyframe pairs registered in a chain (the paper's schedule)",
    "register_seq": "the whole pipeline without texture, keyframe pairs registered in a chain (the paper's "
                    "schedule): the baseline of the whole-clip fit",
    "full_seed1_7043cb5": "`full` with the generator's seed 1 at 7043cb5 (the noise rule and the polish, chosen on "
                          "seed 0), beside the next table",
    "full_seed1_off_7043cb5": "the same runs' smoothed items with the noise not measured and no polish (the "
                              "pipeline before 7043cb5); same cameras and commit",
    "register_s1": "`register` again with seed 1 (the tables above are seed 0), beside the next table (same commit)",
    "register_seq_s1": "`register_seq` with seed 1, same commit as the table above",
    "register_k8": "`register` with 8 keyframes (the tables above have 12), beside the next table (same commit)",
    "register_seq_k8": "`register_seq` with 8 keyframes, same commit as the table above",
    "full_restart_camkept": "the whole-clip fit with keyframes it left short restarted (`restart_ratio` 3, the default "
                            "since then) on p03, p04, p10 from kept cameras whose runs equal the `full` table's",
    "full_restart_more": "the same on p05, p07, p08, p09, whole runs (compare with `full`: p07 and p08 restarted "
                         "nothing)",
    "register_restart_k8": "the same on p04 at 8 keyframes from a kept camera (compare with `register_k8`)",
    "full_joint_gpu_r128": "the whole-clip fit on the device at the paper preset (keyframe renders at 128 px, each "
                           "step replayed as a CUDA graph: the preset's default since 16e01f9), beside the next table",
    "full_joint_gpu_r256": "the same at 256 px, op by op (the paper preset until 16e01f9); same commit and card",
    "full_gpu_r128_more": "the paper preset as committed (128 px, replayed) on the four items the two tables above "
                          "lack, beside the next table (same commit and card, another call)",
    "full_gpu_r256_more": "the same four items at 256 px, op by op; the camera stage differed between the two "
                          "calls (the camera search is not deterministic on the GPU), hence the next two",
    "full_gpu_r128_camkept": "p06 and p07 at 128 px replayed, runs kept, beside the next table",
    "full_gpu_r256_camkept": "registration onwards of the same runs again at 256 px op by op, from their camera "
                             "checkpoints: the two differ only from registration on",
    "full_joint_gpu_paper": "the whole-clip fit on the device at the paper preset of 4223d4b, beside the next table "
                            "(same commit and card)",
    "full_joint_gpu_half": "the same with half the steps, 16 views a keyframe, keyframe renders at 128 px and CUDA "
                           "graphs (`bench/schedules/joint_gpu_half.json`): faster, and it loses geometry",
    "full_joint_gpu": "the whole pipeline with every frame registered at once, on the device at the paper preset "
                      "(nvdiffrast)",
    "full_gpu_paper_camkept": "the paper preset of 18fab94 (50 views a keyframe, 500 global steps) on one H100, runs "
                              "kept, beside the next table",
    "full_gpu_v16_camkept": "registration onwards of the same runs from their camera checkpoints with 16 views a "
                            "keyframe and 250 global steps (the paper preset since ac97f03)",
    "full_10c4911": "`full` at 10c4911 (the fast preset's texture fitted with 150 L1 steps), the table the current "
                    "`full` is compared with: every figure but the texture's is the same",
    "full_h100": "the whole pipeline at the paper preset on one H100 (nvdiffrast; the device tool lends an H100 for "
                 "the H200's work), all ten items at one commit",
    "full_h100_pieces": "the paper preset on one H100 after loose pieces are placed and the light is taken out of the "
                        "texture: the five items those changes move most (p10, p08, p04) and two controls",
    "full_epyc": "`full` of the same pipeline on another 2-core VM (AMD EPYC): every quality column equals `full`'s "
                 "(p03's texture figures within 2e-5 dB); runs kept for the texture variants of this VM",
    "full_cc99f6d": "`full` after the CPU's antialias was compiled and the frame pixels weighted by their shading, "
                    "on the VM of `full_epyc`, beside it",
    "full_800b364": "`full` after the registered keyframes are smoothed at the weight each clip's video chooses "
                    "(cross-validation on the in-between frames), registration onwards from the cameras of "
                    "`full_cc99f6d`'s runs: the seven items where no smoothing was chosen equal it to every digit",
    "full_dda00bc": "`full` after the frames between keyframes take the smoothed trajectory where it predicts their "
                    "masks as well as their own fit (p04's did), beside `full_800b364`",
    "register_seq_dda00bc": "the chain of pairs at dda00bc from the cameras `full_dda00bc` was fitted from: the "
                            "baseline at the same commit",
    "full_seed1_85b18fd": "`full` at the generator's seed 1 with the video-chosen smoothing, beside the same runs "
                          "with it off (`full_seed1_off_85b18fd`)",
    "full_seed1_off_85b18fd": "the runs of `full_seed1_85b18fd`, registration onwards with the smoothing off",
    "full_flow_81e077a": "`full` with the whole-clip fit's optical-flow term on (`JointConfig.w_flow` 0.1; off by "
                         "default), registration onwards from `full_dda00bc`'s cameras: input-view PSNR up on seven "
                         "items, jitter p03 2.07x -> 1.81x, p05 3.86x -> 2.19x; F@2% once-aligned p08 0.958 -> 0.939",
    "full_consensus_d6f3bb6": "`full` with the camera search's consensus pass on (every keyframe tries the other "
                              "keyframes' orientations; off by default since): rotation error p07 10.1 -> 7.1 and p09 "
                              "3.8 -> 1.6 degrees, F@2% once-aligned p07 0.419 -> 0.382, p09 0.965 -> 0.957",
    "full_consensus_strict_0e83c49": "the consensus pass taking any candidate that scores better at all, beside "
                                     "`full_consensus_d6f3bb6` (which asks turn_margin)",
    "full_1c34f89": "`full` after a restarted whole-clip fit is kept only where it fits the keyframes better, "
                    "registration onwards from `full_dda00bc`'s cameras: every restart was kept, every figure equal",
    "full_restart_rule_p03": "p03 from the cameras where a restart did not help: the first fit kept",
    "full_seed1_consensus_d6f3bb6": "the consensus pass at the generator's seed 1, beside `full_seed1_85b18fd`: p07's "
                                    "first keyframe took a pose scoring 7% better and 10.4 degrees from the truth "
                                    "(5.6 before)",
    "camera_256": "camera search and re-pose per frame at 256 px (Sec. 4.1), no registration",
    "full_noise3": "the whole pipeline with the synthetic generator's shape noise at 3% of the object's size (the "
                   "bench's default is 1%), on the ten items, beside the next table and `true_pose_noise3`",
    "register_seq_noise3": "the chain's registration on the same ten items at the same noise and commit",
}
TRUE_POSE_NOTE = "the generator's meshes at the true poses through the true camera: the ceiling of re-posing"
# the main columns, in order; a column is shown when some item of the table has a number in it
MAIN_COLUMNS = ("mask_iou", "mask_iou_all", "psnr", "ssim", "nv_mask_iou", "nv_psnr", "fscore2_once",
                "fscore2_once_first", "fscore2_once_last", "fscore2_once_all", "chamfer_once", "rot_err_med_deg",
                "flipped_frac", "jitter", "jitter_gt", "rig_rms_err", "rig_max_err", "sec_per_frame")
# per-item bar plots: these figures for these methods, where present
PLOT_COLUMNS = ("fscore2_once", "mask_iou", "mask_iou_all", "nv_psnr")
PLOT_METHODS = ("full", "full_seq", "register", "register_seq")
STAGE_SECONDS = (("generate", "gen_sec_per_frame"), ("camera", "sec_camera_per_frame"),
                 ("register", "sec_register_per_frame"), ("texture", "sec_texture_per_frame"),
                 ("export", "sec_export_per_frame"))


def load(name: str, results: Path) -> dict | None:
    p = results / f"{name}.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


def number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def fmt(v) -> str:
    x = number(v)
    if x is None:
        return "–" if v is None else str(v)
    if 1e4 <= abs(x) < 1e9:
        return f"{x:,.0f}"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.3g}"


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |" for r in rows]
    return out


def settings_line(d: dict) -> str:
    s = d.get("settings") or {}
    keys = ("preset", "resolution", "max_frames", "device", "backend", "seed", "overrides", "generated_faces")
    shown = ", ".join(f"{k} {s[k]}" for k in keys if isinstance(s, dict) and s.get(k) is not None)
    if not isinstance(s, dict):
        shown = json.dumps(s)
    parts = [f"date {d.get('date', '?')}", f"commit {d.get('commit', '?')}", f"machine: {d.get('machine', '?')}"]
    if d.get("device"):
        parts.append(f"device {d['device']}")
    return "; ".join(parts) + (f"; settings: {shown}" if shown else "")


def columns(items: dict, wanted) -> list[str]:
    return [c for c in wanted if any(number(row.get(c)) is not None for row in items.values()
                                     if isinstance(row, dict))]


def median_row(items: dict, cols: list[str]) -> list:
    out = []
    for c in cols:
        vals = [number(r.get(c)) for r in items.values() if isinstance(r, dict)]
        vals = [v for v in vals if v is not None]
        out.append(statistics.median(vals) if vals else None)
    return out


def method_section(name: str, d: dict, note: str, plots: list[str]) -> list[str]:
    items = d.get("items") or {}
    lines = [f"## {name}", "", f"{d.get('method', name)}: {note}. Table `{name}.json`.", "",
             settings_line(d), ""]
    if d.get("note"):
        lines += [f"Note: {d['note']}", ""]
    cols = columns(items, MAIN_COLUMNS)
    if not items or not cols:
        return lines + ["(no items with the main columns)", ""]
    rows = [[item] + [items[item].get(c) for c in cols] for item in items]
    rows.append([f"**median of {len(items)}**"] + median_row(items, cols))
    lines += table(["item"] + cols, rows) + [""]
    stages = [(s, c) for s, c in STAGE_SECONDS if c in columns(items, [c])]
    if stages:
        lines += ["Seconds per frame per stage (median over items): "
                  + ", ".join(f"{s} {fmt(median_row(items, [c])[0])}" for s, c in stages) + ".", ""]
    lines += [f"![{p}](plots/{p})" for p in plots if p.startswith(f"seconds_{name}.")]
    return lines + ([""] if any(p.startswith(f"seconds_{name}.") for p in plots) else [])


def rig_section(d: dict) -> list[str]:
    lines = ["## rig_compare", "", "Linear-blend skinning fitted to a vertex animation (`--rig`): ours at several "
             "bone counts against py-dem-bones "
             f"{d.get('dem_bones', '?')}, RMS vertex error as a fraction of the bounding-box diagonal. "
             "Table `rig_compare.json`.", "",
             f"date {d.get('date', '?')}; commit {d.get('commit', '?')}; machine: {d.get('machine', '?')}; "
             f"torch {d.get('torch', '?')}; {d.get('frames', '?')} frames; default {d.get('default', '?')} bones", ""]
    for part, title in (("ground_truth", "ground-truth animations"), ("registered", "registered (our output)")):
        items = d.get(part) or {}
        counts = sorted({int(b) for it in items.values() for b in (it.get("ours") or {})})
        dem = sorted({int(b) for it in items.values() for b in (it.get("dem_bones") or {})})
        if not items:
            continue
        header = ["item"] + [f"ours {b}" for b in counts] + [f"dem-bones {b}" for b in dem]
        rows = []
        for name, it in items.items():
            rows.append([name] + [(it.get("ours") or {}).get(str(b), {}).get("rms_err") for b in counts]
                        + [(it.get("dem_bones") or {}).get(str(b), {}).get("rms_err") for b in dem])
        if len(rows) > 1:
            med = []
            for j in range(1, len(header)):
                vals = [number(r[j]) for r in rows if number(r[j]) is not None]
                med.append(statistics.median(vals) if vals else None)
            rows.append([f"**median of {len(items)}**"] + med)
        lines += [f"RMS error, {title}:", ""] + table(header, rows) + [""]
    return lines


def density_section(d: dict) -> list[str]:
    lines = ["## mesh_density", "", f"Generated meshes at several densities (faces), same run otherwise. Claim: "
             f"{d.get('claim', '?')}. Table `mesh_density.json`.", "", settings_line(d), ""]
    cols = ("generated_faces", "sec_camera_per_frame", "sec_register_per_frame", "rot_err_med_deg", "mask_iou",
            "fscore2_once")
    rows = []
    for item, runs in (d.get("items") or {}).items():
        for run, r in runs.items():
            rows.append([item, run] + [r.get(c) for c in cols])
    if rows:
        lines += table(["item", "faces_seed"] + list(cols), rows) + [""]
    summ = d.get("summary") or {}
    srows = [[item, run, s.get("camera_time_ratio"), s.get("register_time_ratio"), s.get("mask_iou_diff"),
              s.get("mask_iou_noise"), s.get("fscore2_once_diff"), s.get("fscore2_once_noise")]
             for item, runs in summ.items() for run, s in runs.items() if isinstance(s, dict)]
    if srows:
        lines += ["Against 3k faces (time ratios; differences against the two-seed noise at 3k):", ""]
        lines += table(["item", "run", "camera time ×", "register time ×", "mask_iou diff", "mask_iou noise",
                        "fscore2_once diff", "fscore2_once noise"], srows) + [""]
    return lines


def trellis_batch_section(d: dict) -> list[str]:
    rows = []
    for run in d.get("runs", []):
        for r in run.get("rows", []):
            if "sec_per_keyframe" in r:
                rows.append([run.get("device"), run.get("commit", "").split(" ")[0], run.get("attention", ""),
                             r["batch"], r["sec_per_keyframe"], r.get("slat_sec"), r.get("peak_gb"),
                             r.get("speedup_vs_batch1")])
    return ["## trellis_batch", "", d.get("what", ""), ""] + table(
        ["device", "commit", "attention over several keyframes", "batch", "s per keyframe", "structured-latent s",
         "peak GB", "x batch 1"], rows) + [""]


def joint_schedules_section(d: dict) -> list[str]:
    rows = []
    for r in sorted(d.get("rows", []), key=lambda r: r["item"]):
        jg = number(r.get("jitter_gt"))
        rows.append([r["item"], "`" + json.dumps(r["overrides"]) + "`", str(r.get("commit", "")).split(" ")[0],
                     r.get("mask_iou"), r.get("mask_iou_all"), r.get("fscore2_once"), r.get("fscore2_per_frame"),
                     r.get("fscore2_once_last"), r.get("nv_psnr"), r.get("flipped_frac"),
                     None if not jg or number(r.get("jitter")) is None else r["jitter"] / jg])
    return ["## joint_schedules", "", f"{d.get('program', '')}. {d.get('note', '')}", ""] + table(
        ["item", "overrides", "commit", "mask IoU", "mask IoU all", "F@2% once", "F@2% per frame", "F last",
         "nv_psnr", "flipped share", "jitter / ground truth's"], rows) + [""]


def gpu_schedules_section(d: dict) -> list[str]:
    lines = ["## joint_gpu_schedules", "", f"{d.get('what', '')}. Table `joint_gpu_schedules.json`.", ""]
    for run in d.get("runs", [d]):
        rows = [[r["schedule"], "`" + json.dumps(r["overrides"]) + "`", r["registration_seconds"],
                 r["parts_seconds"][1], r["parts_seconds"][2], r["fit_ms_per_step"], r["chamfer_keyframes_mean"],
                 r["mask_iou_all_mean"], r["mask_iou_all_min"]] for r in run.get("rows", [])]
        head = (f"{run.get('what', '')}. {run.get('machine')}, {run.get('preset')} preset, {run.get('backend')}, "
                f"{run.get('date')}, commit {str(run.get('commit', '')).split(' ')[0]}.")
        lines += [head, ""] + table(
            ["schedule", "overrides", "registration s", "global s", "fit s", "ms per step", "keyframe Chamfer (mean)",
             "input-view IoU, every frame (mean)", "(worst frame)"], rows) + ["", run.get("note", ""), ""]
    return lines


def structure_section(name: str, d: dict) -> list[str]:
    before, after = d.get("before") or {}, d.get("after") or {}
    lines = [f"## {name}", "", f"A refactor's check: the same run (`{before.get('method', '?')}`) before and after, "
             "figure by figure at the printed digit. Table "
             f"`{name}.json`.", "",
             f"before: commit {before.get('commit', '?')}, {before.get('date', '?')}; after: commit "
             f"{after.get('commit', '?')}, {after.get('date', '?')}; machine: {after.get('machine', '?')}", ""]
    rows = [[item, r.get("figures"), len(r.get("different") or {}), ", ".join(r.get("only before") or []) or "–",
             ", ".join(r.get("only after") or []) or "–"] for item, r in (d.get("items") or {}).items()]
    if rows:
        lines += table(["item", "figures", "different", "only before", "only after"], rows) + [""]
    return lines


def plot_quality(tables: dict[str, dict], plots: Path) -> str | None:
    """Grouped bars per item: PLOT_COLUMNS for each method of PLOT_METHODS that has results."""
    import matplotlib.pyplot as plt
    methods = [m for m in PLOT_METHODS if m in tables]
    if not methods:
        return None
    cols = [c for c in PLOT_COLUMNS if any(c in columns(tables[m].get("items") or {}, [c]) for m in methods)]
    if not cols:
        return None
    items = sorted({i for m in methods for i in (tables[m].get("items") or {})})
    fig, axes = plt.subplots(len(cols), 1, figsize=(max(8, 0.9 * len(items) + 2), 2.6 * len(cols)), squeeze=False)
    width = 0.8 / len(methods)
    for ax, c in zip(axes[:, 0], cols):
        for j, m in enumerate(methods):
            rows = tables[m].get("items") or {}
            ys = [number((rows.get(i) or {}).get(c)) for i in items]
            xs = [k + (j - (len(methods) - 1) / 2) * width for k in range(len(items))]
            ax.bar([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], width,
                   label=f"{m} ({tables[m].get('commit', '?')[:7]})")
        ax.set_ylabel(c)
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels([i.split("_")[0] for i in items])
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=len(methods), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    axes[-1, 0].set_xlabel("item")
    fig.tight_layout()
    name = "quality_per_item.png"
    fig.savefig(plots / name, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return name


def plot_seconds(method: str, d: dict, plots: Path) -> str | None:
    """Stacked bars per item: seconds per frame in each stage."""
    import matplotlib.pyplot as plt
    items = d.get("items") or {}
    stages = [(s, c) for s, c in STAGE_SECONDS if columns(items, [c])]
    if not items or not stages:
        return None
    names = list(items)
    fig, ax = plt.subplots(figsize=(max(7, 0.8 * len(names) + 2), 3.6))
    bottom = [0.0] * len(names)
    for s, c in stages:
        ys = [number(items[i].get(c)) or 0.0 for i in names]
        ax.bar(range(len(names)), ys, 0.7, bottom=bottom, label=s)
        bottom = [b + y for b, y in zip(bottom, ys)]
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([i.split("_")[0] for i in names])
    ax.set_ylabel("seconds per frame")
    ax.set_title(f"{method}: seconds per frame per stage ({(d.get('settings') or {}).get('device', '?')}, "
                 f"commit {str(d.get('commit', '?'))[:7]})", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    name = f"seconds_{method}.png"
    fig.savefig(plots / name, dpi=90, metadata={"Software": None})
    plt.close(fig)
    return name


def make_plots(tables: dict[str, dict], plots: Path) -> list[str]:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: the page is written without plots (pip install matplotlib)")
        return []
    matplotlib.use("Agg")
    plots.mkdir(parents=True, exist_ok=True)
    for old in [*plots.glob("seconds_*.png"), plots / "quality_per_item.png"]:  # a plot whose table went
        old.unlink(missing_ok=True)
    made = [plot_quality(tables, plots)]
    made += [plot_seconds(m, tables[m], plots) for m in ("full", "full_seq", "register_seq") if m in tables]
    return [p for p in made if p]


# tables summarised by a section of their own, in the page's order
SECTIONS = (("rig_compare", rig_section), ("mesh_density", density_section), ("trellis_batch", trellis_batch_section),
            ("joint_gpu_schedules", gpu_schedules_section), ("joint_schedules", joint_schedules_section))


def page(results: Path, plots_made: list[str], tables: dict[str, dict]) -> str:
    lines = ["# Benchmark results", "",
             "Generated by `python bench/results_readme.py` from the JSON tables in this folder: do not edit by "
             "hand. What each table and column measures: `docs/benchmarks.md`. Items are the bench items (rendered "
             "animated assets with ground truth); each table's median is over its items.", ""]
    if "quality_per_item.png" in plots_made:
        lines += ["![main figures per item and method](plots/quality_per_item.png)", ""]
    for name, d in tables.items():
        note = METHOD_TABLES.get(name, TRUE_POSE_NOTE if name.startswith("true_pose") else "")
        lines += method_section(name, d, note, plots_made)
    for name, fn in SECTIONS:
        d = load(name, results)
        if d is not None:
            lines += fn(d)
    # tables whose own program writes a summary page beside them: included as written
    included = ("demo_speed", "demo_speed_rerun", "demo_speed_epyc", "demo_speed_aa", "demo_speed_aa_rerun",
                "omp_spin", "per_frame_iou", "jitter_weights", "jitter_smoothing", "colourless", "batch_speed",
                "gpu_batch", "hunyuan_speed", "texture_variants", "texture_delight", "texture_shade_weight",
                "light_fit", "texture_iters", "texture_l2", "texture_demo_cpu", "texture_demo_gpu", "nv_ceiling",
                "jitter_cv", "demo_speed_cv", "flow_agreement")
    for name in included:
        md = results / f"{name}.md"
        if md.exists() and (results / f"{name}.json").exists():
            lines += [f"## {name}", "", md.read_text().strip(), ""]
    for p in sorted(results.glob("structure_*.json")):
        d = load(p.stem, results)
        if isinstance(d, dict) and "before" in d and "after" in d:
            lines += structure_section(p.stem, d)
    others = sorted(p.name for p in results.glob("*.json")
                    if p.stem not in tables and p.stem not in (*(n for n, _ in SECTIONS), *included)
                    and not p.stem.startswith("structure_"))
    if others:
        lines += ["## Other tables", "", "Not summarised here (see `docs/benchmarks.md`): "
                  + ", ".join(f"`{o}`" for o in others) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the JSON tables (default: here)")
    args = ap.parse_args(argv)
    results = args.results
    names = list(METHOD_TABLES) + sorted(p.stem for p in results.glob("true_pose*.json"))
    tables = {n: d for n in names if isinstance(d := load(n, results), dict) and isinstance(d.get("items"), dict)}
    made = make_plots(tables, results / "plots")
    out = results / "README.md"
    out.write_text(page(results, made, tables))
    print(f"wrote {out} ({len(tables)} method tables, {len(made)} plots)")


if __name__ == "__main__":
    main()
