#!/usr/bin/python3
"""CT recipe on the real LIDC-IDRI-0001 chest CT (shared data): the series is loaded with
pydicom into HU + a RAS affine (as assembly does), the default CT recipe runs through the
small C driver bench/ct/rp_ct_run, and the outputs are checked for plausibility: grid and
affine of the 1 mm resample, lung volume in ml (printed), lungs inside the body, the QC report
(per-step statistics, recipe hash) and the montage PNG. A SciPy cross-check of the cubic
resample on the real data closes it."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))
import rptest  # noqa: E402

RECIPE = 'hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)'


def main():
    driver = rptest.require_built(os.path.join(rptest.BUILD_DIR, 'bench', 'ct', 'rp_ct_run'))
    _, _, vol, aff = rptest.load_series(rptest.data_path('ct_chest_lidc0001'), '*.dcm')
    nz, ny, nx = vol.shape
    assert (nx, ny, nz) == (512, 512, 133), vol.shape
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, 'ct.f32')
        vol.tofile(raw)
        out = os.path.join(tmp, 'out')
        cmd = [driver, '--in', raw, '--dim', '%d,%d,%d' % (nx, ny, nz),
               '--affine', ','.join(repr(float(x)) for x in aff[:3].ravel()),
               '--recipe', RECIPE, '--out', out, '--stem', 'lidc']
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        perf = json.loads(r.stdout.strip().splitlines()[-1])
        qc = json.load(open(os.path.join(out, 'lidc_qc.json')))
        # grid: origin fixed, n' = round(n * old / new)
        dim = perf['out_dim']
        expect = [int(np.floor(n * s + 0.5)) for n, s in ((nx, 0.703125), (ny, 0.703125), (nz, 2.5))]
        assert dim[:3] == expect, (dim, expect)
        oa = np.array(perf['out_affine']).reshape(3, 4)
        assert np.allclose(oa[:, 3], aff[:3, 3]) and np.allclose(np.abs(np.diag(oa[:, :3])), 1)
        # masks: plausible adult lungs (2.5-8 l), inside the body, body bigger than lungs
        masks = qc['masks']
        lung_ml, body_ml = masks['lung']['volume_ml'], masks['body']['volume_ml']
        print('LIDC-0001: lung volume %.1f ml, body %.1f ml, metal %s ml in %d components; '
              'run %.2f s, peak RSS %.0f MB' % (lung_ml, body_ml, masks['metal']['volume_ml'],
                                               qc['metal']['count'], perf['run_s'], perf['peak_rss_mb']))
        assert 2500 < lung_ml < 8000, lung_ml
        assert lung_ml < body_ml < 60000
        n3 = dim[0] * dim[1] * dim[2]
        lung = np.fromfile(os.path.join(out, 'lidc_lung.u8'), np.uint8, n3)
        body = np.fromfile(os.path.join(out, 'lidc_body.u8'), np.uint8, n3)
        assert ((lung > 0) & (body == 0)).sum() < 0.001 * (lung > 0).sum()
        # both lungs: voxels on each side of the midline (x index, affine x is -1: right = low x)
        lung3 = lung.reshape(dim[2], dim[1], dim[0])
        left, right = lung3[:, :, dim[0] // 2:].sum(), lung3[:, :, :dim[0] // 2].sum()
        assert min(left, right) > 0.3 * max(left, right), (left, right)
        # QC: every step with before/after statistics, hash of the resolved recipe
        steps = qc['steps']
        names = [s['step'] for s in steps]
        assert names == ['hu', 'resample', 'bodymask', 'lungmask', 'metal', 'clip', 'normalize'], names
        for s in steps:
            assert 'before' in s and 'after' in s and 'ms' in s
        assert steps[-1]['after']['min'] == 0 and steps[-1]['after']['max'] == 1
        assert 0 < steps[5]['clipped_fraction'] < 0.5
        assert len(qc['recipe_sha256']) == 64
        png = os.path.join(out, 'lidc_qc.png')
        with open(png, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        assert os.path.getsize(png) > 20000
        # the cubic resample on the real data equals scipy's map_coordinates (mirror) on a block
        from scipy import ndimage
        res = np.fromfile(os.path.join(out, 'lidc.f32'), np.float32, n3).reshape(dim[2], dim[1], dim[0])
        sub = (slice(150, 170), slice(100, 130), slice(60, 90))
        zz, yy, xx = np.meshgrid(np.arange(150, 170) / 2.5, np.arange(100, 130) * (1 / 0.703125),
                                 np.arange(60, 90) * (1 / 0.703125), indexing='ij')
        ref = ndimage.map_coordinates(vol.astype(np.float64), [zz, yy, xx], order=3, mode='mirror')
        ref = (np.clip(ref, -1200, 600) + 1200) / 1800
        err = np.abs(res[sub] - ref).max() * 1800
        print('cubic resample vs scipy on LIDC block: max %.2e HU' % err)
        assert err < 1e-3 * 2, err
    print('ok')


if __name__ == '__main__':
    main()
