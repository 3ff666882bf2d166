#!/usr/bin/python3
"""bench/xray — the X-ray chain in radprep (C, OpenMP) and in OpenCV from Python, side by side
in one run: present (VOI window / VOI LUT / min-max, MONOCHROME1) + CLAHE(2.0, 8x8, 8-bit) +
resize (INTER_AREA) so the longer side is 1024 + letterbox pad to 1024x1024.

Inputs: every radiograph in $RP_SHARED_DATA/xray (stored values decoded by pydicom; JPEG
lossless via dcmtk's dcmdjpeg) and a generated 3000x2500 16-bit image (full 0..65535 range,
window 32768/50000). Decoding is not timed on either side.

radprep side: build/bench/xray/rp_xr_bench (the same kernels the steps call), input already
float32 (the pipeline's volume type). OpenCV side: a child /usr/bin/python3 doing what a
careful OpenCV user does: the VOI as a uint8 lookup table over the stored range with numpy
(one gather), cv2.createCLAHE().apply, cv2.resize(INTER_AREA), cv2.copyMakeBorder.
Both: one warm-up, then the median of --reps runs; memory = the process's peak RSS (VmHWM)
and its growth over the loaded input. Each image runs three times: "1" one thread on each side
(OMP_NUM_THREADS=1, cv2.setNumThreads(1)); "def" each library's default thread count; "pas"
the same with OMP_WAIT_POLICY=passive for radprep.
The outputs are compared (8-bit, within +-1 grey level) so the two sides do the same work.

usage: make -C BUILD rp_xr_bench && /usr/bin/python3 bench/xray/bench_xray.py [BUILD] [--reps N]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# (label, extra environment for radprep, OpenCV threads): one thread each side; each
# library's default; default threads with OpenMP's passive wait policy (OpenCV's own pool
# sleeps rather than spins; on a busy machine spinning OpenMP threads steal the cores).
CONFIGS = [("1", {"OMP_NUM_THREADS": "1"}, 1), ("def", {}, 0),
           ("pas", {"OMP_WAIT_POLICY": "passive"}, 0)]
DATA = os.path.join(os.environ.get("RP_SHARED_DATA", os.path.join(HERE, "../../../shared/data")),
                    "xray")

CV_CHILD = r'''
import json, sys, time
import numpy as np
import cv2
a = json.loads(sys.argv[1])
if a.get("threads"):
    cv2.setNumThreads(a["threads"])

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0

stored = np.fromfile(a["raw"], np.uint16).reshape(a["h"], a["w"])
rss0 = hwm()
lut = np.fromfile(a["lut"], np.uint16) if a.get("lut") else None

def present_table(lo, hi):
    x = np.arange(lo, hi + 1, dtype=np.float64)
    k = a["voi"]
    if k == "window":
        c, w = a["center"], a["width"]
        if a["fn"] == "SIGMOID":
            y = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
        elif a["fn"] == "LINEAR_EXACT":
            y = np.clip((x - c) / w + 0.5, 0, 1)
        else:
            y = np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    elif k == "lut":
        idx = np.clip(np.floor(x + 0.5) - a["first"], 0, a["n"] - 1).astype(np.int64)
        y = lut[idx] / float(2 ** a["bits"] - 1)
    else:
        y = None
    return y

def chain():
    s = stored
    pad = None
    if a.get("pad"):
        pad = (s >= a["pad"][0]) & (s <= a["pad"][1])
    if a["voi"] == "minmax":
        v = s[~pad] if pad is not None else s
        lo, hi = int(v.min()), int(v.max())
        x = np.arange(0, int(s.max()) + 1, dtype=np.float64)
        y = np.clip((x - lo) / max(hi - lo, 1), 0, 1)
    else:
        y = present_table(0, int(s.max()))
    if a["invert"]:
        y = 1.0 - y
    table = np.rint(y * 255).astype(np.uint8)
    img = table[s]                                  # one gather, uint8
    if pad is not None:
        img[pad] = 0
    img = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(img)
    h, w = img.shape
    S = a["size"]
    if w >= h:
        ow, oh = S, int(round(h * S / w))
    else:
        oh, ow = S, int(round(w * S / h))
    r = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA)
    top, left = (S - oh) // 2, (S - ow) // 2
    return cv2.copyMakeBorder(r, top, S - oh - top, left, S - ow - left, cv2.BORDER_CONSTANT,
                              value=0)

ms, cpu = [], []
for i in range(a["reps"] + 1):
    t, c = time.perf_counter(), time.process_time()
    out = chain()
    ms.append((time.perf_counter() - t) * 1000)
    cpu.append((time.process_time() - c) * 1000)
ms, cpu = sorted(ms[1:]), sorted(cpu[1:])
out.tofile(a["out"])
rss = hwm()
print(json.dumps({"ms_median": ms[len(ms) // 2], "ms_min": ms[0],
                  "cpu_ms_median": cpu[len(cpu) // 2], "rss_peak_mb": rss,
                  "rss_extra_mb": rss - rss0, "threads": cv2.getNumThreads()}))
'''


def load(path, tmp):
    import pydicom
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    if ds.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        dec = os.path.join(tmp, "dec.dcm")
        subprocess.run(["dcmdjpeg", path, dec], check=True)
        ds = pydicom.dcmread(dec)
    s = ds.pixel_array.astype(np.uint16)
    a = {"invert": ds.PhotometricInterpretation == "MONOCHROME1",
         "range": [0, 2 ** int(ds.BitsStored) - 1]}
    if "PixelPaddingValue" in ds:
        lo = int(ds.PixelPaddingValue)
        hi = int(ds.get("PixelPaddingRangeLimit", lo))
        a["pad"] = [min(lo, hi), max(lo, hi)]
    if "VOILUTSequence" in ds:
        it = ds.VOILUTSequence[0]
        n, first, bits = [int(v) for v in it.LUTDescriptor]
        lut = np.frombuffer(it.LUTData, np.uint16) if isinstance(it.LUTData, bytes) \
            else np.asarray(it.LUTData, np.uint16)
        a.update(voi="lut", n=n or 65536, first=first, bits=bits)
        a["lut_data"] = lut[:a["n"]]
    elif "WindowCenter" in ds:
        wc, ww = ds.WindowCenter, ds.WindowWidth
        a.update(voi="window", center=float(wc[0] if hasattr(wc, "__len__") else wc),
                 width=float(ww[0] if hasattr(ww, "__len__") else ww),
                 fn=str(ds.get("VOILUTFunction", "LINEAR")).upper())
    else:
        a["voi"] = "minmax"
    return s, a


def generated():
    h, w = 3000, 2500
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = xx / w - 0.5, yy / h - 0.5
    img = 8000 + 4000 * v
    body = u * u / 0.16 + v * v / 0.2 < 1
    img = np.where(body, 40000 + 8000 * np.sin(yy * 0.05), img)
    img = np.where(body & (np.abs(u) < 0.04), 60000, img)
    rng = np.random.default_rng(1)
    img = img + rng.normal(0, 1500, img.shape)
    s = np.clip(img, 0, 65535).astype(np.uint16)
    return s, {"invert": False, "voi": "window", "center": 32768.0, "width": 50000.0,
               "fn": "LINEAR", "range": [0, 65535]}


def main():
    args = sys.argv[1:]
    reps = 7
    if "--reps" in args:
        i = args.index("--reps")
        reps = int(args[i + 1])
        del args[i:i + 2]
    build = args[0] if args else os.path.join(HERE, "../../build")
    exe = os.path.join(build, "bench", "xray", "rp_xr_bench")
    if not os.path.exists(exe):
        sys.exit("build it first: make -C %s rp_xr_bench" % build)
    cases = [(f, os.path.join(DATA, f)) for f in sorted(os.listdir(DATA)) if f.endswith(".dcm")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rp_xr_bench_") as tmp:
        for name, path in cases + [("generated_3000x2500_16bit", None)]:
            s, a = load(path, tmp) if path else generated()
            h, w = s.shape
            raw = os.path.join(tmp, "in.raw")
            s.tofile(raw)
            cmd = [exe, raw, str(w), str(h), "--reps", str(reps), "--out",
                   os.path.join(tmp, "rp.raw")]
            if a["invert"]:
                cmd.append("--invert")
            if a["voi"] == "window":
                cmd += ["--window", repr(a["center"]), repr(a["width"]), a["fn"]]
            elif a["voi"] == "lut":
                lf = os.path.join(tmp, "lut.raw")
                a.pop("lut_data").tofile(lf)
                a["lut"] = lf
                cmd += ["--lut", lf, str(a["n"]), str(a["first"]), str(a["bits"])]
            if "pad" in a:
                cmd += ["--pad", str(a["pad"][0]), str(a["pad"][1])]
            cmd += ["--range", str(a["range"][0]), str(a["range"][1])]
            for label, extra, threads in CONFIGS:
                env = dict(os.environ, **extra)
                rp = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env,
                                               check=True).stdout)
                ca = dict(a, raw=raw, w=w, h=h, reps=reps, size=1024, threads=threads,
                          out=os.path.join(tmp, "cv.raw"))
                cv = json.loads(subprocess.run(["/usr/bin/python3", "-c", CV_CHILD,
                                                json.dumps(ca)],
                                               capture_output=True, text=True,
                                               check=True).stdout)
                o1 = np.fromfile(os.path.join(tmp, "rp.raw"), np.uint8).astype(int)
                o2 = np.fromfile(os.path.join(tmp, "cv.raw"), np.uint8).astype(int)
                agree = float((np.abs(o1 - o2) <= 1).mean())
                rows.append((name, "%dx%d" % (w, h), a["voi"], label, rp, cv, agree))
    print("X-ray chain: present + CLAHE(2.0, 8x8, 8-bit) + resize(1024, INTER_AREA) + "
          "pad(1024); median of %d runs; load average %s" % (reps, os.getloadavg()))
    print("%-46s %-9s %-6s %4s %8s %8s %6s | %8s %8s %6s | %13s %13s %7s" % (
        "image", "size", "voi", "thr", "rp ms", "cv ms", "ratio", "rp cpu", "cv cpu", "ratio",
        "rp MiB", "cv MiB", "agree"))
    for name, size, voi, thr, rp, cv, agree in rows:
        print("%-46s %-9s %-6s %4s %8.1f %8.1f %5.2fx | %8.1f %8.1f %5.2fx | %6.0f/%6.0f %6.0f/%6.0f "
              "%6.2f%%" % (
                  name[:46], size, voi, thr, rp["ms_median"], cv["ms_median"],
                  cv["ms_median"] / rp["ms_median"], rp["cpu_ms_median"], cv["cpu_ms_median"],
                  cv["cpu_ms_median"] / rp["cpu_ms_median"], rp["rss_peak_mb"],
                  rp["rss_extra_mb"], cv["rss_peak_mb"], cv["rss_extra_mb"], 100 * agree))
    print("thr: 1 = one thread each, def = library defaults (%d CPUs), pas = def with "
          "OMP_WAIT_POLICY=passive; ms = wall time, cpu = process CPU time (all threads), "
          "medians; ratio = opencv / radprep (> 1: radprep faster); MiB = peak RSS / growth "
          "over the loaded input; agree = output pixels within +-1 grey level" % os.cpu_count())


if __name__ == "__main__":
    main()
