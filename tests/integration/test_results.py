#!/usr/bin/python3
"""`radprep process --outputs "... overlay sr"`: results every PACS can show, on real data.

From $RP_SHARED_DATA: the LIDC chest CT (recipe "hu lungmask"), the gantry-tilted head CT
("hu bodymask"), the Siemens T1w MR ("headmask") and a DX chest radiograph ("normalize(minmax)",
no mask: an overlay without contours and a report with the assembly findings only).
- dciodvfy reports no Error on any overlay, SR (and SEG) written;
- dsrdump renders each SR; the lung volume it reports equals the lung mask's voxel count x
  voxel volume (from the NIfTI mask) within 0.1 %;
- the overlay is a multi-frame true colour SC in the source study, Burned In Annotation YES,
  one frame per source slice, Source Image Sequence = the source instances;
- contour pixels: every pixel of the lung colour (outside the legend) lies on the lung mask's
  boundary in the source geometry, and the boundary is drawn (>= 99 % of its voxels);
- a contact sheet of a few frames is kept: $RP_BUILD_DIR/test-artifacts/results_contact_sheet.png.
"""
import os
import re
import struct
import subprocess
import sys
import unittest
import zlib

import nibabel as nib
import numpy as np
import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

LUNG_RGB = (0, 255, 0)  # rp_overlay_colour(0)
CAPTION_RGB = (255, 220, 0)
MF_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"


def run(*args):
    return rptest.run_radprep(*args, timeout=600, stdin=subprocess.DEVNULL)


def dciodvfy_errors(path):
    d = subprocess.run(["dciodvfy", path], capture_output=True, text=True)
    return [l for l in (d.stdout + d.stderr).splitlines() if "Error" in l]


