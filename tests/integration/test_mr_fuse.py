"""Fusion of real series of one study (mr_brain_siemens_xa30: T1 5001 is the reference grid,
field map 9001 and oblique BOLD 7001 are resampled onto it through their affines) against
scipy.ndimage.map_coordinates (order 1, mode 'constant') computed here from the same affines.
Also checks that the channels share the reference grid in world space."""
import json
import os
import sys
import tempfile

import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import mr_util  # noqa: E402
import rptest  # noqa: E402

SERIES = ["5001_anat-T1w_acq-tfl", "9001_gre_field_mapping", "7001_func-bold_task-fa_run-1"]


def main():
    base = rptest.data_path("mr_brain_siemens_xa30")
    with tempfile.TemporaryDirectory(prefix="rp_mr_fuse_") as tmp:
        vols, affs = [], []
        for i, s in enumerate(SERIES):
            v, a, ds = mr_util.load_series(os.path.join(base, s))
            vols.append(v)
            affs.append(a)
            mr_util.write_input(tmp, i, v, a)
            print("%s: %s voxels %s, FoR %s" % (s, ds.SeriesDescription, v.shape[::-1],
                                                ds.FrameOfReferenceUID[-12:]))
        exe = mr_util.build_driver(tmp)
        r = os.system("%s fuse %s %d 0 1" % (exe, tmp, len(SERIES)))
        assert r == 0, "driver failed"
        meta = json.load(open(os.path.join(tmp, "fused.json")))
        nx, ny, nz, nc = meta["dim"]
        assert (nz, ny, nx) == vols[0].shape and nc == len(SERIES), meta["dim"]
        faff = np.array(meta["affine"])
        # every channel lives on the reference grid: same voxel centres in world space
        assert np.allclose(faff, affs[0], atol=1e-6), faff
        fused = np.fromfile(os.path.join(tmp, "fused.raw"), np.float32).reshape(nc, nz, ny, nx)
        # reference voxel centres in world space, then in each source's voxel space
        kk, jj, ii = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
        ijk1 = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)])
        world = faff @ ijk1
        for c in range(nc):
            src = np.linalg.inv(affs[c]) @ world  # (i, j, k, 1) in the source
            ref = ndimage.map_coordinates(vols[c], [src[2], src[1], src[0]], order=1,
                                          mode="constant", cval=0.0, prefilter=False)
            ref = ref.reshape(nz, ny, nx)
            got = fused[c]
            scale = float(np.abs(vols[c]).max())
            err = np.abs(got - ref)
            bad = err > 1e-3 * np.maximum(np.abs(ref), 1e-3 * scale)
            inside = int((ref != 0).sum())
            print("channel %d (%s): %d voxels with data, max |diff| %.3g (%.2g of range), "
                  "%d over 1e-3 relative" % (c, SERIES[c], inside, err.max(), err.max() / scale,
                                             int(bad.sum())))
            assert inside > 1000, "no overlap"
            if bad.any():
                w = np.argwhere(bad.ravel())[:5, 0]
                print("  mismatches at source voxel coords", src[:3, w].T, "got", got.ravel()[w], "ref", ref.ravel()[w])
            assert not bad.any(), "mismatch against map_coordinates"
        # the T1 channel is the T1 itself (identity resampling)
        assert np.allclose(fused[0], vols[0], rtol=1e-6, atol=1e-3)
        # nnU-Net layout: case_0000.nii.gz ... one file per channel, all on the T1 grid
        import nibabel as nib
        for c in range(nc):
            img = nib.load(os.path.join(tmp, "nnunet", "case_%04d.nii.gz" % c))
            assert img.shape == (nx, ny, nz), img.shape
            assert np.allclose(img.affine, affs[0], atol=1e-4), img.affine
            data = np.asarray(img.dataobj, dtype=np.float32).transpose(2, 1, 0)
            assert np.array_equal(data, fused[c])
        print("nnU-Net layout: %d channel files, sform = T1 affine" % nc)
    print("ok")


if __name__ == "__main__":
    main()
