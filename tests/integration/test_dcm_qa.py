#!/usr/bin/python3
"""Integration: dcm2niix's own validation corpora ($RP_SHARED_DATA/dcm_qa/*: In/ DICOM, Ref/
dcm2niix's NIfTI + JSON) converted by `radprep process` and compared with Ref/.

For every reference NIfTI: one output of ours with the same Series Number, the same
dimensions (after both are put in the closest canonical orientation), voxel values equal
after scaling (nibabel get_fdata; relative 1e-4 of the range for dcm2niix's float outputs),
affine within 1e-3 mm / 1e-5, and the sidecar keys both sides write (KEYS) equal.
Every deliberate difference is in DIFFS below and in docs/conversion.md's table, with its
reason; anything else fails. Prints one score line per corpus.
"""
import glob
import json
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402
import test_convert as tc  # noqa: E402  (shared NIfTI loading and affine comparison)

# corpus -> input folder below it (batch.sh runs dcm_qa_philips_asl on In/Classic)
CORPORA = {
    "dcm_qa": "In",
    "dcm_qa_12bit": "In",
    "dcm_qa_frag": "In",
    "dcm_qa_nih": "In",
    "dcm_qa_philips": "In",
    "dcm_qa_philips_asl": "In/Classic",
    "dcm_qa_stc": "In",
    "dcm_qa_table": "In",
}

# sidecar keys compared when both sides write them; numbers within 1e-4 relative
KEYS = ["EchoTime", "RepetitionTime", "FlipAngle", "SliceTiming", "PhaseEncodingDirection",
        "ImageType", "EchoNumber", "SeriesNumber", "MagneticFieldStrength", "Manufacturer",
        "PhilipsRescaleSlope", "PhilipsRescaleIntercept", "PhilipsScaleSlope"]

# Deliberate differences: (corpus, reference file name glob, what, reason). `what` is
# "key:<Name>" (that sidecar key is not compared) or "data-linear" (voxel values are an exact
# linear function of dcm2niix's: a different but recorded scaling).
PHILIPS_SCALING = ("Philips: dcm2niix applies the private floating-point scaling (its default "
                   "-p y); we write DICOM's Rescale Slope/Intercept (display values) and record "
                   "PhilipsRescaleSlope/Intercept and PhilipsScaleSlope in the sidecar. Ours "
                   "are an exact linear function of dcm2niix's")
DIFFS = [
    ("dcm_qa_table", "*", "data-linear", PHILIPS_SCALING),
    ("dcm_qa_philips", "*", "data-linear", PHILIPS_SCALING),
    ("dcm_qa_philips_asl", "*", "data-linear", PHILIPS_SCALING),
    ("dcm_qa_frag", "*", "affine-extrapolated",
     "96 slices: our slice step is (last - first position) / 95 and our sform equals the "
     "header geometry; dcm2niix extrapolates the gap of its first two slices (0.01 mm at the "
     "far end)"),
    ("dcm_qa_philips_asl", "402_*", "key:RepetitionTime",
     "Philips 3D pCASL source: we write the DICOM Repetition Time (4234 ms, also in the "
     "private (2005,1030)); dcm2niix writes an effective time per volume it derives itself"),
]


def diff_allowed(corpus, ref, what):
    import fnmatch
    return any(c == corpus and fnmatch.fnmatch(os.path.basename(ref), g) and w == what
               for c, g, w, _ in DIFFS)


