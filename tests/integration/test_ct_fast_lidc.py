#!/usr/bin/python3
"""The default CT job on the real LIDC-IDRI-0001 chest CT (shared data), as a batch run
(`radprep process DIR --rule ...`), checked for what the fast path promises:

  - storage: the image is int16 with scl_slope/scl_inter (sidecar Provenance.Storage says so,
    with the HU step); read back with its scaling it equals the same job stored as float32
    (a rule with dtype = float32) within the stated max_abs_error, and as HU within half a
    0.1 HU step; masks are uint8; all outputs together are smaller than the DICOM series;
  - cores: the sidecar and qc.json say how many threads ran (every core given: 2 here);
  - masks: the body mask equals SciPy's binary_opening + largest component + axial hole
    filling on the same resampled volume (Dice >= 0.99); the lung mask matches the mask with
    the airway kept (lungmask(...,0), the previous behaviour) with Dice >= 0.99 and volume
    within 1 %, and the metal components are SciPy's;
  - airway: the trachea is found independently here (strict air, HU < -900, tracked from the
    neck down near the midline) and, in every axial slice above the carina (z = -116 mm in
    this series, read off the images; QC must place it within 10 mm), the lung mask holds no
    voxel of it, while the airway-kept mask did.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

SRC = os.environ.get('RP_SOURCE_DIR', os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.environ.get('RP_BUILD_DIR', os.path.join(SRC, 'build'))
DATA = os.environ.get('RP_SHARED_DATA', os.path.join(SRC, '..', 'shared', 'data'))
LIDC = os.path.join(DATA, 'ct_chest_lidc0001')
STEPS = 'hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)'
CARINA_Z_MM = -116.0  # world z (RAS) of the carina of LIDC-IDRI-0001, read off coronal views


def run(*args):
    r = subprocess.run([os.path.join(BUILD, 'cli', 'radprep')] + list(args), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-3000:])
    return r


def load(path):
    import nibabel as nib
    img = nib.load(path)
    return img, np.asanyarray(img.dataobj)


def dice(a, b):
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


def main():
    from scipy import ndimage
    assert os.path.isdir(LIDC), 'shared data missing: %s' % LIDC
    dicom_mb = sum(os.path.getsize(os.path.join(LIDC, f)) for f in os.listdir(LIDC)) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, 'radprep.ini')
        with open(conf, 'w') as f:
            f.write('[rule ct_float]\nmodality = CT\nsteps = %s\ndtype = float32\n\n'
                    '[rule ct_keep_airway]\nmodality = CT\nsteps = %s\n\n'
                    '[rule ct_hu]\nmodality = CT\nsteps = hu resample(1,1,1,bspline3)\n'
                    'dtype = float32\n'
                    % (STEPS, STEPS.replace('lungmask', 'lungmask(-500,20,2,1500,0)')))
        a, b, k, h = (os.path.join(tmp, x) for x in ('a', 'b', 'k', 'h'))
        bad = os.path.join(tmp, 'bad.ini')
        with open(bad, 'w') as f:
            f.write('[rule x]\nmodality = CT\nsteps = hu\ndtype = int8\n')
        r = subprocess.run([os.path.join(BUILD, 'cli', 'radprep'), '--config', bad, 'process',
                            LIDC, '--out', os.path.join(tmp, 'bad')], capture_output=True, text=True)
        assert r.returncode != 0 and 'dtype' in r.stderr and ':4' in r.stderr, r.stderr
        run('process', LIDC, '--out', a, '--rule', 'ct_default')
        run('--config', conf, 'process', LIDC, '--out', b, '--rule', 'ct_float')
        run('--config', conf, 'process', LIDC, '--out', k, '--rule', 'ct_keep_airway')
        run('--config', conf, 'process', LIDC, '--out', h, '--rule', 'ct_hu')
        stem = [f for f in os.listdir(a) if f.endswith('.nii.gz') and '_mask-' not in f][0][:-7]

        # --- storage: int16 + scaling, equal to the float32 job within the stated error
        ia, da = load(os.path.join(a, stem + '.nii.gz'))
        ib, db = load(os.path.join(b, stem + '.nii.gz'))
        assert ia.get_data_dtype() == np.int16, ia.get_data_dtype()
        assert ib.get_data_dtype() == np.float32, ib.get_data_dtype()
        side = json.load(open(os.path.join(a, stem + '.json')))
        sto = side['Provenance']['Storage']
        assert (sto['datatype'], sto['dtype_rule'], sto['hu_step']) == ('int16', 'auto', 0.1), sto
        err = float(np.abs(da - db).max())
        print('int16 vs float32 job: max |difference| %.3g (stated %.3g), sizes %.1f vs %.1f MB'
              % (err, sto['max_abs_error'], os.path.getsize(os.path.join(a, stem + '.nii.gz')) / 1e6,
                 os.path.getsize(os.path.join(b, stem + '.nii.gz')) / 1e6))
        assert err <= sto['max_abs_error'] * 1.01 + 1e-6, (err, sto)
        stored = np.asanyarray(ia.dataobj.get_unscaled())
        hu_a = stored * sto['hu_step'] + sto['hu_inter']
        qcb = json.load(open(os.path.join(b, 'qc.json')))
        norm = qcb['series'][0]['stacks'][0]['recipe']['steps'][-1]['per_channel'][0]
        hu_b = db.astype(np.float64) * norm['divided_by'] + norm['subtracted']
        assert np.abs(hu_a - hu_b).max() <= 0.05 + 2e-3, np.abs(hu_a - hu_b).max()
        for m in ('body', 'lung', 'metal'):
            assert load(os.path.join(a, '%s_mask-%s.nii.gz' % (stem, m)))[0].get_data_dtype() == np.uint8
        out_mb = sum(os.path.getsize(os.path.join(a, f)) for f in os.listdir(a)) / 1e6
        print('outputs %.1f MB, DICOM %.1f MB' % (out_mb, dicom_mb))
        assert out_mb <= dicom_mb, (out_mb, dicom_mb)

        # --- cores: said in the sidecar and the QC report
        qc = json.load(open(os.path.join(a, 'qc.json')))
        want = int(os.environ.get('OMP_NUM_THREADS', len(os.sched_getaffinity(0))))
        assert side['Provenance']['Threads'] == qc['threads'] == want, (side['Provenance']['Threads'], qc['threads'], want)
        assert qc['total_s'] > 0

        # --- masks against SciPy on the same 1 mm volume in HU (z, y, x, stored row order)
        hu = np.ascontiguousarray(load(os.path.join(h, stem + '.nii.gz'))[1].transpose(2, 1, 0))
        hu = hu.astype(np.float32)
        mk = {m: np.ascontiguousarray(load(os.path.join(a, '%s_mask-%s.nii.gz' % (stem, m)))[1]
                                      .transpose(2, 1, 0)) > 0 for m in ('body', 'lung', 'metal')}
        lung_kept = np.ascontiguousarray(
            load(os.path.join(k, '%s_mask-lung.nii.gz' % stem))[1].transpose(2, 1, 0)) > 0
        # opening: erosion counts outside as foreground, dilation as background
        body = ndimage.binary_erosion(hu > -500, structure=np.ones((3, 3, 3)), border_value=1)
        body = ndimage.binary_dilation(body, structure=np.ones((3, 3, 3)))
        lab, n = ndimage.label(body)
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        body = lab == sizes.argmax()
        for z in range(body.shape[0]):
            body[z] = ndimage.binary_fill_holes(body[z])
        d_body = dice(body, mk['body'])
        ml, mn = ndimage.label(hu > 3000)
        ms = np.bincount(ml.ravel())[1:]
        d_lung = dice(lung_kept, mk['lung'])
        dv = (mk['lung'].sum() - lung_kept.sum()) / lung_kept.sum()
        print('body Dice vs SciPy %.5f; lung Dice vs airway kept %.5f, volume %+.2f %%; metal '
              'components %d (SciPy %d)' % (d_body, d_lung, 100 * dv, qc_metal_count(a),
                                            int((ms >= 10).sum())))
        assert d_body >= 0.99 and d_lung >= 0.99 and abs(dv) <= 0.01
        assert qc_metal_count(a) == int((ms >= 10).sum())

        # --- the trachea above the carina: found here, absent from the lung mask
        aff = ia.affine
        zmm = aff[2, 2] * np.arange(hu.shape[0]) + aff[2, 3]
        step = [s for s in side['Provenance']['Recipe']['steps'] if s['step'] == 'lungmask'][0]
        aw = qc['series'][0]['stacks'][0]['recipe']['steps'][3]['airway']
        assert aw['found'] and abs(aw['carina_mm_ras'][2] - CARINA_Z_MM) <= 10, aw
        assert step['params']['airway'] == 'removed'
        top = max(z for z in range(hu.shape[0]) if mk['lung'][z].any() or lung_kept[z].any())
        above = [z for z in range(hu.shape[0]) if CARINA_Z_MM + 5 <= zmm[z] and z <= top]
        lumen = trachea(hu, mk['body'], above)
        n_slices = sum(1 for z in above if lumen[z].any())
        inside = int((lumen & mk['lung']).sum())
        before = int((lumen & lung_kept).sum())
        print('trachea found in %d of %d slices above the carina (%d voxels): in the lung mask %d '
              'voxels, with the airway kept %d' % (n_slices, len(above), int(lumen.sum()), inside, before))
        assert n_slices >= 0.9 * len(above), (n_slices, len(above))
        assert before > 0.5 * lumen.sum()
        assert inside == 0, inside
    print('ok')


def qc_metal_count(out):
    qc = json.load(open(os.path.join(out, 'qc.json')))
    return qc['series'][0]['stacks'][0]['recipe']['metal']['count']


def trachea(hu, body, slices):
    """Lumen of the trachea (HU < -900, 2-D components), tracked from the highest slice
    down: the component nearest the body's left-right centre with 40..700 mm^2 at the top,
    then the component overlapping the one above."""
    from scipy import ndimage
    lumen = np.zeros(hu.shape, bool)
    prev = None
    for z in sorted(slices, reverse=True):
        lab, n = ndimage.label(hu[z] < -900)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())
        pick = 0
        if prev is None:
            xs = np.nonzero(body[z])[1]
            mid = (xs.min() + xs.max()) / 2 if len(xs) else hu.shape[2] / 2
            cms = ndimage.center_of_mass(np.ones_like(lab), lab, range(1, n + 1))
            best = 1e9
            for i, c in enumerate(cms, 1):
                m = lab == i
                edge = m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()
                if 40 <= sizes[i] <= 700 and abs(c[1] - mid) < 35 and not edge:
                    if abs(c[1] - mid) < best:
                        best, pick = abs(c[1] - mid), i
        else:
            over = np.bincount(lab[prev], minlength=n + 1)
            over[0] = 0
            if over.max() > 0 and sizes[over.argmax()] <= 700:
                pick = int(over.argmax())
        if pick:
            lumen[z] = lab == pick
            prev = lumen[z]
    return lumen


if __name__ == '__main__':
    main()
