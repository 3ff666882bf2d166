#!/usr/bin/python3
"""The web console end to end, in a real browser: radprepd receives the LIDC chest CT (133
real instances) from storescu, completes it and runs the built-in CT recipe; headless
Chromium, driven over the DevTools protocol, logs in with the token and looks:

- the overview shows the counts `radprep status --json` gives (same queries), and the API
  agrees with it number for number;
- the series list shows the LIDC series with its state (done);
- the series page shows the QC montage: the image loads (naturalWidth > 0) and its bytes
  are a non-empty PNG; the QC report is rendered as a table;
- the "Re-run job" button on the series page queues the job again, the supervisor runs it
  a second time (a second run in its log, new start time), and the audit trail says who;
- /metrics passes `promtool check metrics`, and its counters moved by exactly the 133
  instances sent (and bytes as the association reported them);
- a screenshot of each page is kept under <build>/tests/artifacts/console/.
"""
import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import console_lib as cl  # noqa: E402
import rptest  # noqa: E402

LIDC = os.path.join(rptest.SHARED_DATA, "ct_chest_lidc0001")
LIDC_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"
AET = "LIDCSCU"


def metric(text, name, **labels):
    """Value of one sample of the exposition text (0 when absent)."""
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(3) or "").split(","))) if m.group(3) else ""
        if got == want:
            return float(m.group(4))
    return 0.0


class ConsoleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        files = sorted(os.path.join(LIDC, f) for f in os.listdir(LIDC) if f.endswith(".dcm"))
        assert len(files) == 133, "LIDC data missing or incomplete in %s" % LIDC
        cls.files = files
        cls.art = cl.artifacts_dir()
        cls.d = cl.console_node(node={"job_timeout_s": 900},
                                extra={"completion CT": {"quiet_s": 2}}).start()
        cls.port = cls.d.http_port
        cls.before = cl.raw_http(cls.port, "GET", "/metrics").body.decode()
        r = rptest.storescu(cls.d.port, files, aet=AET, timeout=600)
        assert len(r.ok()) == 133, r.out[-2000:]
        cls.job = cls.wait_job_state(("done", "dead"), timeout=900)
        assert cls.job[1] == "done", (cls.job, cls.d.log_tail())

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    @classmethod
    def wait_job_state(cls, states, timeout=600, after=0.0):
        end = time.time() + timeout
        while time.time() < end:
            rows = cls.d.query("SELECT id, state, started_at, finished_at, attempts FROM jobs"
                               " WHERE series_uid = ? ORDER BY id", (LIDC_SERIES,))
            if rows and rows[-1][1] in states and (rows[-1][3] or 0) > after:
                return rows[-1]
            time.sleep(0.5)
        raise AssertionError("job not in %s after %ss\n%s" % (states, timeout, cls.d.log_tail()))

    def test_1_metrics(self):
        after = cl.raw_http(self.port, "GET", "/metrics")
        self.assertEqual(after.status, 200)
        self.assertIn("text/plain; version=0.0.4", after.headers["content-type"])
        text = after.body.decode()
        p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        name = "radprep_instances_received_total"
        lab = {"calling_ae": AET, "status": "0x0000"}
        self.assertEqual(metric(self.before, name, **lab), 0)
        self.assertEqual(metric(text, name, **lab), 133)
        self.assertEqual(sum(metric(text, name, calling_ae=AET, status=s)
                             for s in ("0xA700", "0xA900", "0xC000", "broken")), 0)
        # bytes: what the association reported at its end (the same spool byte counts)
        ends = [kv for kv in self.d.log_kv(r"association released") if kv.get("calling_ae") == AET]
        self.assertEqual(len(ends), 1, ends)
        self.assertEqual(metric(text, "radprep_bytes_received_total", **lab),
                         float(ends[0]["bytes"]))
        self.assertEqual(metric(text, "radprep_associations_total"), 1)
        self.assertEqual(metric(text, "radprep_associations_open"), 0)
        self.assertEqual(metric(text, "radprep_series_completed_total", evidence="quiet"), 1)
        self.assertEqual(metric(text, "radprep_store_commit_seconds_count"), 133)
        self.assertEqual(metric(text, "radprep_jobs", state="done", rule="ct_default"), 1)
        self.assertGreaterEqual(metric(text, "radprep_job_duration_seconds_count", state="done"), 1)
        self.assertGreater(metric(text, "radprep_disk_free_bytes"), 0)
        self.assertGreater(metric(text, "radprep_index_size_bytes"), 0)

    def test_2_browser(self):
        st = cl.radprep_status(self.d)
        api = cl.get_json(self.port, "/api/v1/status")
        # the API and `radprep status` agree on every number they share
        for k in ("patients", "studies", "series", "instances", "indexed_bytes",
                  "associations", "associations_refused", "min_free_mb", "below_watermark",
                  "total_bytes"):
            self.assertEqual(api[k], st[k], k)
        for group in ("series_state", "jobs", "outbox"):
            self.assertEqual(api[group], st[group], group)
        self.assertLess(abs(api["free_bytes"] - st["free_bytes"]), 256 << 20)
        self.assertEqual(st["instances"], 133)

        b = cl.Browser()
        try:
            base = "http://127.0.0.1:%d" % self.port
            # log in through the form, as a person would
            b.goto(base + "/login")
            b.eval("document.getElementById('token').value = %r" % cl.TOKEN)
            b.click_and_wait("#login")
            self.assertEqual(b.url(), base + "/")
            self.assertIn("signed in", b.eval("document.getElementById('who').textContent"))
            # overview: the counts
            shown = b.eval("""(function(){var o={};
                document.querySelectorAll('[data-k]').forEach(function(e){
                  o[e.getAttribute('data-k')]=e.textContent;}); return o;})()""")
            for k in ("patients", "studies", "series", "instances", "associations"):
                self.assertEqual(shown[k], str(st[k]), k)
            for s in ("receiving", "complete", "processing", "done", "failed"):
                self.assertEqual(shown["series_state." + s], str(st["series_state"][s]), s)
            for s in ("queued", "running", "done", "failed", "dead"):
                self.assertEqual(shown["jobs." + s], str(st["jobs"][s]), s)
            for s in ("pending", "sending", "done", "dead"):
                self.assertEqual(shown["outbox." + s], str(st["outbox"][s]), s)
            self.assertEqual(b.eval("document.getElementById('ae-title').textContent"),
                             "RADPREP")
            b.screenshot(os.path.join(self.art, "overview.png"))

            # series list: the LIDC series, done
            b.goto(base + "/series?q=LIDC")
            row = b.eval("""(function(){var r=document.querySelector('tr[data-series="%s"]');
                return r ? {state: r.querySelector('.badge').textContent,
                            text: r.textContent} : null;})()""" % LIDC_SERIES)
            self.assertIsNotNone(row, "LIDC series not listed")
            self.assertEqual(row["state"], "done")
            self.assertIn("133", row["text"])
            self.assertIn("LIDC-IDRI-0001", row["text"])
            b.screenshot(os.path.join(self.art, "series_list.png"))

            # series page: the QC montage loads, the QC report is a table
            b.click_and_wait('tr[data-series="%s"] a' % LIDC_SERIES)
            self.assertTrue(b.url().endswith("/series/" + LIDC_SERIES))
            img = b.eval("""new Promise(function(ok){var i=document.querySelector('img.qc');
                if(!i) return ok(null);
                function r(){ok({w:i.naturalWidth,h:i.naturalHeight,src:i.src});}
                if(i.complete) r(); else {i.onload=r; i.onerror=r;}})""")
            self.assertIsNotNone(img, "no QC montage on the series page")
            self.assertGreater(img["w"], 0)
            self.assertGreater(img["h"], 0)
            png = cl.raw_http(self.port, "GET", img["src"].replace(base, ""))
            self.assertEqual(png.status, 200)
            self.assertEqual(png.headers["content-type"], "image/png")
            self.assertTrue(png.body.startswith(b"\x89PNG") and len(png.body) > 1000)
            self.assertTrue(b.eval("!!document.querySelector('#qc-report table')"))
            self.assertTrue(b.eval("document.getElementById('evidence').textContent"
                                   ".indexOf('quiet') >= 0"))
            nifti = b.eval("""Array.from(document.querySelectorAll('table.outputs a'))
                .map(function(a){return a.textContent;})""")
            self.assertTrue(any(n.endswith(".nii.gz") for n in nifti), nifti)
            self.assertTrue(any(n.endswith(".json") for n in nifti), nifti)
            b.screenshot(os.path.join(self.art, "series_page.png"))

            # re-run the job from the page
            job_id, _, started1, finished1, _ = self.job
            b.click_and_wait("#job-%d form button" % job_id)
            flash = b.eval("(document.getElementById('flash')||{}).textContent")
            self.assertIn("queued again", flash or "")
            rerun = self.wait_job_state(("done", "dead"), timeout=900, after=finished1)
            self.assertEqual(rerun[0], job_id)  # (series, version, kind) has one job row
            self.assertEqual(rerun[1], "done")
            self.assertGreater(rerun[2], finished1)  # a new run, started after the first
            with open(os.path.join(self.d.data_dir, "logs", "job-%d.log" % job_id)) as f:
                self.assertEqual(len(re.findall(r"job: start job=%d " % job_id, f.read())), 2)
            audit = self.d.query("SELECT detail FROM events WHERE kind = 'console'")
            self.assertTrue(any("action=job_retry job=%d result=ok by=session" % job_id in a[0]
                                for a in audit), audit)
            b.goto(base + "/series/" + LIDC_SERIES)
            b.screenshot(os.path.join(self.art, "series_page_rerun.png"))

            for page in ("jobs", "outbox", "peers", "config"):
                b.goto(base + "/" + page)
                self.assertIn("radprep", b.eval("document.title"))
                b.screenshot(os.path.join(self.art, page + ".png"))
            # the configuration page never shows the token file's path
            self.assertNotIn(self.d.workdir, b.eval("document.getElementById('conf-http')"
                                                    ".textContent"))
        finally:
            b.close()
        for f in ("overview.png", "series_list.png", "series_page.png", "jobs.png"):
            self.assertGreater(os.path.getsize(os.path.join(self.art, f)), 10000, f)


if __name__ == "__main__":
    unittest.main(verbosity=2)
