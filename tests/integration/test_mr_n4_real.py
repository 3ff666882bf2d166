"""N4 on the real Siemens XA30 T1 (mr_brain_siemens_xa30/5001, 128x128x96, an MPRAGE of a
uniform bottle phantom with a strong receive-coil shading): Otsu foreground, N4 with the
defaults (shrink 4, 50x50x50x50, 200 mm, 0.001), before/after coefficient of variation inside
the eroded foreground (away from partial-volume edges), and a before/after PNG montage."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import mr_util  # noqa: E402
import rptest  # noqa: E402


def main():
    folder = rptest.data_path("mr_brain_siemens_xa30", "5001_anat-T1w_acq-tfl")
    with tempfile.TemporaryDirectory(prefix="rp_mr_n4_") as tmp:
        vol, aff, ds = mr_util.load_series(folder)
        assert vol.shape == (96, 128, 128), vol.shape
        mr_util.write_input(tmp, 0, vol, aff)
        exe = mr_util.build_driver(tmp)
        out = subprocess.run([exe, "n4", tmp], check=True, capture_output=True, text=True)
        rep = json.loads(out.stdout)
        shape = vol.shape
        corr = np.fromfile(os.path.join(tmp, "corrected.raw"), np.float32).reshape(shape)
        field = np.fromfile(os.path.join(tmp, "field.raw"), np.float32).reshape(shape)
        mask = np.fromfile(os.path.join(tmp, "mask.raw"), np.uint8).reshape(shape) > 0
        inner = ndimage.binary_erosion(mask, iterations=3)
        cv = lambda a: float(a[inner].std() / a[inner].mean())  # noqa: E731
        before, after = cv(vol), cv(corr)
        f = np.exp(field[mask])
        print("real T1 %s: N4 %.3f s, foreground %d voxels (%.1f%%), lattice %s, iterations %s"
              % (ds.SeriesDescription, rep["seconds"], mask.sum(), 100 * mask.mean(),
                 rep["lattice"], rep["iterations"]))
        print("  CV inside the eroded foreground: before %.4f, after %.4f (%.0f%% lower); "
              "field range x%.2f..x%.2f" % (before, after, 100 * (1 - after / before),
                                            f.min(), f.max()))
        # a uniform object: the shading is most of the CV, N4 must remove most of it
        assert after < 0.5 * before, (before, after)
        # the mean log field is zero over the mask (geometric mean kept)
        assert abs(float(field[mask & (vol > 0)].mean())) < 1e-3
        # nothing outside the head was invented: background stays background
        assert float(np.abs(corr[~mask]).mean()) < 5 * float(np.abs(vol[~mask]).mean()) + 1
        subprocess.run([exe, "montage", tmp], check=True)
        png = os.path.join(tmp, "n4_before_after.png")
        assert os.path.getsize(png) > 1000
        keep = os.environ.get("RP_MR_KEEP")
        if keep:
            import shutil
            shutil.copy(png, keep)
    print("ok")


if __name__ == "__main__":
    main()
