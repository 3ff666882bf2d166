#!/usr/bin/python3
"""bench/register — rigid registration by Mattes mutual information: radprep (pipeline/register)
beside ITK 5.2 (ImageRegistrationMethodv4 + Euler3DTransform + MattesMutualInformation v4) on
generated phantom pairs with known rigid transforms (up to 10 degrees and 10 mm): a T1-like fixed
volume (176x208x176, 1 mm) and T2-like moving volumes (128x150x64, 1.5x1.5x3 mm), so contrast,
grid and slice thickness differ as between a T1 and a T2 of one study.

Both tools get the same inputs: the same head mask as the fixed samples' region, the same rotation
centre, 32 histogram bins, 3 levels (shrink 4/2/1, smoothing 2/1/0 voxels), the same number of
samples per level (radprep: at most 100000; ITK: random sampling with that fraction), identity
start, the same threads. ITK runs with two optimisers: regular-step gradient descent (as radprep)
and plain gradient descent with ITK's convergence monitor (the SimpleITK examples' setup).

Errors: rotation = angle of R_est·R_true^T; displacement = largest |T_est(x) - T_true(x)| over
the corners of a 110x140x120 mm box around the brain (the farthest brain points).

usage: bench/register/bench_register.py [--reps N] [--threads N] [--no-itk] [--install-itk]
Env: RP_BUILD_DIR (default <repo>/build; rp_reg_bench is built there). ITK is a benchmark
reference only (Debian libinsighttoolkit5-dev); its driver in bench/register/itk is built into a
temporary folder, never into radprep.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))


def build_itk(tmp, install):
    if not os.path.exists("/usr/lib/cmake/ITK-5.2/ITKConfig.cmake"):
        if not install:
            print("ITK not installed (run with --install-itk to apt-get libinsighttoolkit5-dev)")
            return None
        if subprocess.run(["apt-get", "install", "-y", "libinsighttoolkit5-dev"]).returncode:
            return None
    bdir = os.path.join(tmp, "itk_build")
    r = subprocess.run(["cmake", "-S", os.path.join(HERE, "itk"), "-B", bdir,
                        "-DCMAKE_BUILD_TYPE=Release"], capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run(["make", "-C", bdir, "-j2"], capture_output=True, text=True)
    if r.returncode != 0:
        print("ITK driver did not build; ITK column skipped:\n" + r.stdout[-1500:] + r.stderr[-1500:])
        return None
    return os.path.join(bdir, "itk_register")


def errors(m, truth):
    a, b = np.array(m), np.array(truth)
    c = (np.trace(a[:3, :3] @ b[:3, :3].T) - 1) / 2
    ang = float(np.degrees(np.arccos(np.clip(c, -1, 1))))
    pts = np.array([[sx * 55, sy * 70, sz * 60, 1.0] for sx in (-1, 1) for sy in (-1, 1)
                    for sz in (-1, 1)])
    d = float(np.max(np.linalg.norm((pts @ a.T - pts @ b.T)[:, :3], axis=1)))
    return ang, d


def grid_args(g):
    return [str(x) for x in g["dim"] + g["spacing"] + g["origin"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3, help="runs per case (best time kept)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-itk", action="store_true")
    ap.add_argument("--install-itk", action="store_true")
    args = ap.parse_args()
    build = os.environ.get("RP_BUILD_DIR", os.path.join(SRC, "build"))
    if subprocess.run(["cmake", "--build", build, "--target", "rp_reg_bench", "-j2"],
                      stdout=subprocess.DEVNULL).returncode:
        sys.exit("cannot build rp_reg_bench in %s" % build)
    ours = os.path.join(build, "bench", "register", "rp_reg_bench")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory(prefix="rp_bench_reg_") as tmp:
        itk = None if args.no_itk else build_itk(tmp, args.install_itk)
        subprocess.run([ours, "gen", tmp], check=True, env=env)
        cases = json.load(open(os.path.join(tmp, "cases.json")))
        fx = cases["fixed"]
        rows = []
        for k, c in enumerate(cases["cases"]):
            r = json.loads(subprocess.run([ours, "run", tmp, str(k), str(args.reps)], check=True,
                                          capture_output=True, text=True, env=env).stdout)
            row = {"case": "rot %s deg, trans %s mm" % (c["rotation_deg"], c["translation_mm"]),
                   "radprep": dict(zip(("rot_err_deg", "disp_err_mm"), errors(r["matrix"], c["truth"])),
                                   seconds=r["seconds"], iterations=r["iterations"],
                                   samples=r["samples"])}
            if itk:
                # the same number of samples per level as radprep drew
                pct = [min(1.0, s / (cases["mask_voxels"] / (f ** 3)))
                       for s, f in zip(r["samples"], (4, 2, 1))]
                for mode in ("rsgd", "gd"):
                    best = None
                    for _ in range(args.reps):
                        cmd = [itk, mode, os.path.join(tmp, "fixed.raw"), *grid_args(fx),
                               os.path.join(tmp, "mask.raw"), os.path.join(tmp, c["file"]),
                               *grid_args(c["grid"]), *map(str, r["center"]), str(args.threads),
                               *map(str, pct)]
                        p = subprocess.run(cmd, capture_output=True, text=True)
                        if p.returncode:
                            print("ITK failed:", p.stderr[-500:])
                            break
                        j = json.loads(p.stdout)
                        if best is None or j["seconds"] < best["seconds"]:
                            best = j
                    if best:
                        row["itk_" + mode] = dict(zip(("rot_err_deg", "disp_err_mm"),
                                                      errors(best["matrix"], c["truth"])),
                                                  seconds=best["seconds"],
                                                  iterations=best["iterations"])
            rows.append(row)
            print(json.dumps(row))
        print("\n| case | tool | rotation error (deg) | displacement error (mm) | seconds | iterations |")
        print("|---|---|---|---|---|---|")
        for row in rows:
            for tool in ("radprep", "itk_rsgd", "itk_gd"):
                if tool in row:
                    t = row[tool]
                    print("| %s | %s | %.3f | %.3f | %.2f | %s |" % (
                        row["case"], tool, t["rot_err_deg"], t["disp_err_mm"], t["seconds"],
                        "/".join(map(str, t["iterations"]))))
        for tool in ("radprep", "itk_rsgd", "itk_gd"):
            ts = [row[tool] for row in rows if tool in row]
            if ts:
                print("%-9s worst rotation error %.3f deg, worst displacement error %.3f mm, "
                      "total %.2f s" % (tool, max(t["rot_err_deg"] for t in ts),
                                         max(t["disp_err_mm"] for t in ts),
                                         sum(t["seconds"] for t in ts)))


if __name__ == "__main__":
    main()
