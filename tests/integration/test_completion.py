#!/usr/bin/python3
"""Series completion end to end: real radprepd, real storescu on loopback, small CT phantoms.

- one go: completes once, after quiet seconds, exactly one job; latency from the last
  instance to the job's start is measured from the log timestamps and printed;
- two bursts closer than quiet: completes once;
- two bursts further apart than quiet: completes, reopens, version 2 with its own output
  folder, both versions recorded, v1's outputs untouched;
- expected count in the headers (Images in Acquisition): completes as soon as the last
  instance lands, with quiet far away; a series short of its count keeps waiting; a real
  Enhanced MR object (all frames in one instance) completes on arrival;
- operator: `radprep trigger` completes a series long before quiet, reason operator.
"""
import json
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_lib as rp  # noqa: E402
import rptest  # noqa: E402 (tests/lib, on the path through jobs_lib)

LATENCIES = []
QUIET = 3  # seconds; the bursts below are 0.5 s apart, far inside it even on a busy host


def stored_times(log, series_uid):
    return [rp.log_time(l) for l in log.splitlines()
            if " scp: stored " in l and f"series={series_uid}" in l]


def job_start_time(log, series_uid, version):
    for l in log.splitlines():
        if "supervisor: job started" in l and f"series={series_uid} version={version} " in l:
            return rp.log_time(l)
    return None


def series_json(job):
    with open(os.path.join(job["output_dir"], "series.json")) as f:
        return json.load(f)


class CompletionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = rp.tmpdir("rp_completion_")
        cls.node = rp.Node(os.path.join(cls.tmp, "n"), quiet_s=QUIET).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        if LATENCIES:
            print("latency last instance -> job start (s): "
                  + " ".join(f"{x:.3f}" for x in LATENCIES), file=sys.stderr)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def send(self, files):
        rc, ok, out = rp.storescu(self.node.port, files)
        self.assertEqual(rc, 0, out[-2000:])
        self.assertEqual(ok, len(files), out[-2000:])

    def test_one_go(self):
        files, _, uid = rp.make_series(os.path.join(self.tmp, "one"), 12)
        self.send(files)
        job = self.node.wait_job(uid, 1, timeout=30)
        s = self.node.series(uid)
        self.assertEqual((s["state"], s["version"], s["instances"], s["reason"]),
                         ("done", 1, 12, "quiet"))
        # it waited for the quiet period: not before, and not much after
        self.assertGreaterEqual(s["completed_at"] - s["last_seen"], QUIET - 0.05)
        self.assertLess(s["completed_at"] - s["last_seen"], QUIET + 1.5)
        self.assertEqual(len(self.node.jobs(uid)), 1)
        self.assertEqual(job["attempts"], 1)
        self.assertEqual(series_json(job)["instances"], 12)
        self.assertTrue(job["output_dir"].endswith(f"/{uid}/v1"))
        # latency: last instance stored -> job started (quiet_s of it is by design)
        log = self.node.log()
        last = max(stored_times(log, uid))
        start = job_start_time(log, uid, 1)
        self.assertIsNotNone(start)
        LATENCIES.append(start - last)
        print(f"one go: last instance -> job start {start - last:.3f} s (quiet_s={QUIET})",
              file=sys.stderr)
        self.assertLess(start - last, QUIET + 1.5)
        # still exactly one job a while later
        time.sleep(QUIET + 0.5)
        self.assertEqual(len(self.node.jobs(uid)), 1)
        self.assertEqual(self.node.series(uid)["version"], 1)

    def test_two_bursts_within_quiet(self):
        files, _, uid = rp.make_series(os.path.join(self.tmp, "near"), 10)
        self.send(files[:5])
        time.sleep(0.5)
        self.assertEqual(self.node.series(uid)["state"], "receiving")
        self.send(files[5:])
        job = self.node.wait_job(uid, 1, timeout=30)
        time.sleep(QUIET + 0.5)
        jobs = self.node.jobs(uid)
        self.assertEqual(len(jobs), 1, jobs)
        s = self.node.series(uid)
        self.assertEqual((s["version"], s["instances"]), (1, 10))
        self.assertEqual(series_json(job)["instances"], 10)

    def test_two_bursts_beyond_quiet(self):
        folder = os.path.join(self.tmp, "far")
        files, study, uid = rp.make_series(folder, 5)
        self.send(files)
        j1 = self.node.wait_job(uid, 1, timeout=30)
        v1_outputs = self.node.outputs(j1["id"])
        self.assertTrue(v1_outputs)
        more, _, _ = rp.make_series(folder, 4, study_uid=study, series_uid=uid, first=6)
        self.send(more)
        j2 = self.node.wait_job(uid, 2, timeout=30)
        s = self.node.series(uid)
        self.assertEqual((s["state"], s["version"], s["instances"]), ("done", 2, 9))
        jobs = self.node.jobs(uid)
        self.assertEqual(sorted(j["version"] for j in jobs), [1, 2])
        # separate folders, both recorded, version 1 untouched by version 2
        self.assertTrue(j1["output_dir"].endswith("/v1"))
        self.assertTrue(j2["output_dir"].endswith("/v2"))
        self.assertEqual(os.path.dirname(j1["output_dir"]), os.path.dirname(j2["output_dir"]))
        self.assertEqual(series_json(j1)["instances"], 5)
        self.assertEqual(series_json(j2)["instances"], 9)
        self.assertEqual(series_json(j2)["version"], 2)
        self.assertEqual(self.node.outputs(j1["id"]), v1_outputs)
        for kind, path, sha in v1_outputs:
            self.assertTrue(path.startswith(j1["output_dir"] + "/"), path)
            with open(path, "rb") as f:
                import hashlib
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), sha)
        for kind, path, sha in self.node.outputs(j2["id"]):
            self.assertTrue(path.startswith(j2["output_dir"] + "/"), path)
        self.assertIn("series reopened", self.node.log())

    def test_instances_during_processing_go_to_next_version(self):
        # v1's job is still running (a test-only 3 s delay) when more instances arrive: they
        # reopen the series as v2; v1 is processed with exactly what completed it.
        tmp = os.path.join(self.tmp, "during")
        files, study, uid = rp.make_series(tmp, 5)
        more, _, _ = rp.make_series(tmp, 3, study_uid=study, series_uid=uid, first=6)
        node = rp.Node(os.path.join(self.tmp, "during_node"), quiet_s=2)
        node.start(env={"RP_TEST_JOB_FAULT": f"slow@{uid}"})
        try:
            rc, ok, out = rp.storescu(node.port, files)
            self.assertEqual((rc, ok), (0, 5), out[-1000:])
            node.wait_job(uid, 1, states=("running",), timeout=20)
            rc, ok, out = rp.storescu(node.port, more)
            self.assertEqual((rc, ok), (0, 3), out[-1000:])
            j1 = node.wait_job(uid, 1, timeout=30)
            j2 = node.wait_job(uid, 2, timeout=30)
            self.assertEqual(series_json(j1)["instances"], 5)
            self.assertEqual(series_json(j2)["instances"], 8)
            v1 = {f["sop_instance_uid"] for f in series_json(j1)["files"]}
            v2 = {f["sop_instance_uid"] for f in series_json(j2)["files"]}
            self.assertTrue(v1 < v2)
            s = node.series(uid)
            self.assertEqual((s["state"], s["version"]), ("done", 2))
        finally:
            node.stop()

    def test_second_worker_for_the_same_version_refused(self):
        # `radprep process --job N` by hand while the daemon's worker runs it: refused at
        # once (one worker per version), and the daemon's run still completes cleanly.
        tmp = os.path.join(self.tmp, "lock")
        files, _, uid = rp.make_series(tmp, 3)
        node = rp.Node(os.path.join(self.tmp, "lock_node"), quiet_s=1)
        node.start(env={"RP_TEST_JOB_FAULT": f"slow@{uid}"})
        try:
            rc, ok, out = rp.storescu(node.port, files)
            self.assertEqual((rc, ok), (0, 3), out[-1000:])
            job = node.wait_job(uid, 1, states=("running",), timeout=20)
            time.sleep(0.5)  # the worker is past its lock, sleeping (test-only slow mode)
            r = node.cli("process", "--job", str(job["id"]), "--config", node.conf, check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("being processed by another worker", r.stderr)
            done = node.wait_job(uid, 1, timeout=30)
            self.assertEqual(done["attempts"], 1)
            self.assertEqual(series_json(done)["instances"], 3)
        finally:
            node.stop()

    def test_operator_trigger(self):
        # a node with a long quiet period: only the operator can complete it quickly
        node = rp.Node(os.path.join(self.tmp, "op"), quiet_s=60).start()
        try:
            files, _, uid = rp.make_series(os.path.join(self.tmp, "op_files"), 3)
            rc, ok, out = rp.storescu(node.port, files)
            self.assertEqual((rc, ok), (0, 3), out[-1000:])
            node.wait_series(uid, "receiving")
            t0 = time.time()
            node.cli("trigger", uid)
            job = node.wait_job(uid, 1, timeout=20)
            self.assertLess(time.time() - t0, 10)
            self.assertEqual(node.series(uid)["reason"], "operator")
            self.assertEqual(series_json(job)["instances"], 3)
        finally:
            node.stop()


class ExpectedCountTest(unittest.TestCase):
    def test_expected_count_completes_on_last_instance(self):
        tmp = rp.tmpdir("rp_expected_")
        node = rp.Node(os.path.join(tmp, "n"), quiet_s=30).start()
        try:
            files, _, uid = rp.make_series(os.path.join(tmp, "a"), 8, images_in_acquisition=8)
            rc, ok, out = rp.storescu(node.port, files)
            self.assertEqual((rc, ok), (0, 8), out[-1000:])
            job = node.wait_job(uid, 1, timeout=10)
            s = node.series(uid)
            self.assertEqual(s["reason"], "expected_count")
            self.assertEqual(s["expected"], 8)
            self.assertLess(s["completed_at"] - s["last_seen"], 1.5)
            log = node.log()
            self.assertIn("images_in_acquisition=8", log)
            last = max(stored_times(log, uid))
            start = job_start_time(log, uid, 1)
            LATENCIES.append(start - last)
            print(f"expected count: last instance -> job start {start - last:.3f} s "
                  f"(quiet_s=30)", file=sys.stderr)
            self.assertLess(start - last, 1.5)
            self.assertEqual(series_json(job)["instances"], 8)
            # 7 of 9 announced: keeps waiting (quiet is 30 s away)
            files, _, uid2 = rp.make_series(os.path.join(tmp, "b"), 7, images_in_acquisition=9)
            rc, ok, out = rp.storescu(node.port, files)
            self.assertEqual((rc, ok), (0, 7), out[-1000:])
            time.sleep(2.0)
            self.assertEqual(node.series(uid2)["state"], "receiving")
            self.assertEqual(node.jobs(uid2), [])
        finally:
            node.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_enhanced_multiframe_completes_at_once(self):
        # real data: one Enhanced MR object holds the whole series (10 frames)
        f = rptest.data_path("enhanced_multiframe", "mr_enhanced_small_10frames.dcm")
        uid = str(rp.pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID)
        tmp = rp.tmpdir("rp_enhanced_")
        node = rp.Node(os.path.join(tmp, "n"), quiet_s=30).start()
        try:
            rc, ok, out = rp.storescu(node.port, [f])
            self.assertEqual((rc, ok), (0, 1), out[-1000:])
            node.wait_job(uid, 1, states=("running", "done", "failed", "dead"), timeout=10)
            s = node.series(uid)
            self.assertEqual(s["reason"], "expected_count")
            self.assertLess(s["completed_at"] - s["last_seen"], 1.5)
            self.assertIn("enhanced_multiframe number_of_frames=10", node.log())
        finally:
            node.stop()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
