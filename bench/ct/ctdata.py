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


def chest_phantom(nx=512, ny=512, nz=300, sx=0.7, sy=0.7, sz=1.25, seed=1, trachea=False):
    """Body (40 HU) with two lung ellipsoids (-850 HU) and vessels, a table, a gas bubble and
    a metal wire; returns (vol[nz,ny,nx] float32 HU, affine RAS, truth lung mask uint8).
    trachea=True adds an airway (-1000 HU): a tube down the midline from the top of the
    volume to a carina at z = +70 mm, then two main bronchi into the lungs (not in the truth
    lung mask)."""
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
    if trachea:
        zz, yy, xx = np.broadcast_arrays(z, y, x)
        air = (z > 70) & (x ** 2 + (y - 20) ** 2 < 8.0 ** 2)
        for s_ in (-1, 1):  # main bronchi: (0, 20, 70) -> (+-55, 10, 30)
            p0, p1 = np.array([0.0, 20.0, 70.0]), np.array([s_ * 55.0, 10.0, 30.0])
            d = p1 - p0
            t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1] + (zz - p0[2]) * d[2])
                        / (d @ d), 0, 1)
            dist2 = ((xx - p0[0] - t * d[0]) ** 2 + (yy - p0[1] - t * d[1]) ** 2
                     + (zz - p0[2] - t * d[2]) ** 2)
            air |= dist2 < 6.0 ** 2
        air &= np.broadcast_to(body, vol.shape)
        vol[air & ~lung] = -1000
        del zz, yy, xx
    vol[(x - 20) ** 2 + (y + 50) ** 2 + (z + 160) ** 2 < 144] = -900
    vol[np.broadcast_to((np.abs(x) < 1.5) & (np.abs(y + 80) < 1.5) & (z > 10) & (z < 30), vol.shape)] = 3500
    vol += rng.normal(0, 15, vol.shape).astype(np.float32)
    aff = np.diag([sx, sy, sz, 1.0])
    aff[:3, 3] = [-nx / 2 * sx, -ny / 2 * sy, -nz / 2 * sz]
    return np.ascontiguousarray(vol), aff, lung.astype(np.uint8)


def write_ct_series(folder, vol, aff, series_uid=None, intercept=-1024.0):
    """Write vol[nz,ny,nx] (HU) as a single-frame CT series (pydicom, explicit VR little
    endian, signed 16-bit stored = HU - intercept) whose geometry is the RAS affine `aff`
    (diagonal: x, y, z spacings and origin). Returns the list of files."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    os.makedirs(folder, exist_ok=True)
    nz, ny, nx = vol.shape
    sx, sy, sz = (float(np.linalg.norm(aff[:3, i])) for i in range(3))
    ras0 = aff[:3, 3]
    lps0 = np.array([-ras0[0], -ras0[1], ras0[2]])
    study, series = generate_uid(), series_uid or generate_uid()
    files = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.2'
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = os.path.join(folder, 'ct%04d.dcm' % k)
        ds = FileDataset(path, {}, file_meta=meta, preamble=b'\0' * 128)
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName = 'PHANTOM300', 'Phantom^Chest'
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = 'CT', 2, k + 1
        ds.SeriesDescription = 'generated chest'
        ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]  # RAS x/y axes in LPS
        ds.ImagePositionPatient = [float(lps0[0]), float(lps0[1]), float(lps0[2] + k * sz)]
        ds.PixelSpacing = [sy, sx]
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = intercept, 1.0
        ds.PixelData = np.clip(np.rint(vol[k] - intercept), -32768, 32767).astype('<i2').tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
        files.append(path)
    return files