def same_value(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-4 * max(1.0, abs(a), abs(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


def compare_data(ours, ref):
    """(ok, message): values equal (integer references), close relative to the range (float
    references), else the max difference."""
    da, _ = tc.canon(ours)
    db, _ = tc.canon(ref)
    if da.shape != db.shape:
        return False, f"shape {da.shape} != reference {db.shape}"
    if not da.size:
        return True, ""
    diff = float(np.max(np.abs(da - db)))
    rng = float(np.max(db) - np.min(db)) or 1.0
    if diff <= max(1e-4 * rng, 1e-6):
        return True, ""
    return False, f"voxel data differ (max |diff| {diff:.4g}, range {rng:.4g})"


def tail(path):
    """The echo / image-kind suffix of an output name (_e2, _ph, _e1_ph...)."""
    stem = os.path.basename(path).split(".")[0]
    m = re.search(r"(_e\d+)?(_ph|_real|_imaginary|_fieldmaphz)?$", stem)
    return m.group(0)


def pair(ours, refs):
    """Each reference with one of ours: same Series Number and canonical shape; among those the
    nearest origin, then the closest data."""
    pairs, left = [], list(ours)
    for r in refs:
        sn = r["meta"].get("SeriesNumber")
        rd, ra = tc.canon(r["nii"])
        cands = []
        for o in left:
            if o["meta"].get("SeriesNumber") != sn:
                continue
            od, oa = tc.canon(o["nii"])
            if od.shape != rd.shape:
                continue
            dist = float(np.abs(oa[:3, 3] - ra[:3, 3]).max())
            ddiff = float(np.mean(np.abs(od - rd))) if od.size else 0.0
            cands.append((round(dist, 2), tail(o["nii"]) != tail(r["nii"]), ddiff, o))
        if not cands:
            pairs.append((r, None))
            continue
        best = min(cands, key=lambda c: c[:3])[3]
        left.remove(best)
        pairs.append((r, best))
    return pairs, left


KEYS_COMPARED = {}
COMPONENTS = ("MAGNITUDE", "PHASE", "REAL", "IMAGINARY")


def normalized(k, ours, ref, o_meta):
    """Both sides of key k as dcm2niix would write ours. ImageType: dcm2niix splits values at
    '_' and appends the image component; we keep the DICOM values and write the component as
    ImageComponent. Manufacturer: dcm2niix writes its short vendor name, we the DICOM value."""
    if k == "ImageType" and isinstance(ours, list) and isinstance(ref, list):
        split = [t for v in ours for t in v.split("_")]
        comp = o_meta.get("ImageComponent", "MAGNITUDE")
        if comp == "FIELDMAP":
            comp = None
        while ref and ref[-1] in COMPONENTS:
            if comp and ref[-1] != comp:
                return ours, ref  # a different component: differs
            ref = ref[:-1]
        return split, ref
    if k == "Manufacturer" and isinstance(ours, str) and isinstance(ref, str):
        if ours.lower().startswith(ref.lower()):
            return ref, ref
    return ours, ref


def compare_keys(corpus, o, r, tag):
    bad = []
    for k in KEYS:
        if k in o["meta"] and k in r["meta"] and not diff_allowed(corpus, r["nii"], "key:" + k):
            ov, rv = normalized(k, o["meta"][k], r["meta"][k], o["meta"])
            if not same_value(ov, rv):
                bad.append(f"{k}: ours {o['meta'][k]!r} ref {r['meta'][k]!r}")
        if k in o["meta"] and k in r["meta"]:
            KEYS_COMPARED[k] = KEYS_COMPARED.get(k, 0) + 1
    check(not bad, f"{tag}: sidecar differs: " + "; ".join(bad))
    return not bad


def run_corpus(corpus, sub, out_root):
    src = rptest.data_path("dcm_qa", corpus, sub)
    ref_dir = rptest.data_path("dcm_qa", corpus, "Ref")
    out = os.path.join(out_root, corpus)
    p = tc.run_ours(src, out, "--no-gzip")
    check(p.returncode == 0, f"{corpus}: radprep exit {p.returncode}: {p.stderr.strip()[-400:]}")
    ours, refs = tc.load_outputs(out), tc.load_outputs(ref_dir)
    check(refs, f"{corpus}: no reference NIfTI in {ref_dir}")
    pairs, _extra = pair(ours, refs)
    n_ok, n_keys = 0, 0
    for r, o in pairs:
        tag = f"{corpus}/{os.path.basename(r['nii'])}"
        if not check(o is not None, f"{tag}: no output of ours with this series and shape "
                     f"(ours: {[os.path.basename(x['nii']) for x in ours]})"):
            continue
        ok_d, msg = compare_data(o["nii"], r["nii"])
        if not ok_d and diff_allowed(corpus, r["nii"], "data-linear"):
            ok_d = linear_equal(o["nii"], r["nii"])
        check(ok_d, f"{tag} vs {os.path.basename(o['nii'])}: {msg}")
        ok_a, errs = tc.affine_close(tc.canon(o["nii"])[1], tc.canon(r["nii"])[1])
        if (not ok_a and diff_allowed(corpus, r["nii"], "affine-extrapolated")
                and errs[0] < 0.05 and errs[1] < 1e-5 and errs[2] < 1e-3):
            # ours must then be exactly the geometry of the headers (pydicom)
            ok_a = bool(tc.check_geometry_from_headers(o, src, tag))
        check(ok_a, f"{tag} vs {os.path.basename(o['nii'])}: affine differs (translation "
                    f"{errs[0]:.2e} mm, rotation {errs[1]:.2e}, spacing {errs[2]:.2e})")
        n_keys += compare_keys(corpus, o, r, tag)
        n_ok += ok_d and ok_a
    print(f"SCORE {corpus}: {n_ok}/{len(refs)} reference volumes equal (data, dims, affine), "
          f"{n_keys}/{len(refs)} sidecars agree; {len(ours)} outputs of ours", flush=True)
    return n_ok, len(refs)


def linear_equal(ours, ref):
    da, db = tc.canon(ours)[0].ravel(), tc.canon(ref)[0].ravel()
    if da.std() == 0:
        return np.allclose(db, db[0])
    a, b = np.polyfit(da, db, 1)
    return float(np.max(np.abs(a * da + b - db))) <= 1e-4 * (float(np.ptp(db)) or 1.0)


def main():
    rptest.require_built(tc.RADPREP)
    tmp = tempfile.mkdtemp(prefix="rp_dcmqa_")
    total_ok = total = 0
    only = sys.argv[1:]
    for corpus, sub in CORPORA.items():
        if only and corpus not in only:
            continue
        k, n = run_corpus(corpus, sub, tmp)
        total_ok, total = total_ok + k, total + n
    print(f"SCORE all: {total_ok}/{total} reference volumes equal; sidecar keys compared: "
          + ", ".join(f"{k} x{n}" for k, n in sorted(KEYS_COMPARED.items())))
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
