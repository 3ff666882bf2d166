#!/usr/bin/python3
"""Integration test of the `radprep` operator tool on real files.

check-config: good and bad files give the right exit codes and the one-line FILE:LINE message.
An index is built from real DICOM (the shared CT and MR sets, laid out as the store does) with
`radprep reindex`, then status, ls, show, trigger, jobs, reprocess, send and events are checked
against what we know the files contain.
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import unittest

import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("RP_LOG_LEVEL", None)
    e.pop("RADPREP_CONFIG", None)
    if env:
        e.update(env)
    p = rptest.run_radprep(*args, env=e, timeout=300)
    return p.returncode, p.stdout, p.stderr


class CheckConfig(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rp_cli_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, text, mode=0o644):
        p = os.path.join(self.tmp, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        return p

    def test_good_file(self):
        path = self.write("good.ini", f"""
; a node with one scanner and one PACS
[node]
ae_title = RADPREP_T
port = 11999
data_dir = {self.tmp}/data

[peer ct1]
ae_title = CT1

[peer pacs]
ae_title = PACS
host = 127.0.0.1
port = 4242
destination = yes

[completion CT]
quiet_s = 10

[rule ct_default]
modality = CT
steps = hu clip(-1000,1000) normalize(minmax)
outputs = nifti json
send_to = pacs
""")
        rc, out, err = run("check-config", path)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")
        self.assertTrue(out.startswith("OK " + path), out)
        self.assertIn("ae_title=RADPREP_T port=11999", out)
        self.assertIn("ct1", out)
        self.assertIn("destination", out)
        # the global --config form checks the same file
        rc, out, _ = run("--config", path, "check-config", "--quiet")
        self.assertEqual((rc, out), (0, "OK\n"))

    def test_shipped_example(self):
        src = os.path.join(rptest.SOURCE_DIR, "conf", "radprep.ini.example")
        rc, out, err = run("check-config", src)
        self.assertEqual(rc, 0, err)
        self.assertIn("chest_ct", out)
        self.assertIn("steps       checked", out)

    def test_bad_files(self):
        cases = [
            ("[node]\nport = 104\n\nbogus = 1\n", 4, "unknown key 'bogus' in [node]"),
            ("[node]\n[nodes]\n", 2, "unknown section [nodes]"),
            ("[node]\nport = 99999\n", 2, "port: 99999 is out of range 1..65535"),
            ("[node]\nae_title = THIS_IS_FAR_TOO_LONG\n", 2, "longer than 16 characters"),
            ("[tls]\nrequire_client_cert = perhaps\n", 2, "is not a boolean"),
            ("[peer a]\nae_title = X\n[peer b]\nae_title = X\n", 3, "AE title 'X' is already used"),
            ("[rule r]\nmodality = CT\n", 1, "rule r: steps is empty"),
            ("[node]\nnot a key value line\n", 2, "syntax error"),
        ]
        for i, (text, line, why) in enumerate(cases):
            path = self.write(f"bad{i}.ini", text)
            rc, out, err = run("check-config", path)
            self.assertEqual(rc, 2, (text, err))
            self.assertEqual(out, "")
            self.assertEqual(err.count("\n"), 1, err)  # exactly one line
            self.assertTrue(err.startswith(f"radprep: {path}:{line}: "), err)
            self.assertIn(why, err)

    def test_unknown_step_reported_with_line(self):
        path = self.write("steps.ini", "[node]\nport = 11998\n\n[rule r]\nmodality = CT\n"
                                       "steps = hu nosuchstep\n")
        rc, out, err = run("check-config", path)
        self.assertEqual(rc, 2, out + err)
        self.assertTrue(err.startswith(f"radprep: {path}:6: rule r: "), err)
        self.assertIn("nosuchstep", err)

    def test_daemon_refuses_bad_recipe_at_start(self):
        # The node itself, not only check-config, stops on a bad step with FILE:LINE.
        path = self.write("daemon.ini", "[node]\nport = 11997\n\n[rule r]\nmodality = CT\n"
                                        "steps = hu resample(1,1,bogus)\n")
        radprepd = rptest.radprepd_bin()
        p = subprocess.run([radprepd, "--config", path, "--data-dir",
                            os.path.join(self.tmp, "node")],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn(f"{path}:6: rule r: ", p.stderr)
        self.assertIn("resample", p.stderr)

    def test_validation_errors(self):
        # destination without host/port; TLS key readable by others
        path = self.write("dest.ini", "[peer p]\nae_title = P\ndestination = yes\n")
        rc, _, err = run("check-config", path)
        self.assertEqual(rc, 2)
        self.assertIn(f"{path}:1: peer p: destination = yes needs host and port", err)
        cert, key = os.path.join(self.tmp, "c.pem"), os.path.join(self.tmp, "k.pem")

        def make_cert(days):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                            "-days", str(days), "-subj", "/CN=radprep-test"],
                           check=True, capture_output=True)
        make_cert(365)
        os.chmod(key, 0o644)
        path = self.write("tls.ini", f"[tls]\nport = 2762\ncert = {cert}\nkey = {key}\n"
                                     f"ca_file = {cert}\n")
        rc, _, err = run("check-config", path)
        self.assertEqual(rc, 2)
        self.assertIn("readable by group or others", err)
        os.chmod(key, 0o600)
        rc, out, err = run("check-config", "--quiet", path)
        self.assertEqual((rc, out, err), (0, "OK\n", ""))
        # a certificate close to its expiry: still OK, with a warning line
        make_cert(5)
        os.chmod(key, 0o600)
        rc, out, err = run("check-config", "--quiet", path)
        self.assertEqual((rc, out), (0, "OK\n"))
        self.assertIn("warning: [tls] cert", err)
        self.assertRegex(err, r"expires in [45] days")
        # the key of another certificate
        other = self.write("other.ini", f"[tls]\nport = 2762\ncert = {cert}\nkey = {key}\n"
                                        f"ca_file = {cert}\n")
        make_cert(365)
        os.chmod(key, 0o600)
        with open(cert) as f:
            first = f.read()
        make_cert(365)
        os.chmod(key, 0o600)
        with open(cert, "w") as f:
            f.write(first)
        rc, _, err = run("check-config", other)
        self.assertEqual(rc, 2)
        self.assertIn("does not belong to cert", err)

    def test_missing_file_and_usage(self):
        rc, _, err = run("check-config", os.path.join(self.tmp, "nope.ini"))
        self.assertEqual(rc, 2)
        self.assertIn("cannot open", err)
        rc, _, err = run("--config", os.path.join(self.tmp, "nope.ini"), "status")
        self.assertEqual(rc, 2)
        for args in (["frobnicate"], [], ["--data-dir"], ["--bogus", "ls"], ["--config=", "ls"],
                     ["ls", "series", "--limit", "x"], ["show"]):
            rc, out, err = run(*args)
            self.assertEqual(rc, 2, args)
            self.assertEqual(out, "", args)
            self.assertEqual(err.count("\n"), 1, (args, err))
            self.assertTrue(err.startswith("radprep: "), err)
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        self.assertIn("check-config", out)
        for cmd in ("status", "ls", "show", "jobs", "outbox", "trigger", "reprocess", "send",
                    "reindex", "check-config", "events"):
            rc, out, err = run(cmd, "--help")
            self.assertEqual(rc, 0, cmd + err)
            self.assertIn("usage: radprep " + cmd, out)
        rc, out, _ = run("--version")
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("radprep "))


def place(store, path):
    """Copy one DICOM file where the store keeps it: store/<study>/<series>/<sop>.dcm."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    d = os.path.join(store, ds.StudyInstanceUID, ds.SeriesInstanceUID)
    os.makedirs(d, exist_ok=True)
    shutil.copyfile(path, os.path.join(d, ds.SOPInstanceUID + ".dcm"))
    return ds


