#!/usr/bin/python3
"""A recipe that starts `hu resample(...)` reads the decoded slices straight into the first
resampling pass (no float volume at the native grid) when resampling makes the grid smaller;
the result must be the float path's to the byte. On the real LIDC-IDRI-0001 chest CT (shared data) as is, with Pixel Padding Value
-1024 added (stored -1024 is the area outside the reconstruction circle: the padding mask
and fill are exercised), a part of it with slope 0.5 and a fractional intercept (the
statistics then come from float sums), and a part without Pixel Padding (the statistics then
come from the int16 samples directly), each recipe below runs twice, once with
RP_PROCESS_DEFER=1 (deferred wherever possible) and once with RP_PROCESS_DEFER=0 (the float
path):

  - every NIfTI (image and masks, decompressed) is byte-identical;
  - qc.json is identical but for timings and the output folder in paths (the `hu` step's
    statistics and below_minus1024_fraction, the padding fill and count included);
  - the debug log says the deferred path ran (first pass along x, along y), and that it
    materialised where the first pass runs along z (same bytes too).
Without the variable the node chooses by the grid: LIDC's 2.5 mm slices to 1 mm (the grid
grows) take the float path, 2 x 2 x 1.25 mm (it shrinks) the deferred one.
"""
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

LIDC = rptest.data_path("ct_chest_lidc0001")
MARK = "native slices read by the first resampling pass"
MATERIALISED = "deferred volume materialised"
RULES = {
    "ct_x": "hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) "
            "normalize(minmax)",
    "ct_y": "hu resample(0.5,1.5,2,bspline3) clip(-1000,400)",
    "ct_lin": "hu resample(2,2,1.25,linear) bodymask",
    "ct_z": "hu resample(0.7,0.7,5,bspline3) metal",
}
# (series, rule, first pass from the decoded slices)
CASES = [("lidc", "ct_x", True), ("pad", "ct_x", True), ("slope", "ct_x", True),
         ("nopad", "ct_x", True),
         ("pad", "ct_y", True), ("pad", "ct_lin", True), ("pad", "ct_z", False)]


def variant(folder, n, **tags):
    """The n lowest LIDC slices (evenly spaced) with tags changed (pydicom), written to
    folder."""
    import pydicom
    os.makedirs(folder)
    z = {f: float(pydicom.dcmread(os.path.join(LIDC, f), stop_before_pixels=True)
                  .ImagePositionPatient[2]) for f in os.listdir(LIDC)}
    for src in sorted(z, key=z.get)[:n]:
        ds = pydicom.dcmread(os.path.join(LIDC, src))
        for k, v in tags.items():
            if v is None:
                if k in ds:
                    delattr(ds, k)
            elif k == "PixelPaddingValue":
                ds.add_new(0x00280120, "SS", v)
            else:
                setattr(ds, k, v)
        ds.save_as(os.path.join(folder, src))
    return folder
TIMING = {"timing_s", "ms", "total_s", "read_s", "elapsed_s"}


def strip(o, out_dir):
    if isinstance(o, dict):
        return {k: strip(v, out_dir) for k, v in o.items() if k not in TIMING}
    if isinstance(o, list):
        return [strip(v, out_dir) for v in o]
    if isinstance(o, str):
        return o.replace(out_dir, "OUT")
    return o


def run(conf, series, out, rule, no_defer, choose=False):
    env = dict(os.environ, RP_LOG_LEVEL="debug")
    env.pop("RP_PROCESS_DEFER", None)
    if not choose:
        env["RP_PROCESS_DEFER"] = "0" if no_defer else "1"
    p = rptest.run_radprep("--config", conf, "process", series, "--out", out, "--rule", rule,
                           env=env)
    rptest.check(p.returncode == 0, "%s (no_defer=%d): exit %d: %s" %
                 (rule, no_defer, p.returncode, (p.stdout + p.stderr)[-1500:]))
    return p.stdout + p.stderr


def main():
    rptest.require_built(rptest.radprep_bin())
    tmp = rptest.tempdir("rp_ct_deferred")
    conf = os.path.join(tmp, "radprep.ini")
    with open(conf, "w") as f:
        for name, steps in RULES.items():
            f.write("[rule %s]\nmodality = CT\nsteps = %s\n\n" % (name, steps))
    n = len(os.listdir(LIDC))
    series = {"lidc": LIDC,
              "pad": variant(os.path.join(tmp, "pad"), n, PixelPaddingValue=-1024),
              "slope": variant(os.path.join(tmp, "slope"), 60, PixelPaddingValue=-1024,
                               RescaleSlope=0.5, RescaleIntercept=-1000.25),
              # no padding declared, slope 1: the statistics from the int16 samples directly
              "nopad": variant(os.path.join(tmp, "nopad"), 60, PixelPaddingValue=None)}
    for ser, rule, expect in CASES:
        name = ser + "/" + rule
        a = os.path.join(tmp, ser + "_" + rule + "_deferred")
        b = os.path.join(tmp, ser + "_" + rule + "_float")
        log_a = run(conf, series[ser], a, rule, False)
        log_b = run(conf, series[ser], b, rule, True)
        rptest.check(MARK in log_a and (MATERIALISED not in log_a) == expect,
                     "%s: first pass %s" % (name, "from the decoded slices" if expect
                                            else "materialised"))
        rptest.check(MARK not in log_b, "%s: RP_PROCESS_DEFER=0 takes the float path" % name)
        niis = sorted(f for f in os.listdir(a) if f.endswith(".nii.gz"))
        rptest.check(len(niis) >= 1 and niis == sorted(f for f in os.listdir(b)
                                                        if f.endswith(".nii.gz")),
                     "%s: same NIfTI files %s" % (name, niis))
        for f in niis:
            with gzip.open(os.path.join(a, f)) as x, gzip.open(os.path.join(b, f)) as y:
                rptest.check(x.read() == y.read(), "%s: %s byte-identical" % (name, f))
        with open(os.path.join(a, "qc.json")) as x, open(os.path.join(b, "qc.json")) as y:
            qa, qb = strip(json.load(x), a), strip(json.load(y), b)
        rptest.check(qa == qb, "%s: qc.json identical but for timings" % name)
        steps_qc = qa["series"][0]["stacks"][0]["recipe"]["steps"]
        rptest.check(steps_qc[0].get("below_minus1024_fraction", -1) >= 0 and
                     steps_qc[0]["before"]["nonfinite"] == 0,
                     "%s: hu step statistics present" % name)
        if ser not in ("lidc", "nopad"):
            pad = qa["series"][0]["stacks"][0].get("padding", {})
            rptest.check(pad.get("voxels", 0) > 0, "%s: padding filled (%s)" % (name, pad))
    for rule, expect in (("ct_x", False), ("ct_lin", True)):
        log = run(conf, LIDC, os.path.join(tmp, "choose_" + rule), rule, False, choose=True)
        rptest.check((MARK in log) == expect, "lidc/%s: by default the %s path" % (
            rule, "deferred" if expect else "float"))
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
