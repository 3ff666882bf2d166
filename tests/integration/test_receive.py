"""Receiving end to end, against real dcmtk peers on loopback.

1. echoscu gets a C-ECHO success.
2. storescu sends every real set in $RP_SHARED_DATA, each file in its own transfer syntax
   (no transcoding). Every file must be answered Success and land under
   store/<study>/<series>/<sop>.dcm with exactly the dataset bytes the sender put on the
   wire: dcmtk storescp in bit-preserving mode receives the same files as the reference.
   The index must hold the right patient/study/series/instance rows and counts.
3. The JPEG re-encoded copy of a series (same SOP Instance UIDs, other bytes) is answered
   Success under duplicate_policy=keep_first, keeps the first copy, and says so in the log.
4. Five storescu processes send in parallel to a fresh node: nothing is lost.
"""
import collections
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

import pydicom  # noqa: E402

SETS = ["ct_chest_lidc0001", "ct_head_gantry_tilt_uneven_ge", "mr_brain_siemens_xa30",
        "compressed/single_files", "compressed/ts_same_image_9_syntaxes", "xray",
        "enhanced_multiframe", "seg_with_source_ct", "non_image_objects"]
MULTIFRAG = "compressed/t1w_jpeg_lossless_multifragment_5001"


def set_files(name):
    return rptest.data_files(name)


def header(path):
    """pydicom header, also for the raw dataset without File Meta (implicit LE)."""
    return pydicom.dcmread(path, stop_before_pixels=True, force=True)


