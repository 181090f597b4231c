"""The weight-free render-versus-frame scorer (Sec. 4.1, Appendix A): batched, lowest at the match, the mask term
weighted 0.1."""

import torch

from v2m4.scoring import SilhouetteColourScorer, composite


def _disc(h, w, cx, cy, r):
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2) < r * r).float()


def _frame(mask):
    # left half red, right half blue: the colour layout tells a view from its mirror image
    rgb = torch.zeros(*mask.shape, 3)
    rgb[:, : mask.shape[1] // 2, 0] = 1
    rgb[:, mask.shape[1] // 2:, 2] = 1
    return torch.cat([rgb, mask[..., None]], -1)


def test_match_scores_lowest_and_batch_equals_singles():
    m = _disc(32, 32, 16, 16, 9)
    f = _frame(m)
    shifted = _disc(32, 32, 20, 16, 9)
    mirrored = f[:, :, :3].flip(1)
    rgb = torch.stack([f[..., :3], f[..., :3], mirrored])
    mask = torch.stack([m, shifted, m])
    sc = SilhouetteColourScorer()
    s = sc(rgb, mask, f)
    assert s.shape == (3,)
    assert float(s[0]) < 1e-6 and float(s[1]) > 0 and float(s[2]) > 0
    singles = torch.cat([sc(rgb[i:i + 1], mask[i:i + 1], f) for i in range(3)])
    torch.testing.assert_close(s, singles)


def test_mask_term_is_the_weighted_mask_mse():
    # same colours everywhere (the frame's colour on grey equals the render's), so only the mask MSE differs:
    # composite grey where both are empty, and the render's rgb equals the background grey where it is not the frame
    m = _disc(16, 16, 8, 8, 5)
    f = torch.cat([torch.full((16, 16, 3), 0.5), m[..., None]], -1)
    other = _disc(16, 16, 8, 8, 3)
    rgb = torch.full((1, 16, 16, 3), 0.5)
    sc = SilhouetteColourScorer(mask_weight=0.1)  # the paper's weight (Appendix A)
    s = sc(rgb, other[None], f)
    expected = 0.1 * float(((other - m) ** 2).mean())  # grey on grey: the appearance terms are zero
    torch.testing.assert_close(s, torch.tensor([expected]))
    torch.testing.assert_close(composite(rgb, other[None]), rgb)
