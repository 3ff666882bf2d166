#!/usr/bin/python3
"""Jobs through Slurm: a single-node Slurm cluster on loopback (munge, slurmctld, slurmd from
Debian's packages, generated slurm.conf, free ports; tests/lib/rpslurm.py) started by the test
as root, and radprepd with [executor] kind = slurm.

- a real CT series (28 files) sent to the node is processed through Slurm: the Slurm job id
  is the job's exec_id and shows in `radprep jobs`, scontrol says COMPLETED, the resources of
  its [rule] (cpus_per_task, mem_mb, time_limit_s) are the Slurm job's, and the outputs
  are byte-identical to those of a node with the local executor (series.json differs only
  in the job number); the result manifest lists what the node recorded;
- a job over its time limit (--time=1 from job_timeout_s = 60) ends as a timeout;
- kill -9 of radprepd while its Slurm job is in flight, restart: the job is reattached (no
  second sbatch for it) and recorded once, one version folder;
- slurmctld stopped: a series is still received and completes, its job waits in the queue
  (the attempt not counted) and is submitted when slurmctld is back;
- `radprep process --executor slurm DIR... --out OUT` runs one array task per series folder
  and writes a summary; the NIfTIs equal those of `radprep process` run locally;
- `radprep curate --executor slurm DIR... --out DS` preprocesses the folders as an array and
  curates them: the same dataset as `radprep curate --executor local`.
- a job over its memory limit ends as oom: a phantom of 512x512 slices whose rule resamples
  it to 0.5 mm with mem_mb = 200 fails its allocation under the batch script's `ulimit -v`
  (the job's --mem), exits 4, Slurm says FAILED 4:0, `radprep jobs` says dead (one attempt)
  with reason oom, and the node goes on receiving and processing.
Memory limits: without cgroups (this sandbox) Slurm enforces --mem only by sampling
(JobAcctGatherParams=OverMemoryKill), too late for a worker allocating fast; the batch
script's address-space bound (RLIMIT_AS of the job's memory, as the local executor) is the
hard bound that makes running the oom case here safe. The mapping of Slurm's other memory
ends (FAILED by SIGKILL, OUT_OF_MEMORY) is unit-tested (tests/sched/test_exec_slurm.c).
Measured and printed: series complete → Slurm job start, and array vs local throughput.
Slurm missing is a FAILURE: scripts/debian-packages.txt installs it."""
import filecmp
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_lib as rp  # noqa: E402
import rptest  # noqa: E402
sys.path.insert(0, os.path.join(rptest.SOURCE_DIR, "tests", "lib"))
import rpslurm  # noqa: E402

CT = "ct_head_gantry_tilt_uneven_ge"
ARRAY_SERIES = [CT, "mr_brain_siemens_xa30/9001_gre_field_mapping",
                "mr_brain_siemens_xa30/7001_func-bold_task-fa_run-1"]
EXECUTOR = "[executor]\nkind = slurm\npoll_s = 0.5\nmem_mb = 3000\n"
# The real CT (body part HEAD; the phantoms have none) gets a rule with its own resources, on
# both nodes (same rule name, same outputs): sbatch --cpus-per-task/--mem/--time from it.
RULE = ("[rule ct_head]\nmodality = CT\nbody_part = HEAD\nsteps = hu clip(-1000,1000)\n"
        "outputs = nifti json\npriority = 200\ncpus_per_task = 1\nmem_mb = 2500\n"
        "time_limit_s = 300\n")
# A series too large for its job's memory: 40 slices of 512x512 resampled to 0.5 mm is a
# 1024x1024x80 float volume (320 MB) under mem_mb = 200, enough for the worker to start.
OOM_DESC = "RPTEST OOM"
OOM_RULE = (f"[rule oom]\nmodality = CT\nseries_description = {OOM_DESC}\n"
            "steps = hu resample(0.5,0.5,0.5)\noutputs = nifti\npriority = 300\n"
            "cpus_per_task = 1\nmem_mb = 200\n")