class TestReceive(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = rptest.Radprepd(node={"duplicate_policy": "keep_first"}).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.node.stop()
        assert rc == 0, "radprepd exit code %s\n%s" % (rc, cls.node.log_tail())

    def test_1_echo(self):
        p = rptest.echoscu(self.node.port, aec=self.node.ae)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("Received Echo Response (Success)", p.stdout + p.stderr)
        self.node.wait_log(r"association released calling_ae=ECHOSCU")

    def test_2_every_set_byte_identical_and_indexed(self):
        files, seen = [], set()
        for f in (f for s in SETS for f in set_files(s)):
            sop = str(header(f).SOPInstanceUID)
            if sop not in seen:  # the same object in several syntaxes: see test_4
                seen.add(sop)
                files.append(f)
        self.assertGreater(len(files), 360)
        res = rptest.storescu_asis(self.node.port, files, aec=self.node.ae)
        bad = {f: s for f, s in res.status.items() if s != "Success"}
        self.assertEqual(bad, {}, res.out[-3000:])

        # reference: what storescu puts on the wire, as seen by storescp in +B mode
        with rptest.StoreSCP() as scp:
            ref_res = rptest.storescu_asis(scp.port, files, aec=scp.ae)
            ref = {f: s for f, s in ref_res.status.items()}
            expected = {}
            for f in files:
                h = header(f)
                sop = str(h.SOPInstanceUID)
                rows = self.node.query(
                    "SELECT i.file_path, i.transfer_syntax, s.series_uid, st.study_uid "
                    "FROM instances i JOIN series s ON i.series_fk = s.id "
                    "JOIN studies st ON s.study_fk = st.id WHERE i.sop_uid = ?", (sop,))
                self.assertEqual(len(rows), 1, "not indexed: %s" % f)
                path, ts, series, study = rows[0]
                self.assertEqual(path, "%s/%s/%s.dcm" % (h.StudyInstanceUID,
                                                        h.SeriesInstanceUID, sop))
                self.assertEqual(series, str(h.SeriesInstanceUID))
                self.assertEqual(study, str(h.StudyInstanceUID))
                stored = os.path.join(self.node.store_dir, path)
                self.assertTrue(os.path.isfile(stored), stored)
                got = rptest.dataset_bytes(stored)
                ref_file = scp.file_for(sop) if ref.get(f) == "Success" else None
                if ref_file:
                    want = rptest.dataset_bytes(ref_file)
                else:  # storescp refuses a few syntaxes (JPEG process 14): the original
                    want = rptest.dataset_bytes(f)
                self.assertEqual(got, want, "dataset bytes differ: %s" % f)
                # the stored file is a valid Part-10 file that says what it holds
                sh = pydicom.dcmread(stored, stop_before_pixels=True)
                self.assertEqual(str(sh.file_meta.MediaStorageSOPInstanceUID), sop)
                self.assertEqual(str(sh.file_meta.TransferSyntaxUID), ts)
                expected[sop] = (str(h.SeriesInstanceUID), str(h.StudyInstanceUID),
                                 str(h.get("PatientID", "")))

        # index counts match the headers (the queue may lag one flush)
        self.node.wait_log(r"stored sop=%s" % list(expected)[-1].replace(".", r"\."))
        end = time.time() + 10
        while time.time() < end:
            n = self.node.query("SELECT count(*) FROM instances")[0][0]
            if n >= len(expected):
                break
            time.sleep(0.2)
        self.assertEqual(self.node.query("SELECT count(*) FROM instances")[0][0], len(expected))
        per_series = collections.Counter(v[0] for v in expected.values())
        rows = dict(self.node.query("SELECT series_uid, instance_count FROM series"))
        self.assertEqual(rows, dict(per_series))
        studies = {v[1] for v in expected.values()}
        self.assertEqual({r[0] for r in self.node.query("SELECT study_uid FROM studies")},
                         studies)
        patients = {v[2] for v in expected.values()}
        self.assertEqual({r[0] for r in self.node.query("SELECT patient_id FROM patients")},
                         patients)
        self.assertEqual(self.node.files_in_spool(), [])

    def test_3_duplicates_keep_first(self):
        variants = set_files("enhanced_multiframe")
        r = rptest.storescu_asis(self.node.port, variants, aec=self.node.ae)
        self.assertEqual(len(r.ok()), len(variants), r.out[-2000:])
        mr = set_files("mr_brain_siemens_xa30/5001_anat-T1w_acq-tfl")
        r = rptest.storescu_asis(self.node.port, mr, aec=self.node.ae)
        self.assertEqual(len(r.ok()), len(mr), r.out[-2000:])
        frag = set_files(MULTIFRAG)
        r = rptest.storescu_asis(self.node.port, frag, aec=self.node.ae)
        self.assertEqual(len(r.ok()), len(frag), r.out[-2000:])
        # the first copies stay, byte for byte
        for f in mr[:5]:
            h = header(f)
            stored = os.path.join(self.node.store_dir, str(h.StudyInstanceUID),
                                  str(h.SeriesInstanceUID), str(h.SOPInstanceUID) + ".dcm")
            self.assertEqual(rptest.dataset_bytes(stored), rptest.dataset_bytes(f))
        self.node.wait_log(r"stored duplicate .*outcome=duplicate_kept_first")
        # sending the same bytes again is an idempotent success
        r = rptest.storescu_asis(self.node.port, mr[:3], aec=self.node.ae)
        self.assertEqual(len(r.ok()), 3)
        self.node.wait_log(r"outcome=duplicate_identical")


class TestReplace(unittest.TestCase):
    def test_4_replace_policy_same_object_four_syntaxes(self):
        """One SOP Instance in explicit LE, J2K, JPEG-LS and RLE, sent one after the other
        under duplicate_policy=replace: each time the store holds the bytes just sent."""
        variants = [rptest.data_path("enhanced_multiframe", "mr_enhanced_small_10frames%s.dcm" % s)
                    for s in ("", "_j2k", "_jpegls", "_rle")]
        node = rptest.Radprepd(node={"duplicate_policy": "replace"}).start()
        try:
            h = header(variants[0])
            stored = os.path.join(node.store_dir, str(h.StudyInstanceUID),
                                  str(h.SeriesInstanceUID), str(h.SOPInstanceUID) + ".dcm")
            for i, f in enumerate(variants):
                r = rptest.storescu_asis(node.port, [f], aec=node.ae)
                self.assertEqual(r.ok(), [f], r.out[-2000:])
                with rptest.StoreSCP() as scp:  # what storescu put on the wire
                    rr = rptest.storescu_asis(scp.port, [f], aec=scp.ae)
                    self.assertEqual(rr.ok(), [f], rr.out[-2000:])
                    want = rptest.dataset_bytes(scp.file_for(str(h.SOPInstanceUID)))
                node.wait_store(lambda: os.path.exists(stored)
                                and rptest.dataset_bytes(stored) == want)
                self.assertEqual(rptest.dataset_bytes(stored), want, f)
                ts = str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                self.assertEqual(str(pydicom.dcmread(stored).file_meta.TransferSyntaxUID), ts)
            self.assertEqual(len(node.log_kv(r"outcome=duplicate_replaced")), 3)
        finally:
            self.assertEqual(node.stop(), 0)
        rows = node.query("SELECT transfer_syntax FROM instances WHERE sop_uid = ?",
                          (str(h.SOPInstanceUID),))
        self.assertEqual(rows, [("1.2.840.10008.1.2.5",)])


class TestMovedInstance(unittest.TestCase):
    def test_5_same_sop_other_series_is_a_duplicate(self):
        """A SOP Instance UID re-sent under another series follows the duplicate policy:
        keep_first keeps the old file; replace moves it (old file and row gone)."""
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from test_badinput import make_dataset
        tmp = rptest.tempdir("moved")
        a = make_dataset(os.path.join(tmp, "a.dcm"), "1.2.3", "1.2.3.1", "1.2.3.1.7")
        b = make_dataset(os.path.join(tmp, "b.dcm"), "1.2.3", "1.2.3.2", "1.2.3.1.7")
        for policy in ("keep_first", "replace"):
            node = rptest.Radprepd(node={"duplicate_policy": policy,
                                         "index_flush_ms": 50}).start()
            try:
                self.assertEqual(rptest.storescu(node.port, [a]).ok(), [a])
                end = time.time() + 10
                while time.time() < end and not node.query(
                        "SELECT 1 FROM instances WHERE sop_uid = '1.2.3.1.7'"):
                    time.sleep(0.05)
                self.assertEqual(rptest.storescu(node.port, [b]).ok(), [b])
                old = os.path.join(node.store_dir, "1.2.3", "1.2.3.1", "1.2.3.1.7.dcm")
                new = os.path.join(node.store_dir, "1.2.3", "1.2.3.2", "1.2.3.1.7.dcm")
                if policy == "replace":  # the old copy goes when the new one is promoted
                    node.wait_store(lambda: not os.path.exists(old))
                if policy == "keep_first":
                    self.assertTrue(os.path.exists(old))
                    self.assertFalse(os.path.exists(new))
                    node.wait_log(r"outcome=duplicate_kept_first")
                else:
                    self.assertFalse(os.path.exists(old))
                    self.assertTrue(os.path.exists(new))
                    node.wait_log(r"duplicate moved across series sop=1\.2\.3\.1\.7")
            finally:
                self.assertEqual(node.stop(), 0)
            rows = node.query("SELECT i.file_path, s.series_uid FROM instances i "
                              "JOIN series s ON i.series_fk = s.id")
            want = "1.2.3.1" if policy == "keep_first" else "1.2.3.2"
            self.assertEqual(rows, [("1.2.3/%s/1.2.3.1.7.dcm" % want, want)])


class TestParallel(unittest.TestCase):
    def test_parallel_senders(self):
        groups = [set_files("ct_chest_lidc0001"), set_files("mr_brain_siemens_xa30"),
                  set_files("ct_head_gantry_tilt_uneven_ge") + set_files("xray"),
                  set_files("compressed/single_files") + set_files("enhanced_multiframe"),
                  set_files("compressed/ts_same_image_9_syntaxes") +
                  set_files("seg_with_source_ct") + set_files("non_image_objects")]
        node = rptest.Radprepd(node={"max_associations": 8,
                                     "max_associations_per_peer": 8}).start()
        try:
            results = [None] * len(groups)

            def send(i):
                results[i] = rptest.storescu_asis(node.port, groups[i], aec=node.ae,
                                                  aet="SENDER%d" % i)

            th = [threading.Thread(target=send, args=(i,)) for i in range(len(groups))]
            for t in th:
                t.start()
            for t in th:
                t.join()
            for i, r in enumerate(results):
                self.assertEqual(len(r.ok()), len(groups[i]), r.out[-2000:])
            sops = {str(header(f).SOPInstanceUID) for g in groups for f in g}
            accepted = node.log_kv(r"association accepted")
            self.assertGreaterEqual(len({a["calling_ae"] for a in accepted}), 5)
        finally:
            self.assertEqual(node.stop(), 0)
        # after a clean stop the queue was flushed: every instance is indexed
        n = node.query("SELECT count(*) FROM instances")[0][0]
        self.assertEqual(n, len(sops))  # one enhanced MR object comes in 4 syntaxes
        self.assertEqual(len(node.files_in_store()), len(sops))
        self.assertEqual(node.files_in_spool(), [])


    def test_many_senders_and_echoes(self):
        """12 storescu and 12 echoscu at once under max_associations=32: all served."""
        files = set_files("ct_chest_lidc0001") + set_files("ct_head_gantry_tilt_uneven_ge")
        node = rptest.Radprepd(node={"max_associations": 32,
                                     "max_associations_per_peer": 32}).start()
        try:
            results, echoes = [None] * 12, [None] * 12

            def send(i):
                results[i] = rptest.storescu(node.port, files[i::12], aet="MANY%d" % i)

            def echo(i):
                echoes[i] = rptest.echoscu(node.port, aet="PING%d" % i).returncode

            th = [threading.Thread(target=send, args=(i,)) for i in range(12)]
            th += [threading.Thread(target=echo, args=(i,)) for i in range(12)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            self.assertEqual(sum(len(r.ok()) for r in results), len(files),
                             [r.failed() for r in results])
            self.assertEqual(echoes, [0] * 12)
            # they really overlapped: several were open before the first one ended
            lines = [l for l in node.log().splitlines() if "association " in l]
            first_end = next(i for i, l in enumerate(lines) if "association released" in l)
            self.assertGreaterEqual(
                sum("association accepted" in l for l in lines[:first_end]), 4)
        finally:
            self.assertEqual(node.stop(), 0)
        self.assertEqual(node.query("SELECT count(*) FROM instances")[0][0], len(files))


if __name__ == "__main__":
    unittest.main(verbosity=2)