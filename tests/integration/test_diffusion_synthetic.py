#!/usr/bin/python3
"""Integration: .bval/.bvec from each source the converter reads, on synthetic diffusion
series made from a real one. A pydicom copy of the shared Philips fMRI (dcm_qa_philips
Magdeburg, 64x64x9 x 3 volumes, oblique rows) gets per-volume diffusion elements:

  - standard: (0018,9087) b-value and (0018,9089) direction in patient LPS (vendor "ACME"),
  - GE: (0043,xx39) b-value with the 1e9 bias and (0019,xxBB/BC/BD) in the image frame,
  - Philips: (2001,xx03) b-value and (2005,xxB0/B1/B2) in patient axes, plus a derived trace
    volume (b > 0, no direction) that must leave the NIfTI and the table.

For each: `radprep process` writes a 4-D NIfTI with .bval/.bvec; the b-values are the ones
put in, the directions equal the ones computed here from the headers with dcm2niix's
convention (docs/conversion.md), and equal what Debian's dcm2niix writes for the same copy.
"""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

SRC = ("dcm_qa", "dcm_qa_philips", "In", "Magdeburg_2014")
# per volume: b-value, direction (patient LPS; None = b=0 / no direction)
TABLE = [(0.0, None), (1000.0, (0.6, 0.8, 0.0)), (1000.0, (0.0, -0.6, 0.8))]


def volumes(files):
    """file -> volume index: rank by Instance Number among the files at one position."""
    by_pos = {}
    for f in files:
        d = pydicom.dcmread(f, stop_before_pixels=True)
        key = tuple(round(float(x), 2) for x in d.ImagePositionPatient)
        by_pos.setdefault(key, []).append((int(d.InstanceNumber), f))
    vol = {}
    for lst in by_pos.values():
        for i, (_, f) in enumerate(sorted(lst)):
            vol[f] = i
    return vol


def strip_diffusion(d):
    """The source's own (empty) diffusion elements, standard and private."""
    for tag in list(d.keys()):
        if tag.group in (0x2001, 0x2005, 0x0043, 0x0019) and tag.element >= 0x1000:
            del d[tag]
        elif tag.group == 0x0018 and tag.element in (0x9075, 0x9087, 0x9089, 0x9117):
            del d[tag]


def make(kind, files, vol, out):
    os.makedirs(out)
    for f in files:
        d = pydicom.dcmread(f)
        strip_diffusion(d)
        t = vol[f]
        b, g = TABLE[t] if t < len(TABLE) else (1000.0, None)  # Philips: the trace volume
        d.SeriesNumber = 700
        d.SeriesDescription = f"dwi {kind}"
        if kind == "standard":
            d.Manufacturer = "ACME"
            d.add_new((0x0018, 0x9087), "FD", b)
            d.add_new((0x0018, 0x9075), "CS", "DIRECTIONAL" if g else "NONE")
            if g:
                d.add_new((0x0018, 0x9089), "FD", list(g))
        elif kind == "ge":
            d.Manufacturer = "GE MEDICAL SYSTEMS"
            d.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
            d.add_new((0x0043, 0x1039), "IS", [int(1e9 + b), 8, 0, 0])
            d.add_new((0x0019, 0x0010), "LO", "GEMS_ACQU_01")
            gi = image_frame_ge(d, g) if g else (0.0, 0.0, 0.0)
            for k, el in enumerate((0x10BB, 0x10BC, 0x10BD)):
                d.add_new((0x0019, el), "DS", f"{gi[k]:.6f}")
        elif kind == "philips":
            if "TriggerTime" in d:  # dcm2niix splits Philips series by trigger time
                del d.TriggerTime
            d.add_new((0x2001, 0x0010), "LO", "Philips Imaging DD 001")
            d.add_new((0x2001, 0x1003), "FL", b)
            d.add_new((0x2005, 0x0010), "LO", "Philips MR Imaging DD 001")
            gg = g or (0.0, 0.0, 0.0)
            for k, el in enumerate((0x10B0, 0x10B1, 0x10B2)):
                d.add_new((0x2005, el), "FL", gg[k])
        d.save_as(os.path.join(out, os.path.basename(f)))


def axes(d):
    iop = np.array([float(x) for x in d.ImageOrientationPatient])
    r, c = iop[:3], iop[3:]
    return r, c, np.cross(r, c)