def tree(d):
    out = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            out[os.path.relpath(p, d)] = p
    return out


def untimed(o):
    """A JSON value without its timings (keys ms, *_ms, *_s): they differ run to run."""
    if isinstance(o, dict):
        return {k: untimed(v) for k, v in o.items()
                if not (k == "ms" or k.endswith("_ms") or k.endswith("_s"))}
    if isinstance(o, list):
        return [untimed(v) for v in o]
    return o


def slurm_jobs_named(cluster, name):
    r = cluster.run("/usr/bin/scontrol", "-o", "show", "job")
    return [l for l in r.stdout.splitlines() if f" JobName={name} " in l]


class SlurmTest(unittest.TestCase):
    def test_slurm_executor(self):
        missing = rpslurm.missing_tools()
        self.assertEqual(missing, [], "Slurm/munge not installed (scripts/debian-packages.txt)")
        self.assertEqual(os.geteuid(), 0, "the test starts slurmd, which needs root")
        ct_dir = rptest.data_path(CT)
        ct_files = sorted(os.path.join(ct_dir, f) for f in os.listdir(ct_dir))
        self.assertEqual(len(ct_files), 28)
        tmp = rp.tmpdir("rp_slurm_")
        cluster = rpslurm.Cluster(os.path.join(tmp, "slurm"), mem_mb=8192)
        local = slurm = None
        try:
            cluster.start(60)
            senv = {"SLURM_CONF": cluster.conf}
            common = "job_timeout_s = 60\njob_max_attempts = 1"
            local = rp.Node(os.path.join(tmp, "local"), quiet_s=1, extra_node=common,
                            extra=RULE).start()
            # phantoms: one that hangs (time limit), one slow (kill -9 while in flight)
            _, _, hang_uid = rp.make_series(os.path.join(tmp, "ph_hang"), 4,
                                            images_in_acquisition=4)
            _, _, slow_uid = rp.make_series(os.path.join(tmp, "ph_slow"), 4,
                                            images_in_acquisition=4)
            senv["RP_TEST_JOB_FAULT"] = f"hang@{hang_uid},slow@{slow_uid}"
            slurm = rp.Node(os.path.join(tmp, "slurm_node"), quiet_s=1, extra_node=common,
                            extra=EXECUTOR + RULE + OOM_RULE)
            slurm.start(env=senv)

            # -- time limit: started first, checked last (Slurm ends it after ~60-90 s)
            files = sorted(os.path.join(tmp, "ph_hang", f) for f in os.listdir(
                os.path.join(tmp, "ph_hang")))
            self.assertEqual(rp.storescu(slurm.port, files)[:2], (0, 4))

            # -- over its memory limit: sent now, checked after the CT
            import pydicom
            oom_files, _, oom_uid = rp.make_series(os.path.join(tmp, "ph_oom"), 40,
                                                   images_in_acquisition=40, size=512)
            for f in oom_files:
                ds = pydicom.dcmread(f)
                ds.SeriesDescription = OOM_DESC
                ds.save_as(f)
            self.assertEqual(rp.storescu(slurm.port, oom_files)[:2], (0, 40))

            # -- a real CT through Slurm and locally: same bytes
            ct_uid = None
            for node in (local, slurm):
                rc, ok, out = rp.storescu(node.port, ct_files)
                self.assertEqual((rc, ok), (0, 28), out[-2000:])
            ct_uid = str(pydicom.dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID)
            jl = local.wait_job(ct_uid, 1, states=("done", "dead"), timeout=300)
            js = slurm.wait_job(ct_uid, 1, states=("done", "dead"), timeout=300)
            self.assertEqual((jl["state"], js["state"]), ("done", "done"),
                             (jl, js, slurm.log()[-3000:]))
            exec_id = slurm.db("SELECT exec_id FROM jobs WHERE id=?", (js["id"],))[0][0]
            self.assertRegex(exec_id or "", r"^\d+$")
            listing = slurm.cli("jobs", "--json").stdout
            row = [j for j in json.loads(listing) if j["id"] == js["id"]][0]
            self.assertEqual(row["exec_id"], exec_id)
            sj = cluster.job(exec_id)
            self.assertEqual((sj.get("JobState"), sj.get("ExitCode"), sj.get("JobName")),
                             ("COMPLETED", "0:0", f"radprep-{js['id']}"))
            # the rule's resources reached sbatch (and the local worker's limits)
            self.assertEqual((sj.get("TimeLimit"), sj.get("MinMemoryNode"), sj.get("NumCPUs")),
                             ("00:05:00", "2500M", "1"), sj)
            self.assertIn(f"job resources job={js['id']} cpus=1 mem_mb=2500 time_limit_s=300",
                          slurm.log())
            self.assertIn(f"job resources job={jl['id']} cpus=1 mem_mb=2500 time_limit_s=300",
                          local.log())
            tl, ts = tree(jl["output_dir"]), tree(js["output_dir"])
            self.assertEqual(set(tl), set(ts))
            self.assertGreater(len(tl), 2)
            # JSON files name their inputs under each node's own data_dir: compared with
            # that prefix, the publish folder's pid and timings taken out (and series.json without the job number)
            for rel in tl:
                if rel.endswith(".json"):
                    a, b = (untimed(json.loads(re.sub(r"\.tmp\.\d+", ".tmp.PID", open(
                        t[rel]).read().replace(n.data, "DATA"))))
                            for t, n in ((tl, local), (ts, slurm)))
                    if rel == "series.json":
                        a.pop("job"), b.pop("job")
                    self.assertEqual(a, b, rel)
                else:
                    self.assertTrue(filecmp.cmp(tl[rel], ts[rel], shallow=False), rel)
            # the worker reported through its result manifest, which the node recorded
            man = json.load(open(os.path.join(os.path.dirname(js["output_dir"]),
                                              ".v1.result.json")))
            self.assertEqual((man["format"], man["status"], man["job"]),
                             ("radprep-result/1", "ok", js["id"]))
            self.assertEqual(sorted(f["path"] for f in man["files"]),
                             sorted(p for _, p, _ in slurm.outputs(js["id"])))
            # series complete → the worker starts on the Slurm node (its first log line)
            completed_at = slurm.db("SELECT completed_at FROM series WHERE series_uid=?",
                                    (ct_uid,))[0][0]
            wlog = os.path.join(slurm.data, "logs", f"job-{js['id']}.log")
            start_line = [l for l in open(wlog) if " start job=" in l][0]
            latency = rp.log_time(start_line) - completed_at
            print(f"MEASURE slurm: series complete -> worker start {latency:.2f} s "
                  f"(poll_s 0.5, sched_interval 1)", flush=True)
            lc = local.db("SELECT completed_at FROM series WHERE series_uid=?", (ct_uid,))[0][0]
            llog = os.path.join(local.data, "logs", f"job-{jl['id']}.log")
            lstart = [l for l in open(llog) if " start job=" in l][0]
            print(f"MEASURE local: series complete -> worker start "
                  f"{rp.log_time(lstart) - lc:.2f} s", flush=True)
            self.assertLess(latency, 30)

            # -- the job over its memory limit: oom, dead after its one attempt
            # (job_max_attempts = 1); the kill -9 case below shows the node still receiving
            j = slurm.wait_job(oom_uid, 1, states=("done", "dead"), timeout=120)
            self.assertEqual(j["state"], "dead", (j, slurm.log()[-2000:]))
            self.assertEqual(j["reason"], "oom (memory limit reached, exit code 4)", j)
            row = [r for r in json.loads(slurm.cli("jobs", "--json").stdout)
                   if r["id"] == j["id"]][0]
            self.assertEqual((row["state"], row["reason"]), ("dead", j["reason"]), row)
            self.assertIn("oom", slurm.cli("jobs").stdout)
            sj = cluster.job(row["exec_id"])
            self.assertEqual((sj.get("JobState"), sj.get("ExitCode"), sj.get("MinMemoryNode")),
                             ("FAILED", "4:0", "200M"), sj)
            self.assertIn("resample", open(os.path.join(slurm.data, "logs",
                                                        f"job-{j['id']}.log")).read())

            # -- kill -9 while the Slurm job is in flight, restart: reattached, once
            files = sorted(os.path.join(tmp, "ph_slow", f) for f in os.listdir(
                os.path.join(tmp, "ph_slow")))
            self.assertEqual(rp.storescu(slurm.port, files)[:2], (0, 4))
            t0 = time.time()
            while True:
                rows = slurm.db("SELECT id, state, exec_id FROM jobs WHERE series_uid=?",
                                (slow_uid,))
                if rows and rows[0][2]:
                    break
                self.assertLess(time.time() - t0, 60, slurm.log()[-2000:])
                time.sleep(0.1)
            slow_job, _, slow_exec = rows[0]
            self.assertEqual(rows[0][1], "running")
            slurm.kill()
            slurm.start(env=senv)
            slurm.wait_log(rf"job reattached job={slow_job} exec_id={slow_exec}",
                           timeout=30, since_start=True)
            j = slurm.wait_job(slow_uid, 1, states=("done", "dead"), timeout=120)
            self.assertEqual(j["state"], "done", (j, slurm.log()[-2000:]))
            self.assertEqual(len(slurm_jobs_named(cluster, f"radprep-{slow_job}")), 1)
            self.assertEqual(len(slurm.jobs(slow_uid)), 1)
            series_dir = os.path.dirname(j["output_dir"])
            self.assertEqual(sorted(d for d in os.listdir(series_dir) if d.startswith("v")),
                             ["v1"])
            outs = slurm.outputs(j["id"])
            self.assertEqual(len(outs), len({p for _, p, _ in outs}))

            # -- slurmctld down: receiving goes on, the job waits, then runs. (The node records
            # the job's manifest when Slurm says it ended, which must have happened before the
            # controller goes away.)
            slurm.wait_log(rf"job done job={slow_job} ", timeout=30, since_start=True)
            cluster.stop_ctld()
            paths, _, wait_uid = rp.make_series(os.path.join(tmp, "ph_wait"), 4,
                                                images_in_acquisition=4)
            rc, ok, out = rp.storescu(slurm.port, paths)
            self.assertEqual((rc, ok), (0, 4), out)
            slurm.wait_series(wait_uid, "complete", timeout=30)
            slurm.wait_log(r"executor cannot take jobs now", timeout=60, since_start=True)
            time.sleep(3)
            j = slurm.jobs(wait_uid)[0]
            self.assertIn(j["state"], ("queued", "running"), j)
            self.assertEqual(j["attempts"], 0, j)  # the wait did not count as an attempt
            cluster.start_ctld()
            j = slurm.wait_job(wait_uid, 1, states=("done", "dead"), timeout=120)
            self.assertEqual(j["state"], "done", (j, slurm.log()[-2000:]))

            # -- the hanging job: ended by Slurm's time limit
            j = slurm.wait_job(hang_uid, 1, states=("dead", "failed", "done"), timeout=180)
            self.assertEqual(j["state"], "dead", j)
            self.assertIn("timeout", j["reason"], j)
            self.assertIn("slurm TIMEOUT", j["reason"], j)

            # -- an array over several series folders, and the same locally (the slurm node's
            # configuration: [executor] mem_mb = 3000 lets two tasks share the 8 GB node)
            dirs = [os.path.realpath(rptest.data_path(d)) for d in ARRAY_SERIES]
            listing = os.path.join(tmp, "folders.txt")  # the last folder comes from --list
            with open(listing, "w") as f:
                f.write("# series folders\n" + dirs[-1] + "\n")
            out_arr = os.path.join(tmp, "array")
            env = dict(os.environ, SLURM_CONF=cluster.conf)
            env.pop("RP_TEST_JOB_FAULT", None)
            t0 = time.time()
            r = rptest.run_radprep("--config", slurm.conf, "process", "--executor", "slurm",
                                   *dirs[:-1], "--list", listing, "--out", out_arr, env=env,
                                   timeout=900)
            t_array = time.time() - t0
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertRegex(r.stdout, r"array \d+: 3 tasks, 3 completed, 0 failed")
            summary = json.load(open(os.path.join(out_arr, "summary.json")))
            self.assertEqual((summary["tasks_total"], summary["tasks_completed"]), (3, 3))
            self.assertEqual([t["folder"] for t in summary["tasks"]], dirs)
            t0 = time.time()
            for i, d in enumerate(dirs):
                lo = os.path.join(tmp, "local_batch", f"task-{i}")
                r = rptest.run_radprep("--config", slurm.conf, "process", d, "--out", lo,
                                       env=env, timeout=900)
                self.assertEqual(r.returncode, 0, r.stderr)
            t_local = time.time() - t0
            for i in range(len(dirs)):
                a = tree(os.path.join(out_arr, f"task-{i}"))
                b = tree(os.path.join(tmp, "local_batch", f"task-{i}"))
                niis = [k for k in b if k.endswith(".nii.gz")]
                self.assertTrue(niis, b)
                for k in niis:
                    self.assertTrue(filecmp.cmp(a[k], b[k], shallow=False), k)
            def secs(rt):
                h, m, s_ = (["0"] * 3 + rt.split(":"))[-3:]
                return int(h) * 3600 + int(m) * 60 + int(s_)
            task_s = [secs(t["run_time"]) for t in summary["tasks"]]
            print(f"MEASURE array tasks run_time {task_s} s (sum {sum(task_s)} s)", flush=True)
            print(f"MEASURE array: {len(dirs)} series via slurm array {t_array:.1f} s, "
                  f"local one after another {t_local:.1f} s "
                  f"({cluster.cpus} CPUs in the Slurm node)", flush=True)

            # -- curate with its preprocessing as a Slurm array, and the same here: one
            # dataset (same salt, no timestamp: same case ids and bytes)
            salt = os.path.join(tmp, "salt")
            with open(salt, "w") as f:
                f.write("0123456789abcdef0123456789abcdef\n")
            ds = {}
            for ex in ("slurm", "local"):
                ds[ex] = os.path.join(tmp, f"ds_{ex}")
                r = rptest.run_radprep("--config", slurm.conf, "curate", "--executor", ex,
                                       *dirs, "--out", ds[ex], "--no-timestamp",
                                       "--salt-file", salt, env=env, timeout=900)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertRegex(r.stdout, r"cases")
            summary = json.load(open(os.path.join(ds["slurm"] + ".work", "summary.json")))
            self.assertEqual((summary["tasks_total"], summary["tasks_completed"]), (3, 3))
            ms, ml = (json.load(open(os.path.join(ds[ex], "manifest.json")))
                      for ex in ("slurm", "local"))
            self.assertGreaterEqual(ms["n_cases"], 3)
            self.assertEqual(ms["n_cases"], ml["n_cases"])
            cs, cl = tree(os.path.join(ds["slurm"], "cases")), tree(os.path.join(ds["local"],
                                                                                 "cases"))
            self.assertEqual(set(cs), set(cl))
            for k in cs:
                if k.endswith(".nii.gz"):
                    self.assertTrue(filecmp.cmp(cs[k], cl[k], shallow=False), k)
        finally:
            for n in (slurm, local):
                if n:
                    try:
                        n.stop()
                    except Exception:  # noqa: BLE001 - cleanup goes on
                        pass
            if sys.exc_info()[0]:
                print(cluster.logs()[-4000:], file=sys.stderr)
            cluster.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
