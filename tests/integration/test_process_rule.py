#!/usr/bin/python3
"""`radprep process --rule NAME --outputs "... dicom seg"`: a batch run gives what the node's
job would, derived series and SEG included, without a daemon.

On the 3-slice CT of $RP_SHARED_DATA/seg_with_source_ct with the built-in ct_default rule:
- exit 0; NIfTI, masks and <out>/dicom/ with one derived instance per output slice + seg.dcm;
- the derived instances keep the source's study and patient, get a new series UID with
  DERIVED\\SECONDARY, and dciodvfy reports no error on them or on the SEG;
- an unknown rule or output word is a usage error (exit 2) naming it.
"""
import glob
import os
import subprocess
import sys
import unittest

import nibabel as nib
import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

CT = rptest.data_path("seg_with_source_ct", "ct_3slice")


def run(*args):
    return rptest.run_radprep(*args, timeout=300, stdin=subprocess.DEVNULL)


class ProcessRule(unittest.TestCase):
    def setUp(self):
        self.tmp = rptest.tempdir("rp_process_rule")

    def test_rule_with_dicom_and_seg(self):
        out = os.path.join(self.tmp, "out")
        p = run("process", CT, "--out", out, "--rule", "ct_default",
                "--outputs", "nifti json dicom seg")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        niis = [f for f in os.listdir(out) if f.endswith(".nii.gz") and "_mask-" not in f]
        self.assertEqual(len(niis), 1, os.listdir(out))
        nz = nib.load(os.path.join(out, niis[0])).shape[2]
        masks = [f for f in os.listdir(out) if "_mask-lung" in f or "_mask-body" in f]
        self.assertEqual(len(masks), 2, os.listdir(out))

        src = pydicom.dcmread(sorted(glob.glob(os.path.join(CT, "*")))[0],
                              stop_before_pixels=True)
        ims = sorted(glob.glob(os.path.join(out, "dicom", "IM*.dcm")))
        self.assertEqual(len(ims), nz)
        series = set()
        for f in ims:
            d = pydicom.dcmread(f, stop_before_pixels=True)
            self.assertEqual(d.StudyInstanceUID, src.StudyInstanceUID)
            self.assertEqual(d.PatientID, src.PatientID)
            self.assertNotEqual(d.SeriesInstanceUID, src.SeriesInstanceUID)
            self.assertEqual(list(d.ImageType)[:2], ["DERIVED", "SECONDARY"])
            self.assertIn("ct_default", d.SeriesDescription)
            series.add(d.SeriesInstanceUID)
        self.assertEqual(len(series), 1)
        seg = pydicom.dcmread(os.path.join(out, "dicom", "seg.dcm"), stop_before_pixels=True)
        self.assertEqual(seg.Modality, "SEG")
        self.assertEqual(seg.StudyInstanceUID, src.StudyInstanceUID)
        for f in ims[:2] + [os.path.join(out, "dicom", "seg.dcm")]:
            v = subprocess.run(["dciodvfy", f], capture_output=True, text=True, timeout=120)
            errors = [ln for ln in (v.stdout + v.stderr).splitlines() if ln.startswith("Error")]
            self.assertEqual(errors, [], f)

    def test_bad_rule_and_outputs(self):
        out = os.path.join(self.tmp, "out")
        p = run("process", CT, "--out", out, "--rule", "no_such_rule")
        self.assertEqual(p.returncode, 2)
        self.assertIn("no_such_rule", p.stderr)
        p = run("process", CT, "--out", out, "--outputs", "dicom sge")
        self.assertEqual(p.returncode, 2)
        self.assertIn("'sge'", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "dicom")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