def png_write(path, rgb):
    """Minimal PNG writer (8-bit RGB); no imaging library is installed."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(t, data):
        c = struct.pack(">I", len(data)) + t + data
        return c + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def sr_volumes(path):
    """Volume (ml) per tracking identifier, from dsrdump's rendering."""
    p = subprocess.run(["dsrdump", path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    vols, cur = {}, None
    for line in p.stdout.splitlines():
        m = re.search(r'"Tracking Identifier"\)="([^"]+)"', line)
        if m:
            cur = m.group(1)
        m = re.search(r'NUM:\(,,"Volume"\)="([0-9.eE+-]+)" \(ml,', line)
        if m and cur:
            vols[cur] = float(m.group(1))
    return p.stdout, vols


class Results(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = rptest.tempdir("rp_results")
        cls.art = os.path.join(os.environ.get("RP_BUILD_DIR", cls.tmp), "test-artifacts")
        os.makedirs(cls.art, exist_ok=True)

    def process(self, name, src, recipe, outputs="nifti seg overlay sr", extra=()):
        out = os.path.join(self.tmp, name)
        p = run("process", src, "--out", out, "--recipe", recipe, "--outputs", outputs, *extra)
        self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-3000:])
        return out

    def check_valid(self, out, want=("overlay.dcm", "sr.dcm")):
        files = sorted(os.listdir(os.path.join(out, "dicom")))
        for w in want:
            self.assertIn(w, files)
        for f in files:
            errs = dciodvfy_errors(os.path.join(out, "dicom", f))
            self.assertEqual(errs, [], "%s: dciodvfy errors" % f)
        print("%s: dciodvfy clean on %s" % (os.path.basename(out), " ".join(files)))

    def test_ct_lung(self):
        src_dir = rptest.data_path("ct_chest_lidc0001")
        _, src, _, _ = rptest.load_series(src_dir)
        out = self.process("ct", src_dir, "hu lungmask")
        self.check_valid(out, ("overlay.dcm", "sr.dcm", "seg.dcm"))
        mask_path = [f for f in os.listdir(out) if f.endswith("_mask-lung.nii.gz")][0]
        mimg = nib.load(os.path.join(out, mask_path))
        mask = np.asarray(mimg.dataobj) > 0
        vox_ml = abs(np.linalg.det(mimg.affine[:3, :3])) / 1000.0
        want_ml = mask.sum() * vox_ml

        text, vols = sr_volumes(os.path.join(out, "dicom", "sr.dcm"))
        self.assertIn("lung mask", vols, text[:3000])
        err = abs(vols["lung mask"] - want_ml) / want_ml
        print("lung volume: SR %.3f ml, mask %d voxels x %.6f ml = %.3f ml (rel err %.2e)"
              % (vols["lung mask"], mask.sum(), vox_ml, want_ml, err))
        self.assertLess(err, 1e-3)
        self.assertIn("Hounsfield unit", text)
        self.assertIn("Standard Deviation", text)
        self.assertIn('"Count")="', text)
        self.assertIn("Referenced Segment", text)

        ov = pydicom.dcmread(os.path.join(out, "dicom", "overlay.dcm"))
        s0 = src[0]
        self.assertEqual(ov.SOPClassUID, MF_TRUE_COLOR_SC)
        self.assertEqual(ov.StudyInstanceUID, s0.StudyInstanceUID)
        self.assertEqual(ov.BurnedInAnnotation, "YES")
        self.assertIn("LUNG MASK overlay [radprep:", ov.SeriesDescription)
        self.assertEqual(int(ov.NumberOfFrames), len(src))
        self.assertEqual({i.ReferencedSOPInstanceUID for i in ov.SourceImageSequence},
                         {d.SOPInstanceUID for d in src})
        frames = ov.pixel_array  # (frames, rows, cols, 3)
        nx, ny, nz = mask.shape
        self.assertEqual(frames.shape, (nz, ny, nx, 3))

        # boundary of the mask in the source geometry: frame k = mask slice k; rows and
        # columns in the source's own pixel layout (its Image Orientation), which may run
        # against the assembled grid's j / i
        m = np.transpose(mask, (2, 1, 0))  # (k, j, i)
        lps = mimg.affine[:3, :3] * np.array([[-1], [-1], [1]])
        iop = np.array([float(x) for x in s0.ImageOrientationPatient])
        if np.dot(lps[:, 0], iop[:3]) < 0:
            m = m[:, :, ::-1]
        if np.dot(lps[:, 1], iop[3:]) < 0:
            m = m[:, ::-1, :]
        print("source layout flips: columns %s, rows %s" % (np.dot(lps[:, 0], iop[:3]) < 0,
                                                            np.dot(lps[:, 1], iop[3:]) < 0))
        pad = np.pad(m, ((0, 0), (1, 1), (1, 1)), constant_values=False)
        inner = (pad[:, :-2, 1:-1] & pad[:, 2:, 1:-1] & pad[:, 1:-1, :-2] & pad[:, 1:-1, 2:])
        boundary = m & ~inner
        green = np.all(frames == np.array(LUNG_RGB, np.uint8), axis=-1)
        caption = np.all(frames == np.array(CAPTION_RGB, np.uint8), axis=-1)
        self.assertGreater(caption[:, ny - 10 * max(1, nx // 256):, :].sum(), 100,
                           "the default caption (NOT FOR DIAGNOSIS) is burned in")
        legend = np.zeros_like(green)
        sc = max(1, nx // 256)
        legend[:, : 12 * sc, : 60 * sc] = True  # swatch + "LUNG"
        legend[:, ny - 10 * sc:, :] = True     # caption
        g = green & ~legend
        on = (g & boundary).sum()
        print("contour pixels: %d green, %d on the mask boundary, boundary voxels %d"
              % (g.sum(), on, (boundary & ~legend).sum()))
        self.assertGreater(g.sum(), 1000)
        self.assertEqual(on, g.sum(), "green pixels off the mask boundary")
        self.assertGreater(on / max(1, (boundary & ~legend).sum()), 0.99)

        # contact sheet: 4 frames through the lungs
        ks = np.nonzero(m.any(axis=(1, 2)))[0]
        pick = [ks[int(q * (len(ks) - 1))] for q in (0.2, 0.4, 0.6, 0.8)]
        sheet = np.concatenate([frames[k] for k in pick], axis=1)
        path = os.path.join(self.art, "results_contact_sheet.png")
        png_write(path, np.ascontiguousarray(sheet[::2, ::2]))
        print("contact sheet (frames %s): %s" % (pick, path))

    def test_ct_tilted_findings(self):
        out = self.process("tilt", rptest.data_path("ct_head_gantry_tilt_uneven_ge"),
                           "hu bodymask", "overlay sr")
        self.check_valid(out, ("overlay.dcm", "sr.dcm", "seg.dcm"))
        text, vols = sr_volumes(os.path.join(out, "dicom", "sr.dcm"))
        self.assertIn("body mask", vols)
        self.assertIn("Gantry tilt", text)
        self.assertIn("Uneven slice spacing", text)
        self.assertIn("Pixel padding", text)

    def test_mr_head(self):
        out = self.process("mr", rptest.data_path("mr_brain_siemens_xa30",
                                                  "5001_anat-T1w_acq-tfl"), "headmask")
        self.check_valid(out, ("overlay.dcm", "sr.dcm", "seg.dcm"))
        text, vols = sr_volumes(os.path.join(out, "dicom", "sr.dcm"))
        self.assertIn("head mask", vols)
        self.assertGreater(vols["head mask"], 500)  # an adult head is litres, not millilitres
        self.assertIn("MR signal intensity", text)

    def test_xray_single_frame(self):
        out = self.process("xray", rptest.data_path("xray", "dx_chest_nih_sc_mono2_8bit.dcm"),
                           "normalize(minmax)", "overlay sr", ("--overlay-caption", ""))
        self.check_valid(out)
        text, vols = sr_volumes(os.path.join(out, "dicom", "sr.dcm"))
        self.assertEqual(vols, {})
        self.assertIn("Qualitative Evaluations", text)
        self.assertIn("Pixel Spacing", text)  # the assembly said: no Pixel Spacing, 1 mm assumed
        ov = pydicom.dcmread(os.path.join(out, "dicom", "overlay.dcm"))
        self.assertEqual(int(ov.NumberOfFrames), 1)
        self.assertEqual(ov.SeriesDescription[:15], "NO MASK overlay")
        px = ov.pixel_array.reshape(-1, 3)
        self.assertEqual(int(np.all(px == np.array(CAPTION_RGB, np.uint8), axis=-1).sum()), 0,
                         "--overlay-caption '' burns no caption")

    def test_unknown_output_word(self):
        p = run("process", rptest.data_path("xray", "dx_chest_nih_sc_mono2_8bit.dcm"), "--out",
                os.path.join(self.tmp, "bad"), "--recipe", "hu", "--outputs", "overlay srx")
        self.assertEqual(p.returncode, 2)
        self.assertIn("srx", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
