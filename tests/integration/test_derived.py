#!/usr/bin/python3
"""Derived series + DICOM SEG from real CT series, checked by dciodvfy and pydicom.

For each case the volume is built from the source series with pydicom (HU, x = column,
y = row, RAS affine), optionally processed (window + normalise, 2x in-plane downsample), and
handed to the C writers through the driver mode of the unit test binary
(`pipeline_test_derived --spec`, found with rptest.unit_test_bin). Then:
  - dciodvfy reports no "Error" line on any derived instance nor on the SEG;
  - Patient / General Study attributes equal the source's (empty ones too, absent stay absent);
  - per slice: Image Position/Orientation and Pixel Spacing match the affine (LPS);
  - stored * slope + intercept reproduces the volume within slope/2;
  - the IOD is CT Image Storage for HU-preserving output, Secondary Capture otherwise;
  - the SEG references the source series, frames sit at the right positions and decode to
    the masks.
"""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

UID_ROOT = "1.2.826.0.1.3680043.10.1338"

# Type 2: written empty when the source lacks them (valid object, nothing invented)
TYPE2 = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber"}
PATIENT_STUDY_TAGS = [
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime",
    "PatientSex", "OtherPatientNames", "EthnicGroup", "PatientComments", "PatientIdentityRemoved",
    "DeidentificationMethod", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "PatientAge", "PatientSize",
    "PatientWeight", "AdditionalPatientHistory",
]

