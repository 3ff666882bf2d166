"""Helpers for the MR integration tests and bench/mr: read a DICOM series with pydicom into a
float32 volume + RAS affine (NIfTI convention, as dcm2niix), and build tests/integration/
mr_driver.c against the static libraries of a build tree."""
import glob
import json
import os
import subprocess

import numpy as np
import pydicom

SRC = os.environ.get("RP_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("RP_BUILD_DIR", os.path.join(SRC, "build"))
DATA = os.environ.get("RP_SHARED_DATA", os.path.join(SRC, "..", "shared", "data"))


def load_series(folder):
    """(vol[nz,ny,nx] float32, affine 4x4 RAS, first dataset) of a classic single-frame series."""
    dss = []
    for f in sorted(glob.glob(os.path.join(folder, "*"))):
        try:
            ds = pydicom.dcmread(f)
        except Exception:
            continue
        if "PixelData" in ds:
            dss.append(ds)
    iop = np.array(dss[0].ImageOrientationPatient, float)
    rowc, colc = iop[:3], iop[3:]
    normal = np.cross(rowc, colc)
    dss.sort(key=lambda d: float(np.dot(normal, np.array(d.ImagePositionPatient, float))))
    ps = [float(x) for x in dss[0].PixelSpacing]  # row spacing, column spacing
    ipp0 = np.array(dss[0].ImagePositionPatient, float)
    if len(dss) > 1:
        step = (np.array(dss[-1].ImagePositionPatient, float) - ipp0) / (len(dss) - 1)
    else:
        step = normal * float(getattr(dss[0], "SliceThickness", 1.0))
    lps = np.eye(4)
    lps[:3, 0] = rowc * ps[1]
    lps[:3, 1] = colc * ps[0]
    lps[:3, 2] = step
    lps[:3, 3] = ipp0
    aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    vol = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1))
                    + float(getattr(d, "RescaleIntercept", 0)) for d in dss])
    return vol.astype(np.float32), aff, dss[0]


def write_input(folder, i, vol, aff):
    nz, ny, nx = vol.shape
    with open(os.path.join(folder, "in%d.json" % i), "w") as f:
        json.dump({"dim": [nx, ny, nz], "affine": aff.tolist()}, f)
    np.ascontiguousarray(vol, dtype=np.float32).tofile(os.path.join(folder, "in%d.raw" % i))


def build_driver(outdir):
    """The MR driver: BUILD/bench/mr/rp_mr_driver when the build has it (bench/mr/CMakeLists.txt),
    else compiled here from mr_driver.c against BUILD's static libraries."""
    built = os.path.join(BUILD, "bench", "mr", "rp_mr_driver")
    if os.path.exists(built):
        return built
    exe = os.path.join(outdir, "mr_driver")
    libs = [os.path.join(BUILD, "pipeline", "librp_pipeline.a"),
            os.path.join(BUILD, "common", "librp_common.a")]
    for lib in libs:
        if not os.path.exists(lib):
            raise RuntimeError("build first: %s missing" % lib)
    cmd = ["gcc", "-O2", "-fopenmp", "-D_GNU_SOURCE", "-I", SRC,
           os.path.join(SRC, "tests", "integration", "mr_driver.c")] + libs + \
          ["-lcjson", "-lpng", "-ldeflate", "-lz", "-lm", "-o", exe]
    subprocess.run(cmd, check=True)
    return exe