def image_frame_ge(d, g):
    """A GE scanner's (0019,xxBB..BD) for patient direction g: the inverse of dcm2niix's
    GE transform for an axial, column-phase-encoded image gives (-x_vox, y_vox, z_vox) with
    x_vox = g.r, y_vox = -(g.c), z_vox = g.s."""
    r, c, s = axes(d)
    v = np.array(g)
    return (-(v @ r), -(v @ c), v @ s)


def expected(d, kind):
    """bvec rows as dcm2niix writes them: (g.r, -(g.c), g.(r x c)) normalised, rows bottom-up
    (our slices run along +r x c here)."""
    r, c, s = axes(d)
    rows, bvals = [], []
    for b, g in TABLE:
        bvals.append(b)
        if g is None:
            rows.append((0.0, 0.0, 0.0))
            continue
        v = np.array(g)
        o = np.array([v @ r, -(v @ c), v @ s])
        rows.append(tuple(o / np.linalg.norm(o)))
    return np.array(bvals), np.array(rows).T


def read_table(path):
    with open(path) as f:
        return np.array([[float(x) for x in line.split()] for line in f if line.strip()])


def main():
    rptest.require_built(rptest.radprep_bin())
    src_dir = rptest.data_path(*SRC)
    files = sorted(glob.glob(os.path.join(src_dir, "*", "*.dcm")))
    check(len(files) == 27, f"want the 27 files of the Magdeburg fMRI, found {len(files)}")
    vol = volumes(files)
    check(sorted(set(vol.values())) == [0, 1, 2], f"want 3 volumes, have {set(vol.values())}")
    tmp = rptest.tempdir("rp_dwi_")
    d0 = pydicom.dcmread(files[0], stop_before_pixels=True)
    have_dcm2niix = shutil.which("dcm2niix") is not None
    check(have_dcm2niix, "dcm2niix (Debian package) is needed for the comparison")
    for kind in ("standard", "ge", "philips"):
        series = os.path.join(tmp, kind, "in")
        use = files
        if kind == "philips":
            # a 4th volume: the derived trace (a copy of volume 2 with new UIDs/positions kept)
            extra = []
            for f in files:
                if vol[f] == 2:
                    d = pydicom.dcmread(f)
                    d.SOPInstanceUID = d.SOPInstanceUID + ".9"
                    d.InstanceNumber = int(d.InstanceNumber) + 1000
                    p = os.path.join(tmp, "trace_" + os.path.basename(f))
                    d.save_as(p)
                    extra.append(p)
                    vol[p] = 3
            use = files + extra
        make(kind, use, vol, series)
        out = os.path.join(tmp, kind, "out")
        p = rptest.run_radprep("process", series, "--out", out, "--no-gzip")
        if not check(p.returncode == 0, f"{kind}: radprep exit {p.returncode}: {p.stderr[-300:]}"):
            continue
        bv = glob.glob(os.path.join(out, "*.bval"))
        if not check(len(bv) == 1, f"{kind}: want one .bval, have {bv}"):
            continue
        ob, ov = read_table(bv[0])[0], read_table(bv[0][:-5] + ".bvec")
        eb, ev = expected(d0, kind)
        check(np.allclose(ob, eb, atol=1e-3), f"{kind}: b-values {ob} != {eb}")
        check(ov.shape == ev.shape and np.allclose(ov, ev, atol=2e-4),
              f"{kind}: directions\n{ov}\n!= expected from the headers\n{ev}")
        import nibabel as nib
        nii = glob.glob(os.path.join(out, "*.nii"))
        check(len(nii) == 1 and nib.load(nii[0]).shape[3] == 3,
              f"{kind}: want one 4-D NIfTI of 3 volumes (trace dropped), have "
              f"{[nib.load(x).shape for x in nii]}")
        if have_dcm2niix:
            dout = os.path.join(tmp, kind, "dcm2niix")
            os.makedirs(dout)
            subprocess.run(["dcm2niix", "-z", "n", "-f", "%s", "-o", dout, series],
                           capture_output=True, text=True, timeout=300)
            db = glob.glob(os.path.join(dout, "*.bval"))
            if check(len(db) == 1, f"{kind}: dcm2niix wrote no single .bval ({db})"):
                rb, rv = read_table(db[0])[0], read_table(db[0][:-5] + ".bvec")
                check(np.allclose(ob, rb, atol=1e-3), f"{kind}: b-values {ob} vs dcm2niix {rb}")
                check(ov.shape == rv.shape and np.allclose(ov, rv, atol=5e-4),
                      f"{kind}: directions\n{ov}\nvs dcm2niix\n{rv}")
        print(f"{kind}: bval {ob.tolist()} bvec ok", flush=True)
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
