#!/usr/bin/python3
"""Jobs under the supervisor, end to end: workers that crash (SIGABRT), run out of memory
under the job memory limit, or hang past the timeout are recorded as failed with that reason
and retried per policy, while a concurrent storescu send completes with every instance
acknowledged. `radprep jobs` shows queued / running / done / failed with times;
`radprep show` and `radprep reprocess` drive the same flow.

The faults come from the worker's test-only hook RP_TEST_JOB_FAULT=mode@SERIES,...
(abort|oom|hang), set in the daemon's environment and inherited by its workers.
"""
import json
import os
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jobs_lib as rp  # noqa: E402

TIMEOUT_S = 8


class JobsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = rp.tmpdir("rp_jobs_")
        d = os.path.join(cls.tmp, "files")
        # three small series that will misbehave, two big ones (baseline and concurrent)
        cls.a, _, cls.ua = rp.make_series(os.path.join(d, "a"), 3, series_number=1)
        cls.b, _, cls.ub = rp.make_series(os.path.join(d, "b"), 3, series_number=2)
        cls.c, _, cls.uc = rp.make_series(os.path.join(d, "c"), 3, series_number=3)
        cls.base, _, cls.ubase = rp.make_series(os.path.join(d, "base"), 150, size=128,
                                                series_number=4)
        cls.big, _, cls.ubig = rp.make_series(os.path.join(d, "big"), 150, size=128,
                                              series_number=5)
        # one worker at a time, so that jobs visibly queue behind the hanging one
        cls.node = rp.Node(os.path.join(cls.tmp, "n"), quiet_s=2, extra_node=(
            f"workers = 1\njob_timeout_s = {TIMEOUT_S}\njob_memory_mb = 384\n"
            "job_max_attempts = 2"))
        cls.node.start(env={"RP_TEST_JOB_FAULT":
                            f"abort@{cls.ua},oom@{cls.ub},hang@{cls.uc}"})

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def jobs_json(self):
        r = self.node.cli("jobs", "--json", "--limit", "100")
        return json.loads(r.stdout or "[]")

    def test_faults_and_concurrent_send(self):
        node = self.node
        t0 = time.time()
        rc, ok, out = rp.storescu(node.port, self.base)
        base_s = time.time() - t0
        self.assertEqual((rc, ok), (0, len(self.base)), out[-2000:])
        node.wait_job(self.ubase, 1, timeout=60)

        rc, ok, out = rp.storescu(node.port, self.a + self.b + self.c)
        self.assertEqual((rc, ok), (0, 9), out[-2000:])

        # Watch `radprep jobs` all along, as an operator would.
        seen = {}
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    for j in self.jobs_json():
                        seen.setdefault(j["series_uid"], set()).add(j["state"])
                except Exception:  # a poll racing the daemon's writes is retried
                    pass
                time.sleep(0.1)
        w = threading.Thread(target=watch)
        w.start()
        try:
            # the concurrent send starts while the faulty jobs run (quiet is 2 s)
            time.sleep(1.5)
            t1 = time.time()
            rc, ok, out = rp.storescu(node.port, self.big)
            big_s = time.time() - t1
            self.assertEqual(rc, 0, out[-2000:])
            self.assertEqual(ok, len(self.big), "every instance acknowledged")
            # the index may lag the acknowledgements by one batch (durability is the file)
            t2 = time.time()
            while (node.series(self.ubig) or {}).get("instances") != len(self.big):
                self.assertLess(time.time() - t2, 10, node.series(self.ubig))
                time.sleep(0.05)
            print(f"send of {len(self.big)} instances: {base_s:.2f} s alone, {big_s:.2f} s "
                  f"while jobs crash/hang", file=sys.stderr)

            ja = node.wait_job(self.ua, 1, states=("failed", "dead"), timeout=30)
            self.assertIn("SIGABRT", ja["reason"])
            jb = node.wait_job(self.ub, 1, states=("failed", "dead"), timeout=30)
            self.assertIn("oom", jb["reason"])
            jc = node.wait_job(self.uc, 1, states=("failed", "dead"), timeout=30)
            self.assertIn("timeout", jc["reason"])
            self.assertGreaterEqual(jc["finished_at"] - jc["started_at"], TIMEOUT_S - 0.1)
            # the big series' job ran after the hang, on its own
            node.wait_job(self.ubig, 1, timeout=60)
            # retries: the abort is retried with backoff and ends dead after 2 attempts
            ja = node.wait_job(self.ua, 1, states=("dead",), timeout=60)
            self.assertEqual(ja["attempts"], 2)
            self.assertIn("SIGABRT", ja["reason"])
        finally:
            stop.set()
            w.join()
        for j in self.jobs_json():  # and the listing at the end
            seen.setdefault(j["series_uid"], set()).add(j["state"])
        # what an operator saw on the way
        self.assertIn("running", seen.get(self.uc, set()), seen)
        self.assertIn("queued", seen.get(self.ubig, set()), seen)
        self.assertIn("done", seen.get(self.ubig, set()), seen)
        self.assertTrue({"failed", "dead"} & seen.get(self.ua, set()), seen)
        final = {j["series_uid"]: j for j in self.jobs_json()}
        for uid in (self.ua, self.ubig):
            j = final[uid]
            for k in ("created", "started", "finished"):
                self.assertRegex(j[k] or "", r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", (uid, k))
        self.assertEqual(final[self.ua]["state"], "dead")
        self.assertIn("SIGABRT", final[self.ua]["reason"])
        table = node.cli("jobs").stdout
        for word in ("done", "dead", "SIGABRT", "timeout", "oom"):
            self.assertIn(word, table)
        # every instance of every series is in the index: receiving never stopped
        self.assertEqual(node.db("SELECT count(*) FROM instances")[0][0],
                         9 + len(self.base) + len(self.big))
        # `radprep show` tells the same story
        show = node.cli("show", self.ua).stdout
        self.assertIn("SIGABRT", show)

    def test_reprocess(self):
        node = self.node
        node.wait_job(self.ubase, 1, timeout=90)
        before = node.jobs(self.ubase)[0]
        node.cli("reprocess", self.ubase)
        t0 = time.time()
        while True:
            j = node.jobs(self.ubase)[0]
            if j["state"] == "done" and (j["started_at"] or 0) > before["started_at"]:
                break
            self.assertLess(time.time() - t0, 60, j)
            time.sleep(0.1)
        # same version, same job row, same output folder: re-running is safe
        self.assertEqual(len(node.jobs(self.ubase)), 1)
        self.assertEqual(j["output_dir"], before["output_dir"])
        self.assertEqual(j["version"], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
