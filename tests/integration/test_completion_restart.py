#!/usr/bin/python3
"""Restarts in the middle (SIGTERM and kill -9): completions and jobs resume from the
database, nothing is processed twice for the same version, nothing is forgotten.

- half-received series, node stopped (SIGTERM, then kill -9), restarted, rest sent: the
  series completes once with every instance and one job;
- kill -9 in the middle of an association, the sender sends the series again after the
  restart: one version with every instance;
- a series that went quiet while the node was down completes at start (before READY);
- kill -9 while a job runs (a test-only hang): the worker dies with the node
  (PR_SET_PDEATHSIG), the job is retried on restart without counting the lost attempt, and
  finishes once: one job row, one output folder, one "job done".
"""
import os
import re
import shutil
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_lib as rp  # noqa: E402

QUIET = 5  # long enough that a restart on a busy host still lands inside it


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class RestartTest(unittest.TestCase):
    def setUp(self):
        self.tmp = rp.tmpdir("rp_restart_")
        self.node = rp.Node(os.path.join(self.tmp, "n"), quiet_s=QUIET,
                            extra_node="job_timeout_s = 120")

    def tearDown(self):
        self.node.stop(signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def send(self, files):
        rc, ok, out = rp.storescu(self.node.port, files)
        self.assertEqual((rc, ok), (0, len(files)), out[-2000:])

    def check_once(self, uid, version, instances):
        """Exactly one job for (uid, version), done, one output folder, one done line."""
        jobs = [j for j in self.node.jobs(uid) if j["version"] == version]
        self.assertEqual(len(jobs), 1, jobs)
        self.assertEqual(jobs[0]["state"], "done")
        series_dir = os.path.dirname(jobs[0]["output_dir"])
        # version folders only (dot files are the per-version locks), no temporary left
        self.assertEqual(sorted(d for d in os.listdir(series_dir) if not d.startswith(".v")
                                or ".tmp." in d),
                         sorted(f"v{v}" for v in range(1, version + 1)))
        # the worker marks the job done itself; the supervisor's line follows when it reaps
        pattern = rf"supervisor: job done job=\d+ series={re.escape(uid)} version={version} "
        self.node.wait_log(pattern, timeout=10)
        self.assertEqual(len(re.findall(pattern, self.node.log())), 1)
        self.assertEqual(self.node.series(uid)["instances"], instances)
        return jobs[0]

    def half_then_rest(self, sig):
        files, _, uid = rp.make_series(os.path.join(self.tmp, "half"), 10)
        self.node.start()
        self.send(files[:5])
        self.node.wait_series(uid, "receiving")
        # stop well before quiet, come back while it still must wait
        self.node.stop(sig)
        self.node.start()
        time.sleep(0.5)
        s = self.node.series(uid)
        self.assertEqual((s["state"], s["instances"]), ("receiving", 5))
        self.assertEqual(self.node.jobs(uid), [])
        self.send(files[5:])
        self.node.wait_job(uid, 1, timeout=30)
        time.sleep(QUIET + 0.5)
        self.check_once(uid, 1, 10)

    def test_half_received_sigterm(self):
        self.half_then_rest(signal.SIGTERM)

    def test_half_received_kill9(self):
        self.half_then_rest(signal.SIGKILL)

    def test_kill9_during_association(self):
        # The node dies in the middle of an association; the sender sends the whole series
        # again after the restart (what a PACS does): the instances acknowledged before the
        # crash are duplicates (identical bytes: success, no new version), the rest are new;
        # the series completes once, with every instance, in version 1.
        n = 120
        files, _, uid = rp.make_series(os.path.join(self.tmp, "cut"), n, size=128)
        self.node.start()
        import subprocess
        p = subprocess.Popen(["storescu", "-v", "-aet", "RPTEST", "-aec", "RADPREP",
                              "127.0.0.1", str(self.node.port)] + files,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.node.wait_log(rf"scp: stored .*series={re.escape(uid)}", timeout=30, count=10)
        self.node.stop(signal.SIGKILL)
        out = p.communicate(timeout=60)[0]
        acked_before = out.count("Received Store Response (Success)")
        self.assertGreater(acked_before, 0)
        self.assertLess(acked_before, n, "the crash was meant to cut the association")
        self.node.start()
        self.send(files)
        self.node.wait_job(uid, 1, timeout=60)
        time.sleep(QUIET + 0.5)
        job = self.check_once(uid, 1, n)
        with open(os.path.join(job["output_dir"], "series.json")) as f:
            import json
            self.assertEqual(json.load(f)["instances"], n)
        print(f"kill -9 after {acked_before}/{n} acknowledged; all {n} in v1 after the resend",
              file=sys.stderr)

    def test_quiet_while_down(self):
        files, _, uid = rp.make_series(os.path.join(self.tmp, "down"), 6)
        self.node.start()
        self.send(files)
        self.node.stop(signal.SIGKILL)
        time.sleep(QUIET + 1)
        off = len(self.node.log())
        self.node.start()
        log = self.node.log()[off:]
        # completed during start-up, before the node said it was ready
        self.assertIn("series completed at start n=1", log)
        self.assertLess(log.index("series completed at start"), log.index("node ready"))
        self.node.wait_job(uid, 1, timeout=30)
        self.check_once(uid, 1, 6)

    def test_kill9_during_job(self):
        files, _, uid = rp.make_series(os.path.join(self.tmp, "busy"), 4)
        self.node.start(env={"RP_TEST_JOB_FAULT": f"hang@{uid}"})
        self.send(files)
        job = self.node.wait_job(uid, 1, states=("running",), timeout=30)
        # the worker process is up (pid recorded) and hangs
        time.sleep(0.5)
        worker_pid = self.node.db("SELECT pid FROM jobs WHERE id=?", (job["id"],))[0][0]
        self.assertTrue(worker_pid and pid_alive(worker_pid))
        self.node.stop(signal.SIGKILL)
        # the worker does not outlive the node
        t0 = time.time()
        while pid_alive(worker_pid) and time.time() - t0 < 5:
            time.sleep(0.05)
        self.assertFalse(pid_alive(worker_pid))
        self.assertEqual(self.node.jobs(uid)[0]["state"], "running")
        self.node.start()  # no fault this time
        done = self.node.wait_job(uid, 1, timeout=30)
        self.assertEqual(done["attempts"], 1, "the attempt lost with the node does not count")
        self.assertIn("requeued jobs left running by a previous run n=1", self.node.log())
        time.sleep(1)
        self.check_once(uid, 1, 4)

    def test_sigterm_during_job(self):
        files, _, uid = rp.make_series(os.path.join(self.tmp, "busy2"), 4)
        self.node.start(env={"RP_TEST_JOB_FAULT": f"hang@{uid}"})
        self.send(files)
        job = self.node.wait_job(uid, 1, states=("running",), timeout=30)
        time.sleep(0.3)
        worker_pid = self.node.db("SELECT pid FROM jobs WHERE id=?", (job["id"],))[0][0]
        t0 = time.time()
        self.assertEqual(self.node.stop(signal.SIGTERM), 0)
        self.assertLess(time.time() - t0, 15)
        self.assertFalse(pid_alive(worker_pid))
        j = self.node.jobs(uid)[0]
        self.assertEqual((j["state"], j["attempts"]), ("queued", 0))
        self.node.start()
        self.node.wait_job(uid, 1, timeout=30)
        self.check_once(uid, 1, 4)


if __name__ == "__main__":
    unittest.main(verbosity=2)