class Index(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rp_cli_idx_")
        cls.data = os.path.join(cls.tmp, "data")
        store = os.path.join(cls.data, "store")
        os.makedirs(store)
        cls.ct = {}
        ct_dir = rptest.data_path("ct_head_gantry_tilt_uneven_ge")
        for f in sorted(os.listdir(ct_dir)):
            ds = place(store, os.path.join(ct_dir, f))
            cls.ct_series = ds.SeriesInstanceUID
            cls.ct_study = ds.StudyInstanceUID
            cls.ct_patient = str(ds.PatientID)
            cls.ct[ds.SOPInstanceUID] = int(ds.InstanceNumber)
        cls.mr_series = {}
        mr_root = rptest.data_path("mr_brain_siemens_xa30")
        for sub in ("2001_AAHead_Scout", "9001_gre_field_mapping"):
            for f in sorted(os.listdir(os.path.join(mr_root, sub))):
                ds = place(store, os.path.join(mr_root, sub, f))
                cls.mr_series.setdefault(ds.SeriesInstanceUID, 0)
                cls.mr_series[ds.SeriesInstanceUID] += 1
        cls.n_mr = sum(cls.mr_series.values())
        rc, out, err = run("--data-dir", cls.data, "reindex")
        assert rc == 0, err
        cls.reindex_out = out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, *args):
        return run("--data-dir", self.data, *args)

    def test_1_reindex_and_status(self):
        total = len(self.ct) + self.n_mr
        self.assertIn(f"reindexed {total} instances", self.reindex_out)
        rc, out, err = self.cli("status", "--json")
        self.assertEqual(rc, 0, err)
        st = json.loads(out)
        self.assertEqual(st["instances"], total)
        self.assertEqual(st["series"], 1 + len(self.mr_series))
        self.assertEqual(st["studies"], 2)
        self.assertEqual(st["store_files"], total)
        self.assertGreater(st["store_bytes_on_disk"], 0)
        self.assertGreater(st["free_bytes"], 0)
        self.assertEqual(st["series_state"]["receiving"], 1 + len(self.mr_series))
        rc, out, err = self.cli("status")
        self.assertEqual(rc, 0, err)
        self.assertIn(f"instances={total}", out)
        self.assertIn("free", out)

    def test_2_ls(self):
        rc, out, err = self.cli("ls", "series", "--json")
        self.assertEqual(rc, 0, err)
        rows = json.loads(out)
        by_uid = {r["series_uid"]: r for r in rows}
        self.assertEqual(by_uid[self.ct_series]["instances"], len(self.ct))
        self.assertEqual(by_uid[self.ct_series]["modality"], "CT")
        for uid, n in self.mr_series.items():
            self.assertEqual(by_uid[uid]["instances"], n)
        rc, out, _ = self.cli("ls", "series", "--modality", "MR", "--json")
        self.assertEqual(sorted(r["series_uid"] for r in json.loads(out)),
                         sorted(self.mr_series))
        rc, out, _ = self.cli("ls", "instances", "--series", self.ct_series, "--json")
        rows = json.loads(out)
        self.assertEqual({r["sop_uid"]: r["number"] for r in rows}, self.ct)
        self.assertEqual([r["number"] for r in rows], sorted(self.ct.values()))
        rc, out, _ = self.cli("ls", "studies", "--json")
        studies = json.loads(out)
        self.assertEqual(len(studies), 2)
        ct_study = [s for s in studies if s["study_uid"] == self.ct_study][0]
        self.assertEqual(ct_study["modalities"], "CT")
        self.assertEqual(ct_study["instances"], len(self.ct))
        rc, out, _ = self.cli("ls", "patients", "--limit", "1", "--json")
        self.assertEqual(len(json.loads(out)), 1)
        # the aligned table: a header and one line per series, columns lined up
        rc, out, _ = self.cli("ls", "series")
        lines = out.splitlines()
        self.assertEqual(len(lines), 1 + 1 + len(self.mr_series))
        self.assertTrue(lines[0].startswith("series_uid"))
        col = lines[0].index("study_uid")
        for line in lines[1:]:
            self.assertEqual(line[col - 2:col], "  ")
        rc, _, err = self.cli("ls", "nonsense")
        self.assertEqual(rc, 2)
        self.assertIn("unknown level", err)

    def test_3_show_trigger_jobs_reprocess(self):
        rc, out, err = self.cli("show", "--json", self.ct_series)
        self.assertEqual(rc, 0, err)
        s = json.loads(out)
        self.assertEqual(s["state"], "receiving")
        self.assertEqual(s["version"], 1)
        self.assertEqual(s["instance_count"], len(self.ct))
        self.assertEqual(len(s["instances"]), len(self.ct))
        self.assertEqual(s["jobs"], [])
        rc, out, err = self.cli("trigger", self.ct_series)
        self.assertEqual(rc, 0, err)
        self.assertIn("complete (operator), job", out)
        rc, out, err = self.cli("trigger", self.ct_series)  # idempotent
        self.assertEqual(rc, 0, err)
        self.assertIn("already complete", out)
        rc, out, _ = self.cli("jobs", "--json")
        jobs = json.loads(out)
        self.assertEqual(len(jobs), 1)
        self.assertEqual(jobs[0]["series_uid"], self.ct_series)
        self.assertEqual(jobs[0]["state"], "queued")
        rc, out, _ = self.cli("ls", "series", "--state", "complete", "--json")
        self.assertEqual([r["series_uid"] for r in json.loads(out)], [self.ct_series])
        rc, out, _ = self.cli("show", self.ct_series)
        self.assertIn("state         complete  version=1", out)
        self.assertIn("jobs", out)
        rc, out, err = self.cli("reprocess", self.ct_series)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"job {jobs[0]['id']} queued", out)
        rc, _, err = self.cli("trigger", "1.2.3.4.5.6.7")
        self.assertEqual(rc, 1)
        self.assertIn("no series 1.2.3.4.5.6.7", err)
        rc, _, err = self.cli("jobs", "--state", "bogus")
        self.assertEqual(rc, 2)
        rc, out, _ = self.cli("events", "--json")
        kinds = {e["kind"] for e in json.loads(out)}
        self.assertIn("series_complete", kinds)
        # reindex keeps the completion state and version
        rc, _, err = self.cli("reindex")
        self.assertEqual(rc, 0, err)
        rc, out, _ = self.cli("show", "--json", self.ct_series)
        s = json.loads(out)
        self.assertEqual((s["state"], s["version"]), ("complete", 1))

    def test_4_outbox_send(self):
        db = sqlite3.connect(os.path.join(self.data, "index.sqlite"))
        db.execute("INSERT INTO outbox(sop_uid, file_path, destination, state, attempts,"
                   " next_attempt_at, last_status, last_reason, created_at, updated_at)"
                   " VALUES('1.2.3', '/x/a.dcm', 'pacs', 'dead', 5, 0, 42752, 'refused', 0, 0)")
        db.commit()
        db.close()
        rc, out, _ = self.cli("outbox", "--state", "dead", "--json")
        rows = json.loads(out)
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["status"], "0xA700")
        rc, out, err = self.cli("send", "--destination", "pacs")
        self.assertEqual(rc, 0, err)
        self.assertIn("1 outbox entry re-queued", out)
        rc, out, _ = self.cli("outbox", "--json")
        rows = json.loads(out)
        self.assertEqual((rows[0]["state"], rows[0]["attempts"]), ("pending", 0))

    def test_6_non_utf8_text_gives_valid_json(self):
        db = sqlite3.connect(os.path.join(self.data, "index.sqlite"))
        db.execute("UPDATE patients SET name = CAST(X'4DFC6C6C6572' AS TEXT)"
                   " WHERE patient_id = ?", (self.ct_patient,))  # 'Müller' in ISO 8859-1
        db.commit()
        db.close()
        rc, out, err = self.cli("ls", "patients", "--json")
        self.assertEqual(rc, 0, err)
        names = [p["name"] for p in json.loads(out)]
        self.assertIn("M?ller", names)

    def test_5_missing_index(self):
        rc, _, err = run("--data-dir", self.tmp, "ls", "series")
        self.assertEqual(rc, 1)
        self.assertIn("no index at", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "index.sqlite")))
        # a damaged index: one line that says what SQLite found
        bad = os.path.join(self.tmp, "bad")
        os.makedirs(bad)
        with open(os.path.join(bad, "index.sqlite"), "wb") as f:
            f.write(b"this is not a database" * 100)
        rc, out, err = run("--data-dir", bad, "status")
        self.assertEqual(rc, 1)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertIn("file is not a database", err)


