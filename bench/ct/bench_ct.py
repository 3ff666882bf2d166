#!/usr/bin/python3
"""bench/ct — the default CT recipe in radprep (C) and the same steps in SciPy/scikit-image/
NumPy, side by side in one run, on the real LIDC-IDRI-0001 chest CT and on a generated
300-slice chest CT (512x512x300, 0.7x0.7x1.25 mm). Also the cubic resample alone on
300x512x512 at 0.7 mm isotropic -> 1 mm.

Steps: HU (float32 input), clip(-1200,600), resample to 1 mm (cubic B-spline, mirror),
window(lung), lung mask, normalize(minmax), write (raw float32 + uint8 mask).
Each side runs in its own process; wall time is measured around the process and the peak
memory is the child's max RSS (os.wait4). Usage:

    make -C build rp_ct_run && /usr/bin/python3 bench/ct/bench_ct.py [BUILD_DIR] [--threads N]
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ctdata  # noqa: E402

RECIPE = 'hu clip(-1200,600) resample(1,1,1,bspline3) window(lung) lungmask normalize(minmax)'


def scipy_pipeline(raw, nx, ny, nz, sx, sy, sz, out, only_resample):
    """The same steps with SciPy / scikit-image / NumPy (run as a child process)."""
    from scipy import ndimage
    times = {}
    t = time.perf_counter()
    a = np.fromfile(raw, np.float32).reshape(nz, ny, nx)
    times['load'] = time.perf_counter() - t
    if not only_resample:
        t = time.perf_counter()
        a = np.clip(a, -1200, 600)
        times['clip'] = time.perf_counter() - t
    t = time.perf_counter()
    shape = [max(1, int(np.floor(n * s + 0.5))) for n, s in ((nz, sz), (ny, sy), (nx, sx))]
    r = ndimage.affine_transform(a, np.array([1 / sz, 1 / sy, 1 / sx]), output_shape=shape,
                                 order=3, mode='mirror', prefilter=True)
    del a
    times['resample'] = time.perf_counter() - t
    if only_resample:
        return times, r.shape
    t = time.perf_counter()
    w = np.clip((r - (-600 - 750)) / 1500.0, 0, 1).astype(np.float32)
    times['window'] = time.perf_counter() - t
    t = time.perf_counter()
    # lung mask: body = largest component above -500 HU after a 1-voxel opening, filled per
    # axial slice; lungs = inside the body below -500 HU, components not touching the
    # in-plane border, the largest two (second >= 20 %), closing 2 mm, axial hole filling
    hu = r
    body = ndimage.binary_opening(hu > -500, structure=np.ones((3, 3, 3)))
    lab, n = ndimage.label(body)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        body = lab == sizes.argmax()
    del lab
    for k in range(body.shape[0]):
        body[k] = ndimage.binary_fill_holes(body[k])
    cand = body & (hu < -500)
    del body
    lab, n = ndimage.label(cand)
    del cand
    keep = np.zeros(n + 1, bool)
    if n:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        border = np.unique(np.concatenate([lab[:, 0, :].ravel(), lab[:, -1, :].ravel(),
                                           lab[:, :, 0].ravel(), lab[:, :, -1].ravel()]))
        sizes[border] = 0
        order = np.argsort(sizes)[::-1]
        if sizes[order[0]] > 0:
            keep[order[0]] = True
            if len(order) > 1 and sizes[order[1]] >= 0.2 * sizes[order[0]]:
                keep[order[1]] = True
    lung = keep[lab]
    del lab
    lung = ndimage.binary_closing(lung, structure=np.ones((5, 5, 5)), border_value=1)
    for k in range(lung.shape[0]):
        lung[k] = ndimage.binary_fill_holes(lung[k])
    times['lungmask'] = time.perf_counter() - t
    del r, hu
    t = time.perf_counter()
    w = (w - w.min()) / (w.max() - w.min())
    times['normalize'] = time.perf_counter() - t
    t = time.perf_counter()
    w.astype(np.float32).tofile(os.path.join(out, 'scipy.f32'))
    lung.astype(np.uint8).tofile(os.path.join(out, 'scipy_lung.u8'))
    times['write'] = time.perf_counter() - t
    return times, w.shape, float(lung.sum())


def run_child(cmd, env=None):
    """Run cmd under GNU time so the peak RSS is the child's own (a child forked from this
    big Python process would otherwise inherit its high-water mark)."""
    t = time.perf_counter()
    p = subprocess.run(['/usr/bin/time', '-f', 'RP_MAXRSS_KB %M %U %S'] + cmd,
                       capture_output=True, env=env)
    wall = time.perf_counter() - t
    err = p.stderr.decode()
    if p.returncode != 0:
        sys.exit('failed: %s\n%s' % (' '.join(cmd[:3]), err))
    f = [line.split() for line in err.splitlines() if line.startswith('RP_MAXRSS_KB')][-1]
    return wall, int(f[1]) / 1024.0, p.stdout.decode(), float(f[2]) + float(f[3])


def bench_case(name, vol, aff, driver, tmp, threads, only_resample=False):
    nz, ny, nx = vol.shape
    sp = [float(np.linalg.norm(aff[:3, i])) for i in range(3)]
    raw = os.path.join(tmp, name + '.f32')
    vol.tofile(raw)
    out = os.path.join(tmp, name)
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    recipe = 'resample(1,1,1,bspline3)' if only_resample else RECIPE
    c_wall, c_rss, c_out, c_cpu = run_child(
        [driver, '--in', raw, '--dim', '%d,%d,%d' % (nx, ny, nz), '--affine',
         ','.join(repr(float(x)) for x in aff[:3].ravel()), '--recipe', recipe, '--out', out,
         '--stem', 'rp'] + (['--no-write'] if only_resample else []), env)
    perf = json.loads(c_out.strip().splitlines()[-1])
    qc = json.load(open(os.path.join(out, 'rp_qc.json')))
    c_steps = {s['step']: s['ms'] / 1000 for s in qc['steps']}
    c_steps['write'] = perf['write_s']
    c_steps['load'] = perf['load_s']
    s_wall, s_rss, s_out, s_cpu = run_child(
        [sys.executable, os.path.abspath(__file__), '--scipy', raw, str(nx), str(ny), str(nz),
         str(sp[0]), str(sp[1]), str(sp[2]), out] + (['--only-resample'] if only_resample else []), env)
    sres = json.loads(s_out.strip().splitlines()[-1])
    out_mb = perf['out_float32_mb']
    print('\n== %s: %dx%dx%d at %.3gx%.3gx%.3g mm -> %s at 1 mm, %d thread(s)' %
          (name, nx, ny, nz, sp[0], sp[1], sp[2], 'x'.join(map(str, perf['out_dim'][:3])), threads))
    print('%-10s %12s %12s %8s' % ('step', 'radprep s', 'scipy s', 'ratio'))
    keys = ['resample'] if only_resample else ['clip', 'resample', 'window', 'lungmask', 'normalize', 'write']
    for k in keys:
        a, b = c_steps.get(k, 0), sres['times'].get(k, 0)
        print('%-10s %12.3f %12.3f %7.1fx' % (k, a, b, b / a if a > 0 else float('nan')))
    print('%-10s %12.3f %12.3f %7.1fx   (whole process, incl. load, QC, montage)' %
          ('wall', c_wall, s_wall, s_wall / c_wall))
    print('%-10s %12.3f %12.3f %7.1fx   (user+system CPU seconds: the work, whatever the load)' %
          ('cpu', c_cpu, s_cpu, s_cpu / c_cpu))
    print('%-10s %10.0fMB %10.0fMB %7.1fx   output float32 %.0f MB: radprep peak = %.2fx output, '
          'input float32 %.0f MB' % ('peak RSS', c_rss, s_rss, s_rss / c_rss, out_mb, c_rss / out_mb,
                                     vol.nbytes / 1048576))
    if not only_resample:
        lung_ml = qc['masks']['lung']['volume_ml']
        print('lung mask: radprep %.1f ml, scipy %.1f ml' % (lung_ml, sres['lung_voxels'] / 1000))
    return dict(name=name, c_wall=c_wall, s_wall=s_wall, c_rss=c_rss, s_rss=s_rss, out_mb=out_mb,
                c_cpu=c_cpu, s_cpu=s_cpu)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--scipy':
        raw, nx, ny, nz, sx, sy, sz, out = sys.argv[2], *map(int, sys.argv[3:6]), *map(float, sys.argv[6:9]), sys.argv[9]
        only = '--only-resample' in sys.argv
        res = scipy_pipeline(raw, nx, ny, nz, sx, sy, sz, out, only)
        print(json.dumps({'times': res[0], 'lung_voxels': res[2] if len(res) > 2 else 0}))
        return
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    threads = 2
    if '--threads' in sys.argv:
        threads = int(sys.argv[sys.argv.index('--threads') + 1])
        args = [a for a in args if a != str(threads)]
    src = os.path.dirname(os.path.dirname(HERE))
    build = args[0] if args else os.environ.get('RP_BUILD_DIR', os.path.join(src, 'build'))
    driver = os.path.join(build, 'bench', 'ct', 'rp_ct_run')
    data = os.environ.get('RP_SHARED_DATA', os.path.join(src, '..', 'shared', 'data'))
    print('radprep bench/ct: recipe "%s"' % RECIPE)
    print('machine: %d cores visible, load average %.1f (wall times scale with the load; the '
          'cpu line does not)' % (os.cpu_count(), os.getloadavg()[0]))
    with tempfile.TemporaryDirectory() as tmp:
        vol, aff = ctdata.load_ct_series(os.path.join(data, 'ct_chest_lidc0001'))
        bench_case('lidc0001', vol, aff, driver, tmp, threads)
        del vol
        vol, aff, _ = ctdata.chest_phantom(512, 512, 300, 0.7, 0.7, 1.25)
        bench_case('phantom300', vol, aff, driver, tmp, threads)
        del vol
        vol, aff, _ = ctdata.chest_phantom(512, 512, 300, 0.7, 0.7, 0.7)
        bench_case('resample300_iso0.7', vol, aff, driver, tmp, threads, only_resample=True)


if __name__ == '__main__':
    main()
