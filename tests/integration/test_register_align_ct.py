"""Midline alignment of a real head CT (ct_head_gantry_tilt_uneven_ge: GE HiSpeed, gantry tilt
18.5 degrees and uneven slice spacing, resampled onto a regular grid by assembly) with the step
`align(midline)`:
  - the estimate is reliable and its angle is reported in the sidecar (the head is turned about
    11 degrees in the axial plane);
  - independently of radprep's estimate, the aligned volume is more mirror-symmetric about the
    grid's centre plane than the input, and most symmetric with no extra turn or shift (numpy);
  - the QC picture shows the estimated midline (red) before and a vertical green line at the
    centre after;
  - an impossible demand (min_score=0.99) is refused with the reason; align(other) is a parse
    error; `unreliable=keep` passes the volume through unchanged with the reason in QC.
"""
import glob
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import skimage.io
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

CT = os.path.join(rptest.SHARED_DATA, "ct_head_gantry_tilt_uneven_ge")


def run(args):
    return subprocess.run([rptest.radprep_bin()] + args, capture_output=True, text=True,
                          timeout=900)


def png_rgb(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return skimage.io.imread(path)


def mirror_corr(v, head, shift=0.0, turn=0.0):
    """Correlation of v with its mirror image about the plane x = centre (voxel axis 0), the
    mirror optionally turned (deg, in the axial plane) and shifted (voxels)."""
    m = v[::-1, :, :]
    if turn:
        m = ndimage.rotate(m, turn, axes=(0, 1), reshape=False, order=1, mode="nearest")
    if shift:
        m = ndimage.shift(m, (shift, 0, 0), order=1, mode="nearest")
    return float(np.corrcoef(v[head], m[head])[0, 1])


def main():
    assert os.path.isdir(CT), "shared data missing: " + CT
    tmp = rptest.tempdir("rp_align")
    out = os.path.join(tmp, "aligned")
    r = run(["process", CT, "--recipe", "align(midline)", "--out", out])
    assert r.returncode == 0, r.stderr
    side = json.load(open(glob.glob(os.path.join(out, "*_CT.json"))[0]))
    step = side["Provenance"]["Recipe"]["steps"][0]
    mid = step["midline"]
    print("head CT midline: yaw %.2f deg, roll %.2f deg, offset %.1f mm, symmetry %.3f" % (
        mid["yaw_deg"], mid["roll_deg"], mid["offset_mm"], mid["symmetry"]))
    assert mid["reliable"] is True
    assert 5 < abs(mid["yaw_deg"]) < 20, mid
    png = os.path.join(out, mid["qc"])
    # the input as plain conversion (same assembly), in HU
    plain = os.path.join(tmp, "plain")
    r = run(["process", CT, "--out", plain])
    assert r.returncode == 0, r.stderr
    src = nib.load(glob.glob(os.path.join(plain, "*.nii.gz"))[0])
    aligned = nib.load(glob.glob(os.path.join(out, "*.nii.gz"))[0])
    assert src.shape[:3] == aligned.shape[:3]
    assert np.allclose(src.affine, aligned.affine, atol=1e-3)
    # every other row and slice (all columns: the mirror is about the centre column)
    va = src.get_fdata().reshape(src.shape[:3])[:, ::2, ::2]
    vb = aligned.get_fdata().reshape(src.shape[:3])[:, ::2, ::2]
    a, b = np.clip(va, -20, 120), np.clip(vb, -20, 120)
    # the head (HU > -200) where its mirror image is head too
    head = va > -200
    head &= head[::-1, :, :]
    head_b = vb > -200
    head_b &= head_b[::-1, :, :]
    before, after = mirror_corr(a, head), mirror_corr(b, head_b)
    print("mirror correlation about the grid centre plane: %.3f before, %.3f after" %
          (before, after))
    assert after > 0.8 and after > before + 0.1, (before, after)
    # most symmetric without any extra turn or shift (numpy/scipy, not radprep's estimate)
    best = max(((mirror_corr(b, head_b, s, t), s, t) for s in (-2, 0, 2) for t in (-2, 0, 2)))
    print("best mirror of the aligned volume: shift %d voxels, turn %d deg" % (best[1], best[2]))
    assert best[1] == 0 and best[2] == 0, best
    # QC picture: a vertical green line after, a slanted red line before
    img = png_rgb(png)
    green = np.argwhere((img[..., 1] == 255) & (img[..., 0] == 40))
    red = np.argwhere((img[..., 0] == 255) & (img[..., 1] == 40))
    assert len(green) > 100 and len(red) > 100
    gx = green[:, 1]
    assert gx.max() - gx.min() <= 1, "green line not vertical"
    rx = red[:, 1]
    assert rx.max() - rx.min() > 20, "red line should follow the turned midline"
    print("QC picture %s: green line at x=%d (vertical), red line spans %d columns" %
          (os.path.basename(png), gx.min(), rx.max() - rx.min()))
    # refusals
    r = run(["process", CT, "--recipe", "align(midline, min_score=0.99)", "--out",
             os.path.join(tmp, "strict")])
    assert r.returncode != 0 and "not symmetric enough" in r.stderr, r.stderr
    r = run(["process", CT, "--recipe", "align(horizon)", "--out", os.path.join(tmp, "bad")])
    assert r.returncode != 0 and "only align(midline)" in r.stderr, r.stderr
    keep = os.path.join(tmp, "keep")
    r = run(["process", CT, "--recipe", "align(midline, min_score=0.99, unreliable=keep)",
             "--out", keep])
    assert r.returncode == 0, r.stderr
    kept = nib.load(glob.glob(os.path.join(keep, "*.nii.gz"))[0]).get_fdata()
    assert np.allclose(kept.reshape(src.shape[:3]), src.get_fdata().reshape(src.shape[:3]),
                       atol=0.01)
    ks = json.load(open(glob.glob(os.path.join(keep, "*_CT.json"))[0]))
    km = ks["Provenance"]["Recipe"]["steps"][0]["midline"]
    assert km["reliable"] is False and "not symmetric enough" in km["reason"], km
    print("ok")


if __name__ == "__main__":
    main()
