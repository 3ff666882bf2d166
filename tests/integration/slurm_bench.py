#!/usr/bin/python3
"""Throughput of `radprep process --executor slurm` (one array task per series folder) over
the shared series, against the same folders processed here one after another. Not a test
(no assertion beyond "it worked"): run by hand as root, numbers for docs/cluster.md.

    python3 tests/integration/slurm_bench.py [--cpus N] [--mem-mb MB]

It starts the same single-node Slurm cluster as test_slurm.py (tests/lib/rpslurm.py), on this
machine's cores. The configuration is the default one (built-in rules) plus [executor]
mem_mb = 3000, so that tasks share the node's memory."""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
import rpslurm  # noqa: E402

SERIES = ["ct_head_gantry_tilt_uneven_ge", "ct_chest_lidc0001",
          "mr_brain_siemens_xa30/2001_AAHead_Scout", "mr_brain_siemens_xa30/3001_AAHead_Scout",
          "mr_brain_siemens_xa30/4001_AAHead_Scout", "mr_brain_siemens_xa30/5001_anat-T1w_acq-tfl",
          "mr_brain_siemens_xa30/7001_func-bold_task-fa_run-1",
          "mr_brain_siemens_xa30/9001_gre_field_mapping"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", type=int, default=None)
    ap.add_argument("--mem-mb", type=int, default=8192)
    a = ap.parse_args()
    missing = rpslurm.missing_tools()
    if missing or os.geteuid() != 0:
        sys.exit(f"needs root and {missing or 'Slurm'}")
    dirs = [os.path.realpath(rptest.data_path(s)) for s in SERIES]
    tmp = tempfile.mkdtemp(prefix="rp_slurm_bench_")
    conf = os.path.join(tmp, "radprep.ini")
    with open(conf, "w") as f:
        f.write(f"[node]\ndata_dir = {tmp}/data\n[executor]\nkind = slurm\nmem_mb = 3000\n")
    cluster = rpslurm.Cluster(os.path.join(tmp, "slurm"), mem_mb=a.mem_mb, cpus=a.cpus)
    try:
        cluster.start(60)
        env = dict(os.environ, SLURM_CONF=cluster.conf)
        t0 = time.time()
        r = rptest.run_radprep("--config", conf, "process", "--executor", "slurm", *dirs,
                               "--out", os.path.join(tmp, "array"), env=env, timeout=3600)
        t_array = time.time() - t0
        print(r.stdout.strip())
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
        summary = json.load(open(os.path.join(tmp, "array", "summary.json")))
        t0 = time.time()
        for i, d in enumerate(dirs):
            lr = rptest.run_radprep("--config", conf, "process", d, "--out",
                                    os.path.join(tmp, "local", f"task-{i}"), env=env,
                                    timeout=3600)
            if lr.returncode != 0:
                print(f"local {d}: {lr.stderr.strip()[-300:]}", file=sys.stderr)
        t_local = time.time() - t0
        n = len(dirs)
        print(f"MEASURE array of {n} series: slurm {t_array:.1f} s "
              f"({n / t_array * 60:.1f} series/min, {summary['tasks_completed']} completed), "
              f"local one after another {t_local:.1f} s ({n / t_local * 60:.1f} series/min), "
              f"{cluster.cpus} CPUs in the Slurm node, load {os.getloadavg()[0]:.1f}")
        print("MEASURE task run times: " +
              " ".join(f"{os.path.basename(t['folder'])}={t['run_time']}"
                       for t in summary["tasks"]))
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