class TestProcessThreads(unittest.TestCase):
    def test_openmp_threads_sleep_when_idle(self):
        """`radprep process` runs with OMP_WAIT_POLICY=passive when the user set no policy
        (libgomp reads it only as it initialises: spinning idle threads took the cores the
        gzip writer needed), set before libgomp's initialiser, in one start; a policy the user
        chose is kept. libgomp's verbose display shows the spin count the process runs with:
        0 is passive, 300000 the default."""
        src = rptest.data_path("xray", "dx_chest_nih_sc_mono2_8bit.dcm")
        for policy, want in ((None, "'0'"), ("active", None)):
            out = rptest.tempdir("omp")
            env = dict(os.environ, OMP_DISPLAY_ENV="verbose")
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            p = rptest.run_radprep("process", os.path.dirname(src), "--out", out, env=env)
            self.assertEqual(p.returncode, 0, p.stderr[-2000:])
            spins = re.findall(r"GOMP_SPINCOUNT = ('\d+')", p.stderr)
            self.assertTrue(spins, p.stderr[-2000:])
            if want:
                self.assertEqual(spins[-1], want, p.stderr[-2000:])
            else:
                self.assertNotEqual(spins[-1], "'0'")
            self.assertEqual(len(spins), 1, "one start, no restart: %s" % spins)


if __name__ == "__main__":
    rptest.require_built(rptest.radprep_bin())
    unittest.main(verbosity=2)
