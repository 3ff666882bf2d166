"""Helpers for the MR integration tests and bench/mr: read a DICOM series with pydicom into a
float32 volume + RAS affine (NIfTI convention, as dcm2niix), and find the MR driver
(tests/integration/mr_driver.c, built by bench/mr/CMakeLists.txt as rp_mr_driver)."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

SRC = rptest.SOURCE_DIR
BUILD = rptest.BUILD_DIR
DATA = rptest.SHARED_DATA


def load_series(folder):
    """(vol[nz,ny,nx] float32, affine 4x4 RAS, first dataset) of a classic single-frame series."""
    _, dss, vol, aff = rptest.load_series(folder)
    return vol, aff, dss[0]


def write_input(folder, i, vol, aff):
    nz, ny, nx = vol.shape
    with open(os.path.join(folder, "in%d.json" % i), "w") as f:
        json.dump({"dim": [nx, ny, nz], "affine": aff.tolist()}, f)
    np.ascontiguousarray(vol, dtype=np.float32).tofile(os.path.join(folder, "in%d.raw" % i))


def build_driver(outdir=None):
    """Path of the MR driver of this build (target rp_mr_driver); fails when it is not built.
    outdir is unused (kept for bench/mr/bench_mr.py)."""
    return rptest.require_built(os.path.join(BUILD, "bench", "mr", "rp_mr_driver"))