def run_case(name, folder, tmp, mode):
    files, src, vol, ras = rptest.load_series(folder, "*.dcm")
    out = os.path.join(tmp, name)
    os.makedirs(out)
    if mode == "physical":
        v = vol.copy()
        window = [-600.0, 1600.0]
        physical = 1
    else:
        # processed: 2x in-plane mean downsample (new grid), lung window, min-max to [0,1]
        z, y, x = vol.shape
        v = vol[:, : y // 2 * 2, : x // 2 * 2].reshape(z, y // 2, 2, x // 2, 2).mean(axis=(2, 4))
        v = (np.clip(v, -1000, 400) + 1000) / 1400.0
        ras = ras.copy()
        shift = ras[:3, 0] * 0.5 + ras[:3, 1] * 0.5   # centre of the 2x2 block
        ras[:3, 0] *= 2
        ras[:3, 1] *= 2
        ras[:3, 3] += shift
        window = [0.5, 1.0]
        physical = 0
    v = v.astype("<f4")
    v.tofile(os.path.join(out, "vol.f32"))
    masks = []
    hu = vol if mode == "physical" else None
    if hu is not None:
        for mname, m in [("lung", (hu < -400) & (hu > -1000)), ("body", hu > -500),
                         ("metal", hu > 2500)]:
            p = os.path.join(out, mname + ".u8")
            m.astype(np.uint8).tofile(p)
            masks.append({"name": mname, "raw": p, "data": m})
    spec = {
        "dim": [v.shape[2], v.shape[1], v.shape[0]], "affine": ras.tolist(), "src_files": files,
        "raw": os.path.join(out, "vol.f32"), "out_dir": os.path.join(out, "series"),
        "uid_root": UID_ROOT, "description": "test %s [radprep: lung window]" % name,
        "recipe": "hu clip(-1000,400) resample(1,1,1) window(lung)", "physical": physical,
        "window": window, "masks": [{"name": m["name"], "raw": m["raw"]} for m in masks],
        "seg_out": os.path.join(out, "seg.dcm"),
    }
    with open(os.path.join(out, "spec.json"), "w") as f:
        json.dump(spec, f)
    t0 = time.time()
    r = subprocess.run([rptest.unit_test_bin("test_derived"), "--spec",
                        os.path.join(out, "spec.json")], capture_output=True, text=True)
    dt = time.time() - t0
    check(r.returncode == 0, "%s: driver failed: %s" % (name, r.stderr[-2000:]))
    if r.returncode:
        return
    paths = r.stdout.split()
    series = [p for p in paths if "/series/" in p]
    print("%s: wrote %d instances%s in %.2f s" % (name, len(series), " + SEG" if masks else "", dt))
    check(len(series) == v.shape[0], "%s: %d files for %d slices" % (name, len(series), v.shape[0]))

    # dciodvfy: no Error on any derived instance
    n_err = 0
    for p in paths:
        d = subprocess.run(["dciodvfy", p], capture_output=True, text=True)
        errs = [l for l in (d.stdout + d.stderr).splitlines() if "Error" in l]
        # Errors the source itself already has are not ours to fix, but we must not add any.
        if errs:
            n_err += 1
            print("dciodvfy", p, *errs, sep="\n  ")
    check(n_err == 0, "%s: dciodvfy reported errors in %d files" % (name, n_err))
    print("%s: dciodvfy: %d files, %d with errors" % (name, len(paths), n_err))

    s0 = src[0]
    lps = ras.copy()
    lps[0, :] *= -1
    lps[1, :] *= -1
    series_uids = set()
    for k, p in enumerate(series):
        d = pydicom.dcmread(p)
        series_uids.add(d.SeriesInstanceUID)
        for t in PATIENT_STUDY_TAGS:
            if t in s0:
                check(t in d and d[t].value == s0[t].value,
                      "%s: %s differs: %r vs %r" % (p, t, d.get(t), s0[t].value))
            elif t in TYPE2:
                check(t in d and d[t].value in ("", None), "%s: %s not empty" % (p, t))
            else:
                check(t not in d, "%s: %s invented" % (p, t))
        check(d.StudyInstanceUID == s0.StudyInstanceUID, "study UID")
        check(d.SeriesInstanceUID != s0.SeriesInstanceUID, "series UID must be new")
        check(d.SOPInstanceUID.startswith(UID_ROOT + "."), "SOP UID root")
        check(d.FrameOfReferenceUID == s0.FrameOfReferenceUID, "frame of reference kept")
        check(list(d.ImageType[:2]) == ["DERIVED", "SECONDARY"], "ImageType %s" % d.ImageType)
        if mode != "physical":
            want_iod = "1.2.840.10008.5.1.4.1.1.7"          # values no longer physical: SC
        elif s0.Modality == "MR":
            want_iod = "1.2.840.10008.5.1.4.1.1.4"          # MR Image Storage
        else:
            want_iod = "1.2.840.10008.5.1.4.1.1.2"          # CT Image Storage
        check(d.SOPClassUID == want_iod, "%s: SOP class %s" % (p, d.SOPClassUID))
        check("radprep" in d.SeriesDescription, "series description")
        check(any(c.CodeValue == "113085" for c in d.DerivationCodeSequence), "derivation code")
        check(len(d.SourceImageSequence) >= 1, "source image sequence")
        src_uids = {x.SOPInstanceUID for x in src}
        check(all(i.ReferencedSOPInstanceUID in src_uids for i in d.SourceImageSequence),
              "source references")
        exp_ipp = (lps @ np.array([0, 0, k, 1.0]))[:3]
        check(np.allclose(np.array(d.ImagePositionPatient, float), exp_ipp, atol=1e-3),
              "%s: IPP %s != %s" % (p, d.ImagePositionPatient, exp_ipp))
        row = lps[:3, 0] / np.linalg.norm(lps[:3, 0])
        col = lps[:3, 1] / np.linalg.norm(lps[:3, 1])
        check(np.allclose(np.array(d.ImageOrientationPatient, float), np.r_[row, col], atol=1e-6),
              "IOP")
        check(np.allclose([float(x) for x in d.PixelSpacing],
                          [np.linalg.norm(lps[:3, 1]), np.linalg.norm(lps[:3, 0])], atol=1e-6),
              "pixel spacing")
        check(float(d.WindowCenter) == window[0] and float(d.WindowWidth) == window[1], "window")
        slope, icpt = float(d.RescaleSlope), float(d.RescaleIntercept)
        vals = d.pixel_array.astype(np.float64) * slope + icpt
        err = np.abs(vals - v[k]).max()
        check(err <= slope / 2 + 1e-6 * max(1.0, abs(icpt)),
              "%s: pixel error %g > slope/2 %g" % (p, err, slope / 2))
    check(len(series_uids) == 1, "one series")
    print("%s: geometry, patient/study and pixels (max err <= slope/2) checked" % name)

    if masks:
        seg = pydicom.dcmread(spec["seg_out"])
        check(seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4", "SEG SOP class")
        check(seg.StudyInstanceUID == s0.StudyInstanceUID, "SEG study")
        check(seg.FrameOfReferenceUID == s0.FrameOfReferenceUID, "SEG FoR")
        check(seg.ReferencedSeriesSequence[0].SeriesInstanceUID == s0.SeriesInstanceUID,
              "SEG references the source series")
        for t in PATIENT_STUDY_TAGS:
            if t in s0:
                check(t in seg and seg[t].value == s0[t].value, "SEG %s differs" % t)
        frames = seg.pixel_array
        if frames.ndim == 2:
            frames = frames[None]
        ipps = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
                for f in seg.PerFrameFunctionalGroupsSequence]
        segnums = [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                   for f in seg.PerFrameFunctionalGroupsSequence]
        nonempty = 0
        for fi, (ipp, sn) in enumerate(zip(ipps, segnums)):
            m = masks[sn - 1]["data"]
            z = int(round(np.dot(ipp - lps[:3, 3], lps[:3, 2]) / np.dot(lps[:3, 2], lps[:3, 2])))
            check(np.allclose((lps @ np.array([0, 0, z, 1.0]))[:3], ipp, atol=1e-3), "SEG IPP")
            check(np.array_equal(frames[fi].astype(bool), m[z]), "SEG frame %d content" % fi)
            nonempty += int(frames[fi].any())
        for i, m in enumerate(masks):
            zs = [z for z in range(m["data"].shape[0]) if m["data"][z].any()]
            check(segnums.count(i + 1) == max(1, len(zs)), "segment %s frames" % m["name"])
        print("%s: SEG %d frames (%d non-empty), %d segments checked" %
              (name, len(ipps), nonempty, len(seg.SegmentSequence)))


def main():
    rptest.unit_test_bin("test_derived")
    if not shutil.which("dciodvfy"):
        print("dciodvfy missing (Debian dicom3tools)")
        return 1
    tmp = rptest.tempdir("rp_derived")
    ct3 = rptest.data_path("seg_with_source_ct", "ct_3slice")
    run_case("ct3_physical", ct3, tmp, "physical")
    run_case("ct3_processed", ct3, tmp, "processed")
    # sagittal MR (IOP 0\\1\\0\\0\\0\\-1): geometry in another orientation, MR IOD
    mr = rptest.data_path("mr_brain_siemens_xa30", "5001_anat-T1w_acq-tfl")
    run_case("mr_t1_physical", mr, tmp, "physical")
    lidc = rptest.data_path("ct_chest_lidc0001")
    run_case("lidc_physical", lidc, tmp, "physical")
    run_case("lidc_processed", lidc, tmp, "processed")
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
