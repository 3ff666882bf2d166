"""The MR steps inside the real runner: `radprep process` on the XA30 T1 folder with the recipe
"foreground n4(field=yes)" writes the corrected volume, the foreground mask and the bias field;
the field times the output gives back the input, and the shading is gone (CV inside the eroded
mask falls by more than half). An MR recipe with a bad n4 argument is refused before any work."""
import json
import os
import sys
import tempfile

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402


def run(args):
    return rptest.run_radprep(*args, timeout=300)


def main():
    src = rptest.data_path("mr_brain_siemens_xa30", "5001_anat-T1w_acq-tfl")
    with tempfile.TemporaryDirectory(prefix="rp_mr_proc_") as tmp:
        raw = os.path.join(tmp, "raw")
        out = os.path.join(tmp, "out")
        r = run(["process", src, "--out", raw])
        assert r.returncode == 0, r.stderr[-2000:]
        r = run(["process", src, "--out", out, "--recipe", "foreground n4(field=yes)"])
        assert r.returncode == 0, r.stderr[-2000:]
        stem = "5001_anat-T1w_acq-tfl"
        names = sorted(os.listdir(out))
        print("outputs:", names)
        before = nib.load(os.path.join(raw, stem + ".nii.gz")).get_fdata()
        after = nib.load(os.path.join(out, stem + ".nii.gz")).get_fdata()
        mask = nib.load(os.path.join(out, stem + "_mask-foreground.nii.gz")).get_fdata() > 0
        field = nib.load(os.path.join(out, stem + "_n4field.nii.gz")).get_fdata()
        assert before.shape == after.shape == field.shape == mask.shape
        # input = corrected * field (float32 round-off only)
        m = mask & (before > 0)
        rel = np.abs(after[m] * field[m] - before[m]) / before[m]
        assert rel.max() < 1e-3, rel.max()
        inner = ndimage.binary_erosion(mask, iterations=3)
        cv_b = before[inner].std() / before[inner].mean()
        cv_a = after[inner].std() / after[inner].mean()
        print("radprep process foreground n4: CV %.4f -> %.4f, field x%.2f..x%.2f"
              % (cv_b, cv_a, field[mask].min(), field[mask].max()))
        assert cv_a < 0.5 * cv_b
        side = json.load(open(os.path.join(out, stem + ".json")))
        assert "n4" in json.dumps(side), "the sidecar does not name the n4 step"
        # a bad argument is a configuration error with the usage, and nothing is written
        bad = os.path.join(tmp, "bad")
        r = run(["process", src, "--out", bad, "--recipe", "foreground n4(shrink=0)"])
        assert r.returncode != 0
        assert "n4" in (r.stderr + r.stdout), r.stderr
        assert not os.path.exists(os.path.join(bad, stem + ".nii.gz"))
    print("ok")


if __name__ == "__main__":
    main()
