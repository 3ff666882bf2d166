#!/usr/bin/python3
"""Real scanner series through the whole node with the built-in rules: storescu → durable
store → completion → supervised worker → pipeline (the default CT and MR recipes) → a
version folder of AI-ready outputs, every file recorded with its checksum.

- CT head with gantry tilt and uneven spacing (28 files, GE) and a brain MR field map
  (33 files, Siemens XA30) sent in one association each; both complete after quiet and
  their jobs finish `done`;
- each v1 folder holds series.json (the 28/33 instances taken, rule ct_default/mr_default),
  qc.json and at least one NIfTI with its JSON sidecar; nibabel reads the NIfTI as 3-D
  float32 or, for CT, int16 with scaling (the recipes normalise) with a plausible shape;
- the outputs table lists exactly the files in the folder, with their sha256.
"""
import hashlib
import json
import os
import re
import shutil
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_lib as rp  # noqa: E402
import rptest  # noqa: E402 (tests/lib, on the path through jobs_lib)
SETS = {
    "ct": ("ct_head_gantry_tilt_uneven_ge", "ct_default", 28),
    "mr": ("mr_brain_siemens_xa30/9001_gre_field_mapping", "mr_default", 33),
}


class RealDataJobsTest(unittest.TestCase):
    def test_real_series_end_to_end(self):
        import nibabel as nib
        import pydicom
        tmp = rp.tmpdir("rp_jobs_real_")
        node = rp.Node(os.path.join(tmp, "n"), quiet_s=2, cheap_rule=False,
                       extra_node="job_timeout_s = 600").start()
        try:
            uids = {}
            for key, (folder, _, n) in SETS.items():
                d = rptest.data_path(folder)
                files = sorted(os.path.join(d, f) for f in os.listdir(d))
                self.assertEqual(len(files), n, d)
                uids[key] = str(pydicom.dcmread(files[0], stop_before_pixels=True)
                                .SeriesInstanceUID)
                rc, ok, out = rp.storescu(node.port, files)
                self.assertEqual((rc, ok), (0, n), out[-2000:])
            for key, (folder, rule, n) in SETS.items():
                job = node.wait_job(uids[key], 1, states=("done", "dead"), timeout=600)
                self.assertEqual(job["state"], "done", (key, job, node.log()[-3000:]))
                out = job["output_dir"]
                self.assertTrue(out.endswith(f"/{uids[key]}/v1"), out)
                with open(os.path.join(out, "series.json")) as f:
                    manifest = json.load(f)
                self.assertEqual((manifest["instances"], manifest["rule"]), (n, rule))
                self.assertTrue(os.path.exists(os.path.join(out, "qc.json")))
                niis = [f for f in os.listdir(out) if f.endswith(".nii.gz")
                        and "_mask-" not in f]
                self.assertTrue(niis, os.listdir(out))
                for f in niis:
                    self.assertTrue(os.path.exists(os.path.join(out, f[:-7] + ".json")), f)
                    img = nib.load(os.path.join(out, f))
                    shape = img.shape
                    self.assertGreaterEqual(len(shape), 3, (f, shape))
                    self.assertTrue(all(s > 1 for s in shape[:3]), (f, shape))
                    # CT: HU-linear values stored as int16 with scaling; MR stays float32
                    self.assertIn(str(img.get_data_dtype()), ("float32", "int16"), f)
                # outputs recorded = files on disk, with their checksums
                recorded = {p: sha for kind, p, sha in node.outputs(job["id"])}
                on_disk = set()
                for root, _, names in os.walk(out):
                    on_disk |= {os.path.join(root, x) for x in names}
                self.assertEqual(set(recorded), on_disk)
                for p, sha in recorded.items():
                    with open(p, "rb") as f:
                        self.assertEqual(hashlib.sha256(f.read()).hexdigest(), sha, p)
        finally:
            node.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_radiograph_default_rule(self):
        """A chest radiograph through the built-in X-ray rule: it completes on the X-ray
        quiet period (5 s, not the CT/MR 30 s) and gives the training PNG (1024x1024, 8-bit,
        bone bright: the spine column is brighter than the lung fields) beside the NIfTI."""
        import cv2
        import pydicom
        tmp = rp.tmpdir("rp_jobs_xr_")
        node = rp.Node(os.path.join(tmp, "n"), quiet_s=30, cheap_rule=False).start()
        try:
            f = rptest.data_path("xray", "dx_chest_nih_sc_mono2_8bit.dcm")
            uid = str(pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID)
            rc, ok, out = rp.storescu(node.port, [f])
            self.assertEqual((rc, ok), (0, 1), out[-2000:])
            job = node.wait_job(uid, 1, states=("done", "dead"), timeout=120)
            self.assertEqual(job["state"], "done", (job, node.log()[-3000:]))
            m = re.search(r"series complete series=" + re.escape(uid) + r" .*reason=\"quiet_s=(\d+)",
                          node.log())
            self.assertIsNotNone(m, node.log()[-3000:])
            self.assertEqual(int(m.group(1)), 5)
            with open(os.path.join(job["output_dir"], "series.json")) as fh:
                self.assertEqual(json.load(fh)["rule"], "xr_default")
            pngs = [x for x in os.listdir(job["output_dir"])
                    if x.endswith(".png") and not x.endswith("_qc.png")]
            self.assertEqual(len(pngs), 1, os.listdir(job["output_dir"]))
            img = cv2.imread(os.path.join(job["output_dir"], pngs[0]), cv2.IMREAD_UNCHANGED)
            self.assertEqual((img.shape, str(img.dtype)), ((1024, 1024), "uint8"))
            spine = img[300:700, 490:534].mean()
            lungs = (img[300:700, 250:350].mean() + img[300:700, 674:774].mean()) / 2
            self.assertGreater(spine, lungs + 20, (spine, lungs))
        finally:
            node.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
