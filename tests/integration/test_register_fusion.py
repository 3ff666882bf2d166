"""Rigid registration on real data (mr_brain_siemens_xa30, a Siemens Prisma XA30 study):

1. Known motion: a copy of the T1 series (5001) whose geometry (IPP/IOP) is moved by a known
   rigid transform, as if the patient had moved between two sequences. [fusion] with
   `register = rigid` must recover the motion (within 0.5 degrees and 0.5 mm over the object)
   and the fused channels must coincide (the copy's channel equals the T1 channel after
   registration; without registration it does not).
2. The real study: T1 + field map + BOLD fuse with `register = rigid`; the sidecar says what
   moved (matrix, parameters, MI before/after, displacement) and a checkerboard QC picture is
   written per registered member.
3. The step `register(REF)` of `radprep process` on two folders: the moved copy registered onto
   the T1 folder gives the moved volume on the T1 grid and the transform (JSON + ITK .tfm).
4. Bad input: a missing reference, a bad option, an unknown `register` value in [fusion].
"""
import glob
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

DATA = os.path.join(rptest.SHARED_DATA, "mr_brain_siemens_xa30")
T1 = os.path.join(DATA, "5001_anat-T1w_acq-tfl")
FMAP = os.path.join(DATA, "9001_gre_field_mapping")
BOLD = os.path.join(DATA, "7001_func-bold_task-fa_run-1")
F = np.diag([-1.0, -1.0, 1.0, 1.0])  # LPS <-> RAS


def run(args):
    return subprocess.run([rptest.radprep_bin()] + args, capture_output=True, text=True,
                          timeout=900)


def rotation(rx, ry, rz):
    a, b, c = np.radians([rx, ry, rz])
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    Rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def moved_copy(dst, Q):
    """The T1 series with its geometry moved by Q (4x4, LPS): anatomy at x appears at Q(x)."""
    os.makedirs(dst)
    series = generate_uid()
    for f in sorted(glob.glob(os.path.join(T1, "*"))):
        ds = pydicom.dcmread(f)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient] + [1.0])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ds.ImagePositionPatient = [float("%.6f" % v) for v in (Q @ ipp)[:3]]
        ds.ImageOrientationPatient = [float("%.8f" % v) for v in
                                      list(Q[:3, :3] @ iop[:3]) + list(Q[:3, :3] @ iop[3:])]
        ds.SeriesInstanceUID = series
        sop = generate_uid()
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SeriesNumber = 6001
        ds.SeriesDescription = "moved copy"
        ds.ProtocolName = "moved copy"
        ds.save_as(os.path.join(dst, os.path.basename(f)))


