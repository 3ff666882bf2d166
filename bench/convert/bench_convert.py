#!/usr/bin/python3
"""bench/convert — DICOM -> NIfTI conversion, radprep vs dcm2niix, side by side in one run.

Series: the real LIDC-IDRI-0001 chest CT (133 x 512x512, Explicit VR LE) and a generated
300-slice 512x512 CT (pydicom, chest-like phantom with noise, signed 16-bit, intercept -1024).
For each series and each mode it runs the tool in its own process, several times, and prints
the best wall time, the peak memory (the child's max RSS from os.wait4, as /usr/bin/time -v
reports it) and the output size, with the ratio radprep/dcm2niix:
    uncompressed:  radprep --no-gzip        vs  dcm2niix -z n
    gzip:          radprep (default level)  vs  dcm2niix -z y   (pigz when installed)
Usage:
    make -C BUILD radprep && /usr/bin/python3 bench/convert/bench_convert.py [BUILD] [--runs N]
        [--threads N] [--keep]
Targets (issue #3): uncompressed at least as fast as dcm2niix -z n; .nii.gz at least 2x faster
than -z y at no larger file; peak memory <= 1.3x dcm2niix's.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def run(cmd):
    """Wall seconds and peak RSS (MiB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {err[-400:]}")
    return wall, ru.ru_maxrss / 1024.0


def make_ct(folder, template, nslices=300):
    """A 300-slice 512x512 chest-like CT written with pydicom from the LIDC header."""
    import pydicom
    from pydicom.uid import generate_uid
    os.makedirs(folder, exist_ok=True)
    ds0 = pydicom.dcmread(template)
    rng = np.random.default_rng(42)
    n = 512
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    cx, cy = n / 2, n / 2
    body = ((x - cx) / 220) ** 2 + ((y - cy) / 160) ** 2 <= 1
    lung_l = ((x - cx + 95) / 70) ** 2 + ((y - cy + 5) / 110) ** 2 <= 1
    lung_r = ((x - cx - 95) / 70) ** 2 + ((y - cy + 5) / 110) ** 2 <= 1
    ring = body & (((x - cx) / 205) ** 2 + ((y - cy) / 145) ** 2 >= 1)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(nslices):
        hu = np.full((n, n), -1000.0, np.float32)
        hu[body] = 40
        s = 1.0 - abs(k - nslices / 2) / (nslices / 1.6)
        hu[(lung_l | lung_r) & (rng.random() < 2) & body] = -850 * max(s, 0.2)
        hu[ring] = 700
        hu += rng.normal(0, 12, (n, n)).astype(np.float32)
        stored = np.clip(hu + 1024, -2000, 3000).astype(np.int16)
        ds = ds0.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber, ds.InstanceNumber = 9300, k + 1
        ds.ImagePositionPatient = [-180.0, -180.0, -300.0 + 1.0 * k]
        ds.SliceLocation = -300.0 + 1.0 * k
        ds.SliceThickness = 1.0
        ds.PixelSpacing = [0.703125, 0.703125]
        ds.PixelData = stored.tobytes()
        ds.save_as(os.path.join(folder, f"{(k * 7919) % nslices:05d}_{k}.dcm"))


def main():
    args = sys.argv[1:]
    build = next((a for a in args if not a.startswith("--") and os.path.isdir(a)), None)
    build = build or os.environ.get("RP_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
    runs = int(args[args.index("--runs") + 1]) if "--runs" in args else 3
    threads = args[args.index("--threads") + 1] if "--threads" in args else None
    radprep = os.path.join(build, "cli", "radprep")
    data = os.environ.get("RP_SHARED_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "..", "..", "..", "shared", "data"))
    tmp = tempfile.mkdtemp(prefix="rp_bench_convert_")
    lidc = os.path.join(data, "ct_chest_lidc0001")
    synth = os.path.join(tmp, "ct300")
    t0 = time.perf_counter()
    make_ct(synth, sorted(glob.glob(os.path.join(lidc, "*.dcm")))[0])
    print(f"generated 300-slice CT in {time.perf_counter() - t0:.1f} s ({synth})")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; best of {runs} runs\n")
    extra = ["--threads", threads] if threads else []
    modes = [
        ("uncompressed", [radprep, "process", "{src}", "--out", "{out}", "--no-gzip"] + extra,
         ["dcm2niix", "-z", "n", "-o", "{out}", "{src}"], ".nii"),
        ("gzip", [radprep, "process", "{src}", "--out", "{out}"] + extra,
         ["dcm2niix", "-z", "y", "-o", "{out}", "{src}"], ".nii.gz"),
    ]
    hdr = f"{'series':<10} {'mode':<13} {'tool':<9} {'wall s':>8} {'peak MiB':>9} {'size MB':>9}"
    print(hdr)
    print("-" * len(hdr))
    for name, src in (("LIDC 133", lidc), ("CT 300", synth)):
        for mode, ours, theirs, ext in modes:
            res = {}
            for tool, tmpl in (("dcm2niix", theirs), ("radprep", ours)):
                best_w, best_m, size = 1e9, 0, 0
                for _ in range(runs):
                    out = os.path.join(tmp, "out", tool)
                    shutil.rmtree(out, ignore_errors=True)
                    os.makedirs(out)
                    cmd = [c.replace("{src}", src).replace("{out}", out) for c in tmpl]
                    w, m = run(cmd)
                    best_w, best_m = min(best_w, w), max(best_m, m)
                    files = [f for f in glob.glob(os.path.join(out, "*" + ext))]
                    size = sum(os.path.getsize(f) for f in files)
                res[tool] = (best_w, best_m, size)
                print(f"{name:<10} {mode:<13} {tool:<9} {best_w:8.3f} {best_m:9.1f} {size / 1e6:9.2f}")
            (wt, mt, st), (wo, mo, so) = res["dcm2niix"], res["radprep"]
            print(f"{'':<10} {'':<13} {'ratio':<9} {wo / wt:8.2f} {mo / mt:9.2f} {so / st:9.4f}"
                  f"   (radprep / dcm2niix; speed-up {wt / wo:.2f}x)")
    if "--keep" not in args:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
