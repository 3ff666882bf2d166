#!/usr/bin/python3
"""X-ray preprocessing on every real radiograph in $RP_SHARED_DATA/xray (MONOCHROME1 and 2,
J2K, JPEG lossless, 8 to 12 bits, a file without a Part-10 header), through the real
`radprep process` (H3's decoder, assembly, the recipe runner, the NIfTI writer).

For each file:
 1. The built-in X-ray rule ("present crop(background) clahe(2.0,8) resize(1024,keep_aspect)
    pad(1024) normalize(minmax)") gives a 1024x1024 image in 0..1 with a plausible histogram
    inside the letterbox, and the QC report records the VOI path and the pixel map; `png(8)`
    after it writes the same pixels as an 8-bit PNG.
 2. Bone is bright: `present` alone correlates > 0.98 with an independent reference made by
    pydicom (apply_modality_lut + apply_voi_lut, MONOCHROME1 inverted), and on the chest
    films the mediastinum (centre column) is brighter than the lung fields.
 3. End to end against OpenCV: "present clahe(2.0,8) resize(1024,keep_aspect) pad(1024)"
    equals the same chain done here with numpy (PS3.3 formulas) + cv2.createCLAHE +
    cv2.resize(INTER_AREA) + letterbox within +-1 grey level on >= 99% of pixels.
Pixels for the references come from pydicom (JPEG lossless is first decompressed with
dcmtk's dcmdjpeg, since Debian's pydicom has no lossless JPEG plugin; J2K goes through
Pillow/OpenJPEG; the raw dataset is read with force=True).

A contact sheet (source as pydicom shows it with its VOI | our output) is written to
$RP_BUILD_DIR/xray_contact_sheet.png.
"""
import json
import os
import subprocess
import sys
import tempfile

import cv2
import nibabel as nib
import numpy as np
import pydicom
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

rptest.SHOW_PASSED = True
BUILTIN = ("present crop(background) clahe(2.0,8) resize(1024,keep_aspect) pad(1024) "
           "normalize(minmax)")
NOCROP = "present clahe(2.0,8) resize(1024,keep_aspect) pad(1024)"