def errors(M, truth, center):
    """Rotation angle (deg) between the two, and the largest displacement difference (mm) over
    a 120 mm cube around the object's centre."""
    c = (np.trace(M[:3, :3] @ truth[:3, :3].T) - 1) / 2
    ang = float(np.degrees(np.arccos(np.clip(c, -1, 1))))
    pts = np.array([[center[0] + sx * 60, center[1] + sy * 60, center[2] + sz * 60, 1.0]
                    for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    d = float(np.max(np.linalg.norm((pts @ M.T - pts @ truth.T)[:, :3], axis=1)))
    return ang, d


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def main():
    for d in (T1, FMAP, BOLD):
        assert os.path.isdir(d), "shared data missing: %s" % d
    tmp = rptest.tempdir("rp_register")
    # the object's centre (LPS) from the T1 slices: the rotation centre of the simulated motion
    ipps = np.array([[float(v) for v in pydicom.dcmread(f, stop_before_pixels=True)
                      .ImagePositionPatient] for f in glob.glob(os.path.join(T1, "*"))])
    c_lps = ipps.mean(axis=0) + np.array([0.0, 128.0, -128.0])  # slices are sagittal, 256 mm
    R = rotation(4.0, -3.0, 0.0)
    t = np.array([3.0, -4.0, 5.0])
    Q = np.eye(4)
    Q[:3, :3] = R
    Q[:3, 3] = c_lps + t - R @ c_lps
    truth = F @ Q @ F  # RAS: reference world -> the copy's world
    copy = os.path.join(tmp, "moved")
    moved_copy(copy, Q)

    # 1. fusion with a known motion
    ini = os.path.join(tmp, "rp.ini")
    rptest.write_ini(ini, {
        "fusion moved": {"sequences": "T1 MOVED:*moved*", "reference": "T1",
                         "register": "rigid", "normalize": "none"},
        "fusion still": {"sequences": "T1 MOVED:*moved*", "reference": "T1",
                         "normalize": "none"},
        "fusion study": {"sequences": "T1 FIELDMAP BOLD", "reference": "T1",
                         "register": "rigid", "FIELDMAP.register": "rigid_scale"},
    })
    out = os.path.join(tmp, "fused")
    r = run(["--config", ini, "process", T1, copy, "--fusion", "moved", "--out", out])
    assert r.returncode == 0, r.stderr
    side = json.load(open(os.path.join(out, "moved.json")))
    assert side["Register"] == "rigid", side["Register"]
    reg = side["Channels"][1]["Registration"]
    M = np.array(reg["matrix"])
    c_ras = (F @ np.append(c_lps, 1.0))[:3]
    ang, disp = errors(M, truth, c_ras)
    print("known motion (4, -3, 0 deg; 3, -4, 5 mm LPS): recovered rotation %s deg, translation "
          "%s mm; error %.3f deg, %.3f mm over a 120 mm cube; MI %.3f -> %.3f; moved %.1f mm"
          % (np.round(reg["rotation_deg"], 3), np.round(reg["translation_mm"], 3), ang, disp,
             reg["metric"]["initial"], reg["metric"]["final"], reg["moved_mm"]["max"]))
    assert ang < 0.5 and disp < 0.5, (ang, disp)
    assert reg["metric"]["final"] > reg["metric"]["initial"]
    assert reg["moved_mm"]["max"] > 5, reg["moved_mm"]
    assert is_png(os.path.join(out, reg["qc"])), reg
    assert "Registration" not in side["Channels"][0]
    img = nib.load(os.path.join(out, "moved.nii.gz")).get_fdata()
    ch0, ch1 = img[..., 0], img[..., 1]
    inside = ch0 > np.percentile(ch0, 60)
    corr_reg = float(np.corrcoef(ch0[inside], ch1[inside])[0, 1])
    out2 = os.path.join(tmp, "still")
    r = run(["--config", ini, "process", T1, copy, "--fusion", "still", "--out", out2])
    assert r.returncode == 0, r.stderr
    side2 = json.load(open(os.path.join(out2, "still.json")))
    assert side2["Register"] == "none" and "Registration" not in side2["Channels"][1]
    img2 = nib.load(os.path.join(out2, "still.nii.gz")).get_fdata()
    corr_still = float(np.corrcoef(img2[..., 0][inside], img2[..., 1][inside])[0, 1])
    print("fused copy vs T1 inside the object: correlation %.4f registered, %.4f not"
          % (corr_reg, corr_still))
    assert corr_reg > 0.97 and corr_reg > corr_still + 0.05, (corr_reg, corr_still)
    # the same inputs give the same bytes
    out3 = os.path.join(tmp, "fused_again")
    r = run(["--config", ini, "process", T1, copy, "--fusion", "moved", "--out", out3])
    assert r.returncode == 0, r.stderr
    for name in ("moved.nii.gz", "moved.json"):
        assert open(os.path.join(out, name), "rb").read() == \
            open(os.path.join(out3, name), "rb").read(), name

    # 2. the real study: what moved between the T1, the field map and the BOLD
    out = os.path.join(tmp, "study")
    r = run(["--config", ini, "process", DATA, "--fusion", "study", "--out", out])
    assert r.returncode == 0, r.stderr
    side = json.load(open(os.path.join(out, "study.json")))
    for ch in side["Channels"][1:]:
        reg = ch["Registration"]
        print("XA30 %s onto T1: rotation %s deg, translation %s mm, scale %s, MI %.3f -> %.3f, "
              "moved max %.2f mm rms %.2f mm" % (
                  ch["sequence"], np.round(reg["rotation_deg"], 2),
                  np.round(reg["translation_mm"], 2), reg.get("scale"), reg["metric"]["initial"],
                  reg["metric"]["final"], reg["moved_mm"]["max"], reg["moved_mm"]["rms"]))
        assert reg["metric"]["final"] >= reg["metric"]["initial"]
        if reg["metric"]["final"] == reg["metric"]["initial"]:  # ill-posed: geometry kept
            assert "scanner geometry was kept" in reg["note"] and reg["moved_mm"]["max"] == 0
        assert np.array(reg["matrix"]).shape == (4, 4)
        assert is_png(os.path.join(out, reg["qc"]))
    assert side["Channels"][1]["Registration"]["method"] == "rigid_scale"
    assert len(side["Channels"][1]["Registration"]["scale"]) == 3

    # 3. register(REF) on two folders
    out = os.path.join(tmp, "step")
    r = run(["process", copy, "--recipe", "register(%s)" % T1, "--out", out])
    assert r.returncode == 0, r.stderr
    tj = glob.glob(os.path.join(out, "*_transform.json"))
    assert len(tj) == 1, os.listdir(out)
    stem = tj[0][:-len("_transform.json")]
    tr = json.load(open(tj[0]))
    ang, disp = errors(np.array(tr["matrix"]), truth, c_ras)
    print("register(REF): error %.3f deg, %.3f mm" % (ang, disp))
    assert ang < 0.5 and disp < 0.5, (ang, disp)
    tfm = open(stem + "_transform.tfm").read()
    assert tfm.startswith("#Insight Transform File V1.0") and "AffineTransform_double_3_3" in tfm
    p = [float(x) for x in tfm.split("Parameters:")[1].split("\n")[0].split()]
    assert np.allclose(np.array(p[:9]).reshape(3, 3), Q[:3, :3], atol=1e-3), p
    assert is_png(stem + "_register_qc.png")
    moved = nib.load(stem + ".nii.gz")
    ref_out = os.path.join(tmp, "t1")
    r = run(["process", T1, "--out", ref_out])
    assert r.returncode == 0, r.stderr
    ref = nib.load(glob.glob(os.path.join(ref_out, "*.nii.gz"))[0])
    assert moved.shape[:3] == ref.shape[:3] and np.allclose(moved.affine, ref.affine, atol=1e-3)
    a, b = ref.get_fdata(), moved.get_fdata().reshape(ref.shape)
    inside = a > np.percentile(a, 60)
    corr = float(np.corrcoef(a[inside], b[inside])[0, 1])
    print("register(REF) output vs T1: correlation %.4f" % corr)
    assert corr > 0.97, corr
    qc = json.load(open(os.path.join(out, "qc.json")))
    assert "registration" in json.dumps(qc), "step QC lacks the registration"

    # 4. bad input: clear errors, no crash
    r = run(["process", copy, "--recipe", "register(/nonexistent/ref)", "--out",
             os.path.join(tmp, "bad1")])
    assert r.returncode != 0 and "reference" in r.stderr, r.stderr
    r = run(["process", copy, "--recipe", "register(%s, shear)" % T1, "--out",
             os.path.join(tmp, "bad2")])
    assert r.returncode != 0 and "unknown option 'shear'" in r.stderr, r.stderr
    bad = os.path.join(tmp, "bad.ini")
    with open(bad, "w") as f:
        f.write("[fusion x]\nsequences = T1 T2\nregister = affine\n")
    r = run(["--config", bad, "process", T1, "--fusion", "x", "--out", os.path.join(tmp, "b3")])
    assert r.returncode != 0 and "register: 'affine' is not one of none|rigid|rigid_scale" \
        in r.stderr, r.stderr
    shutil.rmtree(os.path.join(tmp, "bad1"), ignore_errors=True)
    print("ok")


if __name__ == "__main__":
    main()
