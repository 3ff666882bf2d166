#!/usr/bin/python3
"""Issue #5, the CT acceptance test: storescu sends the LIDC chest CT (133 slices, feet
first, files not in slice order) to a real radprepd; the series completes after quiet_s, the
built-in CT rule (ct_default) runs in a supervised worker, and the version folder holds the
NIfTI image, lung/body masks, the JSON sidecar and the QC montage PNG, with the right geometry.

Checked against the DICOM headers read with pydicom (not against radprep's own numbers):
  - the image is 3-D at 1 x 1 x 1 mm (int16 with scaling), size round(n * old / new) per axis;
  - its affine maps voxel centres onto the source geometry (IPP/IOP/PixelSpacing, LPS -> RAS):
    the centre of the source's first voxel is a voxel centre of the output (< 0.01 mm), the
    axes are the source's, and each face of the field of view lies within half a source voxel
    of the source's (the resample keeps the origin, n' = round(n * old / new));
  - lung and body masks are on the same grid, the lungs lie inside the body and measure
    2-8 litres (an adult), equal to the sidecar's QC figure;
  - the sidecar lists the 7 steps with resolved parameters, a recipe hash that is the SHA-256
    of those steps (recomputed here), and the 133 source SOP Instance UIDs in slice order;
  - the QC PNG is a valid PNG (decoded with OpenCV) with real content: three views, grey
    levels spread, lung overlay in green.
Prints the measured lung volume and the end-to-end time (first byte sent -> job done).
RP_QC_COPY=PATH copies the montage there for a person to look at.
"""
import hashlib
import json
import os
import shutil
import sys
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jobs_lib as rp  # noqa: E402
import rptest  # noqa: E402 (tests/lib, on the path through jobs_lib)
STEPS = ["hu", "resample", "bodymask", "lungmask", "metal", "clip", "normalize"]


def source_geometry(files):
    """Sorted slices from the headers: (sop uids in slice order, 4x4 RAS affine of voxel
    centres (i=column, j=row, k=slice), shape (cols, rows, slices), spacing)."""
    import pydicom
    hs = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    iop = np.array([float(x) for x in hs[0].ImageOrientationPatient])
    row_dir, col_dir = iop[:3], iop[3:]  # along a row (column index grows), down a column
    normal = np.cross(row_dir, col_dir)
    hs.sort(key=lambda h: float(np.dot(normal, [float(x) for x in h.ImagePositionPatient])))
    ipp = np.array([[float(x) for x in h.ImagePositionPatient] for h in hs])
    dy, dx = (float(x) for x in hs[0].PixelSpacing)  # row spacing, column spacing
    gaps = np.diff(ipp @ normal)
    assert np.allclose(gaps, gaps[0], atol=1e-3), "uneven spacing in the reference data"
    dz = float(gaps[0])
    lps = np.eye(4)
    lps[:3, 0] = row_dir * dx
    lps[:3, 1] = col_dir * dy
    lps[:3, 2] = (ipp[-1] - ipp[0]) / (len(hs) - 1)
    lps[:3, 3] = ipp[0]
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    shape = (int(hs[0].Columns), int(hs[0].Rows), len(hs))
    return [str(h.SOPInstanceUID) for h in hs], ras, shape, (dx, dy, dz)


def fov_box(affine, shape):
    """World (RAS) min/max of the field of view: voxel centres +- half a voxel."""
    corners = np.array([[i, j, k, 1.0] for i in (-0.5, shape[0] - 0.5)
                        for j in (-0.5, shape[1] - 0.5) for k in (-0.5, shape[2] - 0.5)])
    w = (affine @ corners.T).T[:, :3]
    return w.min(axis=0), w.max(axis=0)


