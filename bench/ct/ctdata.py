"""Shared helpers for the CT benchmark and the LIDC integration test: load a DICOM CT series
with pydicom into HU float32 + a RAS affine (x fastest, like radprep), and generate a chest
phantom with known lungs."""
import glob
import os

import numpy as np


def load_ct_series(folder):
    import pydicom
    ds = [pydicom.dcmread(f) for f in sorted(glob.glob(os.path.join(folder, '*.dcm')))]
    ds = [d for d in ds if hasattr(d, 'PixelData')]
    if not ds:
        raise FileNotFoundError('no DICOM images in %s (is RP_SHARED_DATA set?)' % folder)
    iop = np.array(ds[0].ImageOrientationPatient, dtype=float)
    r, c = iop[:3], iop[3:]
    n = np.cross(r, c)
    ds.sort(key=lambda d: float(np.dot(n, np.array(d.ImagePositionPatient, dtype=float))))
    vol = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, 'RescaleSlope', 1))
                    + float(getattr(d, 'RescaleIntercept', 0)) for d in ds])  # (nz, ny, nx)
    ps = [float(x) for x in ds[0].PixelSpacing]  # row spacing, column spacing
    p0 = np.array(ds[0].ImagePositionPatient, dtype=float)
    p1 = np.array(ds[-1].ImagePositionPatient, dtype=float)
    step = (p1 - p0) / max(1, len(ds) - 1)
    lps = np.eye(4)
    lps[:3, 0] = r * ps[1]
    lps[:3, 1] = c * ps[0]
    lps[:3, 2] = step
    lps[:3, 3] = p0
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return np.ascontiguousarray(vol, dtype=np.float32), ras


def chest_phantom(nx=512, ny=512, nz=300, sx=0.7, sy=0.7, sz=1.25, seed=1):
    """Body (40 HU) with two lung ellipsoids (-850 HU) and vessels, a table, a gas bubble and
    a metal wire; returns (vol[nz,ny,nx] float32 HU, affine RAS, truth lung mask uint8)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid((np.arange(nz) - nz / 2) * sz, (np.arange(ny) - ny / 2) * sy,
                          (np.arange(nx) - nx / 2) * sx, indexing='ij', sparse=True)
    vol = np.full((nz, ny, nx), -1000, np.float32)
    body = (x / 150) ** 2 + (y / 110) ** 2 <= 1
    vol[np.broadcast_to(body, vol.shape)] = 40
    table = (y < -125) & (y > -135) & (np.abs(x) < 170)
    vol[np.broadcast_to(table, vol.shape)] = 200
    lung = np.zeros(vol.shape, bool)
    for s in (-1, 1):
        lung |= ((x - s * 70) / 55) ** 2 + ((y - 5) / 75) ** 2 + (z / 130) ** 2 <= 1
    vol[lung] = -850
    for k in range(12):
        cx, cy, cz = (70 if k % 2 else -70) + (k % 3 - 1) * 20, 5 + (k % 4 - 1.5) * 20, (k - 5.5) * 18
        vol[((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 < 36) & lung] = 40
    vol[(x - 20) ** 2 + (y + 50) ** 2 + (z + 160) ** 2 < 144] = -900
    vol[np.broadcast_to((np.abs(x) < 1.5) & (np.abs(y + 80) < 1.5) & (z > 10) & (z < 30), vol.shape)] = 3500
    vol += rng.normal(0, 15, vol.shape).astype(np.float32)
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = [-nx / 2 * sx, -ny / 2 * sy, -nz / 2 * sz]
    return np.ascontiguousarray(vol), aff, lung.astype(np.uint8)
