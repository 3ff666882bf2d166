#!/usr/bin/python3
"""`radprep` against a live radprepd: what storescu sends shows up in status/ls/show/events,
series complete (quiet period, or `radprep trigger`), their jobs run to done, a late instance
reopens a series as version 2 that is processed again, and `radprep reprocess` re-runs a
version. Real peers only: dcmtk storescu and the radprepd/radprep binaries of this build.
"""
import json
import os
import sys
import time
import unittest

import pydicom
from pydicom.uid import generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

CT_DIR = rptest.data_path("seg_with_source_ct", "ct_3slice")
MR_DIR = rptest.data_path("mr_brain_siemens_xa30", "2001_AAHead_Scout")


def files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d))


class Live(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = rptest.Radprepd(
            peers={"ct1": {"ae_title": "CT1"}, "mr1": {"ae_title": "MR1"}},
            extra={
                "completion CT": {"quiet_s": 2, "use_expected_count": False},
                "completion MR": {"quiet_s": 3600},
                "rule ct_default": {"modality": "CT", "steps": "hu clip(-1000,1000)",
                                    "outputs": "nifti json"},
                "rule mr_default": {"modality": "MR", "steps": "normalize(minmax)",
                                    "outputs": "nifti json"},
            })
        cls.node.start()
        cls.ct = [pydicom.dcmread(f, stop_before_pixels=True) for f in files(CT_DIR)]
        cls.ct_series = cls.ct[0].SeriesInstanceUID
        cls.mr = [pydicom.dcmread(f, stop_before_pixels=True) for f in files(MR_DIR)]
        cls.mr_series = sorted({d.SeriesInstanceUID for d in cls.mr})

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()

    def cli(self, *args, ok=True):
        p = rptest.run_radprep("--config", self.node.config_path, *args, timeout=120)
        if ok:
            self.assertEqual(p.returncode, 0, f"radprep {' '.join(args)}: {p.stderr}")
        return p

    def json_of(self, *args):
        return json.loads(self.cli(*args, "--json").stdout)

    def wait_for(self, what, fn, timeout=120.0):
        end = time.time() + timeout
        last = None
        while time.time() < end:
            last = fn()
            if last:
                return last
            time.sleep(0.3)
        self.fail(f"timed out waiting for {what}; last={last}\n{self.node.log_tail()}")

    def series_state(self, uid):
        s = self.json_of("show", uid)
        return s["state"], s["version"]

    def test_live_flow(self):
        n_ct, n_mr = len(self.ct), len(self.mr)
        r = rptest.storescu(self.node.port, files(CT_DIR), aet="CT1")
        self.assertEqual(r.failed(), [], r.out)
        r = rptest.storescu(self.node.port, files(MR_DIR), aet="MR1")
        self.assertEqual(r.failed(), [], r.out)

        # the index catches up within a flush period or two
        st = self.wait_for("all instances indexed",
                           lambda: (lambda s: s if s["instances"] == n_ct + n_mr else None)(
                               self.json_of("status")), timeout=20)
        self.assertEqual(st["series"], 1 + len(self.mr_series))
        self.assertGreaterEqual(st["associations"], 2)
        self.assertEqual(st["store_files"], n_ct + n_mr)
        rows = self.json_of("ls", "instances", "--series", self.ct_series)
        self.assertEqual(sorted(r["sop_uid"] for r in rows),
                         sorted(d.SOPInstanceUID for d in self.ct))
        self.assertTrue(all(r["calling_ae"] == "CT1" for r in rows))
        ev = self.json_of("events", "--kind", "association")
        self.assertGreaterEqual(len(ev), 2)

        # CT completes by itself after its quiet period and its job runs to done
        self.wait_for("CT series done",
                      lambda: self.series_state(self.ct_series) == ("done", 1))
        jobs = self.json_of("jobs", "--series", self.ct_series)
        self.assertEqual([(j["version"], j["state"]) for j in jobs], [(1, "done")])
        show = self.json_of("show", self.ct_series)
        self.assertEqual(show["completed_reason"], "quiet")
        self.assertEqual(show["processed_version"], 1)

        # MR waits (quiet 3600 s) until the operator triggers it
        mr = self.mr_series[0]
        time.sleep(1.0)
        self.assertEqual(self.series_state(mr), ("receiving", 1))
        out = self.cli("trigger", mr).stdout
        self.assertIn("complete (operator)", out)
        self.wait_for("MR series done", lambda: self.series_state(mr) == ("done", 1))

        # a late instance reopens the CT series as version 2, processed again
        late = pydicom.dcmread(files(CT_DIR)[0])
        late.SOPInstanceUID = generate_uid()
        late.file_meta.MediaStorageSOPInstanceUID = late.SOPInstanceUID
        late.InstanceNumber = 99
        path = os.path.join(self.node.workdir, "late.dcm")
        late.save_as(path)
        r = rptest.storescu(self.node.port, [path], aet="CT1")
        self.assertEqual(r.failed(), [], r.out)
        self.wait_for("CT reopened and done as version 2",
                      lambda: self.series_state(self.ct_series) == ("done", 2))
        jobs = self.json_of("jobs", "--series", self.ct_series)
        self.assertEqual(sorted((j["version"], j["state"]) for j in jobs),
                         [(1, "done"), (2, "done")])
        self.assertEqual(self.json_of("show", self.ct_series)["instance_count"], n_ct + 1)
        kinds = {e["kind"] for e in self.json_of("events", "--limit", "1000")}
        self.assertIn("series_reopened", kinds)

        # reprocess re-runs version 2 with a fresh count of attempts
        job_v2 = [j for j in jobs if j["version"] == 2][0]["id"]
        out = self.cli("reprocess", self.ct_series).stdout
        self.assertIn(f"job {job_v2} queued", out)
        self.wait_for("reprocessed job done",
                      lambda: [j for j in self.json_of("jobs", "--series", self.ct_series)
                               if j["id"] == job_v2 and j["state"] == "done"])
        st = self.json_of("status")
        self.assertEqual(st["jobs"]["done"], 3)
        self.assertEqual(st["jobs"]["dead"], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