def run_radprep(path, out, recipe):
    r = rptest.run_radprep("process", path, "--out", out, "--recipe", recipe, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("radprep process failed (%d): %s %s" % (r.returncode, r.stdout,
                                                                  r.stderr))
    nii = [f for f in os.listdir(out) if f.endswith(".nii.gz") and "_mask-" not in f]
    assert len(nii) == 1, nii
    img = np.asanyarray(nib.load(os.path.join(out, nii[0])).dataobj).astype(np.float32)
    # NIfTI (x, y) with rows stored bottom-up -> displayed (row, col)
    disp = img[:, ::-1, 0].T if img.ndim >= 3 else img[:, ::-1].T
    with open(os.path.join(out, "qc.json")) as f:
        qc = json.load(f)
    stack = qc["series"][0]["stacks"][0]["recipe"]
    return np.ascontiguousarray(disp), stack


def load_dicom(path, tmp):
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ts = ds.file_meta.TransferSyntaxUID
    if ts in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        dec = os.path.join(tmp, "dec.dcm")
        subprocess.run(["dcmdjpeg", path, dec], check=True)
        ds = pydicom.dcmread(dec)
    return ds, ds.pixel_array


def present_reference(ds, stored):
    """PS3.3 C.11.1/C.11.2 in numpy, choosing the VOI as `present(auto)` documents."""
    m = apply_modality_lut(stored, ds).astype(np.float64)
    pad = np.zeros(stored.shape, bool)
    if "PixelPaddingValue" in ds:
        lo = ds.PixelPaddingValue
        hi = ds.get("PixelPaddingRangeLimit", lo)
        lo, hi = min(lo, hi), max(lo, hi)
        pad = (stored >= lo) & (stored <= hi)
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        n, first, bits = [int(v) for v in item.LUTDescriptor]
        n = n or 65536
        lut = np.frombuffer(item.LUTData, np.uint16) if isinstance(item.LUTData, bytes) \
            else np.asarray(item.LUTData, np.uint16)
        lut = lut[:n].astype(np.float64)
        while bits < 16 and lut.max() > 2 ** bits - 1:
            bits += 1
        idx = np.clip(np.floor(m + 0.5) - first, 0, n - 1).astype(np.int64)
        y = lut[idx] / (2 ** bits - 1)
        path = "lut"
    elif "WindowCenter" in ds:
        wc = ds.WindowCenter
        ww = ds.WindowWidth
        c = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
        w = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
        fn = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if fn == "SIGMOID":
            y = 1.0 / (1.0 + np.exp(-4.0 * (m - c) / w))
        elif fn == "LINEAR_EXACT":
            y = np.clip((m - c) / w + 0.5, 0, 1)
        else:
            y = np.where(m <= c - 0.5 - (w - 1) / 2, 0.0,
                         np.where(m > c - 0.5 + (w - 1) / 2, 1.0,
                                  (m - (c - 0.5)) / (w - 1) + 0.5))
        path = "window"
    else:
        lo, hi = m[~pad].min(), m[~pad].max()
        y = np.clip((m - lo) / (hi - lo), 0, 1)
        path = "minmax"
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1.0 - y
    y[pad] = 0.0
    return y.astype(np.float32), path


def pydicom_display(ds, stored):
    """What pydicom users get: modality LUT, VOI (LUT preferred), MONOCHROME1 inverted."""
    v = apply_voi_lut(apply_modality_lut(stored, ds), ds).astype(np.float64)
    v = (v - v.min()) / max(v.max() - v.min(), 1e-9)
    return 1.0 - v if ds.PhotometricInterpretation == "MONOCHROME1" else v


def cv2_chain(y):
    q = np.rint(y * 255).astype(np.uint8)
    q = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(q)
    h, w = q.shape
    if w >= h:
        ow, oh = 1024, int(round(h * 1024 / w))
    else:
        oh, ow = 1024, int(round(w * 1024 / h))
    r = cv2.resize(q, (ow, oh), interpolation=cv2.INTER_AREA)
    out = np.zeros((1024, 1024), np.uint8)
    top, left = (1024 - oh) // 2, (1024 - ow) // 2
    out[top:top + oh, left:left + ow] = r
    return out, (left, top, ow, oh)


def main():
    rptest.require_built(rptest.radprep_bin())
    paths = rptest.data_files("xray", pattern="*.dcm", count=4)  # the four radiographs
    sheet_rows = []
    with tempfile.TemporaryDirectory(prefix="rp_xray_") as tmp:
        for path in paths:
            name = os.path.basename(path)
            print("==", name, flush=True)
            ds, stored = load_dicom(path, tmp)
            ref, ref_path = present_reference(ds, stored)

            # 2. present alone vs the pydicom reference
            out = os.path.join(tmp, name + ".present")
            ours, qc = run_radprep(path, out, "present")
            check(ours.shape == ref.shape, "%s: present keeps the size %s" % (name, ref.shape))
            pres = qc["steps"][0]["presentation"]
            check(pres["voi_path"].lower().startswith(
                {"lut": "voi lut", "window": "window", "minmax": "min-max"}[ref_path]),
                "%s: VOI path %r recorded" % (name, pres["voi_path"]))
            check(pres["inverted"] == (ds.PhotometricInterpretation == "MONOCHROME1"),
                  "%s: inversion recorded" % name)
            err = np.abs(ours - ref)
            check(float(err.max()) < 1e-4,
                  "%s: present equals the PS3.3 reference (max |diff| %.2g)" % (name, err.max()))
            pd_disp = pydicom_display(ds, stored)
            corr = np.corrcoef(ours.ravel(), pd_disp.ravel())[0, 1]
            check(corr > 0.98, "%s: correlates with pydicom's display (r=%.4f)" % (name, corr))
            if "chest" in name:
                h, w = ours.shape
                band = slice(int(0.35 * h), int(0.6 * h))
                mid = ours[band, int(0.46 * w):int(0.54 * w)].mean()
                lungs = 0.5 * (ours[band, int(0.22 * w):int(0.32 * w)].mean()
                               + ours[band, int(0.68 * w):int(0.78 * w)].mean())
                check(mid > lungs + 0.05,
                      "%s: bone bright (mediastinum %.3f > lungs %.3f)" % (name, mid, lungs))

            # 3. end to end vs OpenCV (no crop: crop(background) is not an OpenCV operation)
            out = os.path.join(tmp, name + ".nocrop")
            ours8, qc = run_radprep(path, out, NOCROP)
            ours8 = np.rint(np.clip(ours8, 0, 1) * 255).astype(np.int16)
            cvref, (left, top, ow, oh) = cv2_chain(ref)
            d = np.abs(ours8 - cvref.astype(np.int16))
            frac = float((d <= 1).mean())
            check(ours8.shape == (1024, 1024) and frac >= 0.99,
                  "%s: chain equals cv2 CLAHE+INTER_AREA+letterbox within 1 on %.4f of pixels "
                  "(max %d)" % (name, frac, d.max()))
            pm = qc.get("pixel_map")
            check(pm is not None and abs(pm["offset"][0] + left * pm["scale"][0]
                                         - (pm["scale"][0] - 1) / 2) < 1e-6,
                  "%s: pixel map recorded %s" % (name, pm))

            # 1. the built-in rule
            out = os.path.join(tmp, name + ".builtin")
            img, qc = run_radprep(path, out, BUILTIN + " png(8)")
            with open(os.path.join(out, "qc.json")) as f:
                extra = json.load(f)["series"][0]["stacks"][0].get("extra_outputs", [])
            pngs = [e["path"] for e in extra if e.get("kind") == "png"]
            check(len(pngs) == 1, "%s: png(8) listed in extra_outputs %s" % (name, pngs))
            png = cv2.imread(pngs[0], cv2.IMREAD_UNCHANGED) if pngs else None
            check(png is not None and png.dtype == np.uint8 and png.shape == img.shape and
                  int(np.abs(png.astype(int) - np.rint(np.clip(img, 0, 1) * 255)).max()) == 0,
                  "%s: png(8) writes the output as an 8-bit PNG, rows as displayed" % name)
            check(img.shape == (1024, 1024), "%s: built-in rule gives 1024x1024" % name)
            check(img.min() >= 0 and img.max() <= 1 + 1e-6, "%s: values in 0..1" % name)
            pm = qc["pixel_map"]
            # content region = where the letterbox is not (from the pixel map's inverse)
            nz = np.argwhere(img > 0)
            y0, x0 = nz.min(0)
            y1, x1 = nz.max(0)
            content = img[y0:y1 + 1, x0:x1 + 1]
            hist, _ = np.histogram(content, bins=64, range=(0, 1))
            sat = float((content >= 0.999).mean())
            check(content.std() > 0.1 and (hist > content.size * 1e-4).sum() >= 32
                  and sat < 0.05,
                  "%s: plausible histogram (sd %.3f, %d/64 bins used, %.3f%% at max)"
                  % (name, content.std(), (hist > content.size * 1e-4).sum(), 100 * sat))
            src = cv2.resize((pd_disp * 255).astype(np.uint8), (512, 512),
                             interpolation=cv2.INTER_AREA)
            dst = cv2.resize((img * 255).astype(np.uint8), (512, 512),
                             interpolation=cv2.INTER_AREA)
            sheet_rows.append(np.hstack([src, np.full((512, 8), 128, np.uint8), dst]))
    sheet = np.vstack([np.vstack([r, np.full((8, r.shape[1]), 128, np.uint8)])
                       for r in sheet_rows])
    sheet_path = os.path.join(rptest.BUILD_DIR, "xray_contact_sheet.png")
    cv2.imwrite(sheet_path, sheet)
    print("contact sheet:", sheet_path)
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
