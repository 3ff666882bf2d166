#!/usr/bin/python3
"""Integration: never silently wrong geometry.

Five LIDC CT slices with Image Position (Patient) removed: the volume is still written for
inspection, but the sidecar says GeometryUnknown (with the reason) and qc.json carries a
geometry_unknown issue; a recipe with a spatial step (resample) is refused with the reason on
stderr and exit 1. The untouched slices carry no such flag.
"""
import glob
import json
import os
import sys

import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402


def sidecars(d):
    out = []
    for p in sorted(glob.glob(os.path.join(d, "*.json"))):
        if os.path.basename(p) != "qc.json":
            with open(p) as f:
                out.append(json.load(f))
    return out


def main():
    rptest.require_built(rptest.radprep_bin())
    tmp = rptest.tempdir("rp_geom_")
    files = rptest.data_files("ct_chest_lidc0001")[:5]
    good, bad = os.path.join(tmp, "good"), os.path.join(tmp, "bad")
    os.makedirs(good)
    os.makedirs(bad)
    for f in files:
        ds = pydicom.dcmread(f)
        ds.save_as(os.path.join(good, os.path.basename(f)))
        del ds.ImagePositionPatient
        ds.save_as(os.path.join(bad, os.path.basename(f)))

    o = os.path.join(tmp, "o_good")
    p = rptest.run_radprep("process", good, "--out", o, "--no-gzip")
    check(p.returncode == 0, f"good: exit {p.returncode}: {p.stderr[-300:]}")
    sc = sidecars(o)
    check(len(sc) == 1 and "GeometryUnknown" not in sc[0], "good slices flagged GeometryUnknown")

    o = os.path.join(tmp, "o_bad")
    p = rptest.run_radprep("process", bad, "--out", o, "--no-gzip")
    check(p.returncode == 0, f"bad, no recipe: exit {p.returncode}: {p.stderr[-300:]}")
    sc = sidecars(o)
    if check(len(sc) == 1, f"bad: {len(sc)} sidecars"):
        check(sc[0].get("GeometryUnknown") is True, "sidecar lacks GeometryUnknown")
        check("Image Position" in sc[0].get("GeometryUnknownReason", ""),
              f"reason: {sc[0].get('GeometryUnknownReason')}")
    with open(os.path.join(o, "qc.json")) as f:
        qc = json.dumps(json.load(f))
    check('"geometry_unknown"' in qc, "qc.json lacks the geometry_unknown issue")

    o = os.path.join(tmp, "o_bad_recipe")
    p = rptest.run_radprep("process", bad, "--out", o, "--recipe", "resample(2)")
    check(p.returncode == 1, f"bad + resample: exit {p.returncode}, want 1")
    check("geometry unknown" in p.stderr, f"stderr lacks the reason: {p.stderr[-300:]}")
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