class CTEndToEnd(unittest.TestCase):
    def test_lidc_through_the_node(self):
        import cv2
        import nibabel as nib
        files = rptest.data_files("ct_chest_lidc0001", pattern="*.dcm", count=133)
        sops, src_aff, src_shape, src_sp = source_geometry(files)
        tmp = rp.tmpdir("rp_e2e_ct_")
        node = rp.Node(os.path.join(tmp, "n"), quiet_s=2, cheap_rule=False,
                       extra_node="job_timeout_s = 780").start()
        try:
            t0 = time.time()
            rc, ok, out = rp.storescu(node.port, files)
            t_sent = time.time()
            self.assertEqual((rc, ok), (0, 133), out[-2000:])
            import pydicom
            uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
            job = node.wait_job(uid, 1, states=("done", "dead"), timeout=800)  # < ctest's 900
            t_done = time.time()
            self.assertEqual(job["state"], "done", (job, node.log()[-3000:]))
            s = node.series(uid)
            self.assertEqual((s["instances"], s["reason"]), (133, "quiet"))
            outdir = job["output_dir"]
            self.assertTrue(outdir.endswith("/%s/v1" % uid), outdir)
            with open(os.path.join(outdir, "series.json")) as f:
                sj = json.load(f)
            self.assertEqual((sj["rule"], sj["instances"], sj["result"]), ("ct_default", 133, "ok"))
            names = sorted(os.listdir(outdir))
            images = [n for n in names if n.endswith(".nii.gz") and "_mask-" not in n]
            self.assertEqual(len(images), 1, names)
            stem = images[0][:-len(".nii.gz")]
            for need in (stem + ".json", stem + "_mask-lung.nii.gz", stem + "_mask-body.nii.gz",
                         stem + "_qc.png", "qc.json"):
                self.assertIn(need, names)

            # --- the image: 1 mm isotropic on the source's geometry, int16 on a 0.1 HU grid
            # whose scaling gives the recipe's values back (the sidecar says how)
            img = nib.load(os.path.join(outdir, images[0]))
            self.assertEqual(img.get_data_dtype(), np.int16)
            self.assertEqual(len(img.shape), 3, img.shape)
            self.assertTrue(np.allclose(img.header.get_zooms()[:3], (1, 1, 1), atol=1e-5))
            aff = img.affine
            self.assertTrue(np.allclose(img.get_qform(), aff, atol=1e-4))
            want_shape = tuple(int(np.floor(n * s + 0.5)) for n, s in zip(src_shape, src_sp))
            self.assertEqual(img.shape, want_shape)
            # same axes (unit direction of each voxel axis)
            src_dirs = src_aff[:3, :3] / np.linalg.norm(src_aff[:3, :3], axis=0)
            out_dirs = aff[:3, :3] / np.linalg.norm(aff[:3, :3], axis=0)
            self.assertTrue(np.allclose(np.abs(src_dirs.T @ out_dirs), np.eye(3), atol=1e-4),
                            (src_dirs, out_dirs))
            # the resample keeps voxel 0 of the stored array: one corner voxel centre of the
            # source (which one depends on the writer's row order) is an output voxel centre
            # with an integer index at a corner of the output grid
            kept = []
            for corner in [(i, j, k) for i in (0, src_shape[0] - 1) for j in (0, src_shape[1] - 1)
                           for k in (0, src_shape[2] - 1)]:
                idx = np.linalg.solve(aff, src_aff @ [*corner, 1])[:3]
                if np.abs(idx - np.round(idx)).max() < 0.01:
                    kept.append((corner, np.round(idx).astype(int).tolist()))
            self.assertTrue(any(all(x == 0 or x == n - 1 for x, n in zip(o, img.shape))
                                for _, o in kept), kept)
            # field of view: every face within half a source voxel of the source's
            smin, smax = fov_box(src_aff, src_shape)
            omin, omax = fov_box(aff, img.shape)
            half = np.abs(src_aff[:3, :3]).sum(axis=1) / 2  # half a source voxel per world axis
            dev = np.maximum(np.abs(omin - smin), np.abs(omax - smax))
            self.assertTrue(np.all(dev <= half + 1e-3), (omin, smin, omax, smax, half))
            print("geometry: output %s at 1 mm, source %s at %s mm; FOV face deviation "
                  "(mm, x/y/z) %s, allowed %s" % (img.shape, src_shape,
                                                  tuple(round(x, 4) for x in src_sp),
                                                  np.round(dev, 3), np.round(half, 3)))
            data = np.asarray(img.dataobj)
            self.assertAlmostEqual(float(data.min()), 0.0, places=5)  # normalize(minmax)
            self.assertAlmostEqual(float(data.max()), 1.0, places=5)

            # --- masks on the same grid, lungs inside the body, adult lung volume
            lung_img = nib.load(os.path.join(outdir, stem + "_mask-lung.nii.gz"))
            body_img = nib.load(os.path.join(outdir, stem + "_mask-body.nii.gz"))
            for m in (lung_img, body_img):
                self.assertEqual(m.shape, img.shape)
                self.assertTrue(np.allclose(m.affine, aff, atol=1e-5))
            lung = np.asarray(lung_img.dataobj) > 0
            body = np.asarray(body_img.dataobj) > 0
            voxel_ml = abs(np.linalg.det(aff[:3, :3])) / 1000.0
            lung_ml, body_ml = lung.sum() * voxel_ml, body.sum() * voxel_ml
            self.assertTrue(2000 < lung_ml < 8000, lung_ml)
            self.assertLess((lung & ~body).sum(), 0.001 * lung.sum())
            self.assertGreater(body_ml, lung_ml)
            # both lungs: voxels on each side of the body's midline (world x)
            xs = np.nonzero(lung)[0]
            mid = np.median(np.nonzero(body)[0])
            self.assertGreater(min((xs < mid).sum(), (xs > mid).sum()), 0.25 * lung.sum())

            # --- sidecar: steps with resolved params, recipe hash, source UIDs in slice order
            with open(os.path.join(outdir, stem + ".json")) as f:
                side = json.load(f)
            prov = side["Provenance"]
            recipe = prov["Recipe"]
            self.assertEqual([st["step"] for st in recipe["steps"]], STEPS)
            params = {st["step"]: st["params"] for st in recipe["steps"]}
            self.assertEqual(params["resample"]["spacing_mm"], [1, 1, 1])
            self.assertEqual(params["resample"]["interpolation"], "bspline3")
            self.assertEqual((params["clip"]["lo"], params["clip"]["hi"]), (-1200, 600))
            self.assertEqual(params["lungmask"]["threshold_hu"], -500)
            canon = json.dumps([{"step": st["step"], "params": st["params"]}
                                for st in recipe["steps"]], separators=(",", ":"))
            self.assertEqual(recipe["hash"], hashlib.sha256(canon.encode()).hexdigest())
            self.assertEqual(prov["SourceSOPInstanceUIDs"], sops)
            self.assertEqual(prov["SeriesInstanceUID"], uid)
            self.assertAlmostEqual(recipe["masks"]["lung"]["volume_ml"], lung_ml, delta=0.2)
            self.assertNotIn("PatientID", side)  # privacy default: none

            # --- QC montage: a real PNG with content
            png = os.path.join(outdir, stem + "_qc.png")
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            q = cv2.imread(png, cv2.IMREAD_COLOR)
            self.assertIsNotNone(q, "OpenCV cannot decode the QC PNG")
            h, w = q.shape[:2]
            self.assertTrue(h >= 128 and w >= 3 * 128, q.shape)
            grey = q.mean(axis=2)
            self.assertGreater(grey.std(), 20)
            self.assertGreater(len(np.unique(q.reshape(-1, 3), axis=0)), 100)
            b, g, r = (q[..., i].astype(int) for i in range(3))
            green = ((g > r + 40) & (g > b + 40)).sum()
            self.assertGreater(green, 0.005 * h * w, "no lung overlay in the montage")
            if os.environ.get("RP_QC_COPY"):
                shutil.copyfile(png, os.environ["RP_QC_COPY"])

            fin = job["finished_at"]
            print("LIDC-0001 through the node: lung %.1f ml (%.2f l), body %.1f ml; "
                  "send %.1f s, last instance -> job done %.1f s (quiet_s 2, job %.1f s), "
                  "end to end %.1f s (first byte sent -> outputs recorded)"
                  % (lung_ml, lung_ml / 1000, body_ml, t_sent - t0, fin - t_sent,
                     fin - job["started_at"], fin - t0))
            self.assertLessEqual(fin, t_done + 1)
        finally:
            node.stop()
            if os.environ.get("RP_KEEP_TMP") != "1":
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
