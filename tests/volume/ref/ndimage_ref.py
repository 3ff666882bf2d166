#!/usr/bin/python3
"""Reference results for radprep's numeric pipeline tests, computed with Debian's
NumPy / SciPy on the same raw float32 input the C test wrote.

usage: ndimage_ref.py OP IN.f32 NX NY NZ OUT.f32 [op arguments...]
The raw files are float32 little-endian, x fastest (NumPy shape (nz, ny, nx)).
The output's shape is written to OUT.f32.shape as "nx ny nz".
"""
import sys

import numpy as np
from scipy import ndimage


def main():
    op, src, nx, ny, nz, dst = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6]), sys.argv[6]
    args = sys.argv[7:]
    a = np.fromfile(src, dtype='<f4').reshape(nz, ny, nx)
    if op == 'resample':
        # new spacing ratios (new/old) per x,y,z and spline order; grid: origin fixed,
        # n' = round(n*old/new), voxel i' at old index i'*ratio
        rx, ry, rz, order = float(args[0]), float(args[1]), float(args[2]), int(args[3])
        n_new = [max(1, int(np.floor(n / r + 0.5))) for n, r in ((nz, rz), (ny, ry), (nx, rx))]
        zz, yy, xx = np.meshgrid(np.arange(n_new[0]) * rz, np.arange(n_new[1]) * ry,
                                 np.arange(n_new[2]) * rx, indexing='ij')
        out = ndimage.map_coordinates(a.astype(np.float64), [zz, yy, xx], order=order,
                                      mode='mirror', prefilter=True)
    elif op == 'window':
        level, width = float(args[0]), float(args[1])
        out = np.clip((a.astype(np.float64) - (level - width / 2)) / width, 0, 1)
    elif op == 'minmax':
        d = a.astype(np.float64)
        out = (d - d.min()) / (d.max() - d.min())
    elif op == 'zscore':
        d = a.astype(np.float64)
        out = (d - d.mean()) / d.std()
    elif op == 'percentile':
        lo, hi = float(args[0]), float(args[1])
        d = a.astype(np.float64)
        plo, phi = np.percentile(a, lo), np.percentile(a, hi)
        out = np.clip((d - plo) / (phi - plo), 0, 1)
    elif op == 'gaussian':
        sx, sy, sz = map(float, args[:3])
        out = ndimage.gaussian_filter(a.astype(np.float64), sigma=(sz, sy, sx), mode='reflect',
                                      truncate=4.0)
    elif op == 'median':
        r = int(args[0])
        out = ndimage.median_filter(a, size=2 * r + 1, mode='reflect')
    elif op == 'label':
        # 6-connected components of a > 0.5: write label sizes sorted descending
        lab, n = ndimage.label(a > 0.5)
        sizes = np.sort(np.bincount(lab.ravel())[1:])[::-1].astype(np.float32)
        out = sizes.reshape(1, 1, -1) if n else np.zeros((1, 1, 1), np.float32)
    elif op == 'fill3d':
        out = ndimage.binary_fill_holes(a > 0.5).astype(np.float32)
    elif op == 'fill2d':
        out = np.stack([ndimage.binary_fill_holes(s > 0.5) for s in a]).astype(np.float32)
    elif op == 'dilate':
        r = int(args[0])
        out = ndimage.binary_dilation(a > 0.5, structure=np.ones((2 * r + 1,) * 3)).astype(np.float32)
    elif op == 'canonical':
        # nibabel's as_closest_canonical; the resulting affine goes to OUT.f32.affine
        import nibabel as nib
        aff = np.eye(4)
        aff[:3, :] = np.array([float(x) for x in args[:12]]).reshape(3, 4)
        img = nib.as_closest_canonical(nib.Nifti1Image(a.transpose(2, 1, 0), aff))
        out = np.asarray(img.dataobj).transpose(2, 1, 0)
        with open(dst + '.affine', 'w') as f:
            f.write(' '.join('%.17g' % x for x in img.affine[:3].ravel()))
    else:
        sys.exit('unknown op ' + op)
    out = np.ascontiguousarray(out, dtype='<f4')
    out.tofile(dst)
    with open(dst + '.shape', 'w') as f:
        f.write('%d %d %d\n' % (out.shape[2], out.shape[1], out.shape[0]))


if __name__ == '__main__':
    main()
