"""Bad input of every kind: right DICOM answer, a log line saying why, never a crash, never
a half file in store/ or spool/.

- access control: unknown calling AE, wrong called AE, right AE from the wrong host
  (A-ASSOCIATE-RJ with the right result/source/reason, checked on the raw PDU too);
- association limit: beyond max_associations a transient "local limit exceeded";
- every file of $RP_SHARED_DATA/malformed: failure status, or stored + indexed correctly;
- raw sockets: garbage bytes, a truncated P-DATA, a silent connection, a silent association
  (dropped after the timeouts while the node keeps serving others);
- hostile / missing UIDs (crafted with pydicom, sent with storescu): 0xC000, nothing on disk;
- free space below the watermark: 0xA700 (Out of Resources), nothing on disk;
- an instance above max_instance_mb: refused, nothing on disk.
"""
import os
import re
import socket
import subprocess
import sys
import time
import unittest
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

import pydicom  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402

UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def assert_store_clean(tc, node):
    """Every path under store/ is <uid>/<uid>/<uid>.dcm and spool/ is empty."""
    for dp, dns, fns in os.walk(node.store_dir):
        rel = os.path.relpath(dp, node.store_dir)
        parts = [] if rel == "." else rel.split(os.sep)
        tc.assertLessEqual(len(parts), 2, dp)
        for p in parts:
            tc.assertRegex(p, UID_RE)
        for f in fns:
            tc.assertEqual(len(parts), 2, "file outside a series dir: %s/%s" % (dp, f))
            tc.assertTrue(f.endswith(".dcm"), f)
            tc.assertRegex(f[:-4], UID_RE)
    tc.assertEqual(node.files_in_spool(), [])


def make_dataset(path, study, series, sop, cls="1.2.840.10008.5.1.4.1.1.7"):
    """A small Secondary Capture whose UIDs are whatever the test wants (None: absent)."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = cls
    fm.MediaStorageSOPInstanceUID = sop or "1.2.3"
    fm.TransferSyntaxUID = rptest.EXPLICIT_LE
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID = cls
    if sop is not None:
        ds.SOPInstanceUID = sop
    ds.PatientID, ds.PatientName, ds.Modality = "HOSTILE", "Hostile^Uid", "OT"
    if study is not None:
        ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(64)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, write_like_original=False)
    return path


class TestAccessControl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = rptest.Radprepd(
            ae="RPNODE",
            node={"max_associations": 2, "max_associations_per_peer": 2},
            peers={"ct": {"ae_title": "CTSCU", "host": "127.0.0.1"},
                   "far": {"ae_title": "FARSCU", "host": "10.255.255.1"},
                   "raw": {"ae_title": "RAWSCU"}}).start()

    @classmethod
    def tearDownClass(cls):
        assert cls.node.stop() == 0, cls.node.log_tail()

    def test_configured_peer_is_accepted(self):
        p = rptest.echoscu(self.node.port, aec="RPNODE", aet="CTSCU")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_unknown_calling_ae(self):
        p = rptest.echoscu(self.node.port, aec="RPNODE", aet="INTRUDER")
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stdout + p.stderr, r"(?i)calling ae title not recognized")
        self.node.wait_log(r"association rejected calling_ae=INTRUDER .*reason=")
        a = rptest.RawAssociation(self.node.port, calling="NOBODY", called="RPNODE").open()
        self.assertEqual((a.result, a.reject), ("rejected", (1, 1, 3)))
        a.close()

    def test_wrong_called_ae(self):
        p = rptest.echoscu(self.node.port, aec="NOTUS", aet="CTSCU")
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stdout + p.stderr, r"(?i)called ae title not recognized")
        a = rptest.RawAssociation(self.node.port, calling="CTSCU", called="NOTUS").open()
        self.assertEqual((a.result, a.reject), ("rejected", (1, 1, 7)))
        a.close()

    def test_wrong_host(self):
        p = rptest.echoscu(self.node.port, aec="RPNODE", aet="FARSCU")
        self.assertNotEqual(p.returncode, 0)
        self.node.wait_log(r"association rejected calling_ae=FARSCU .*must connect from host")

    def test_association_limit(self):
        held = [rptest.RawAssociation(self.node.port, calling="RAWSCU", called="RPNODE").open()
                for _ in range(2)]
        try:
            self.assertEqual([h.result for h in held], ["accepted", "accepted"])
            a = rptest.RawAssociation(self.node.port, calling="CTSCU", called="RPNODE").open()
            self.assertEqual((a.result, a.reject), ("rejected", (2, 3, 2)))
            a.close()
            self.node.wait_log(r"association rejected calling_ae=CTSCU .*max_associations=2")
        finally:
            for h in held:
                h.close()
        # slots come back once the holders are gone
        end = time.time() + 10
        while time.time() < end:
            if rptest.echoscu(self.node.port, aec="RPNODE", aet="CTSCU").returncode == 0:
                break
            time.sleep(0.2)
        else:
            self.fail("association slots were not released\n" + self.node.log_tail())


class TestHostileInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = rptest.Radprepd(node={"acse_timeout_s": 2, "dimse_timeout_s": 3,
                                         "network_timeout_s": 5}).start()
        cls.tmp = rptest.tempdir("hostile")

    @classmethod
    def tearDownClass(cls):
        assert cls.node.stop() == 0, cls.node.log_tail()

    def alive(self):
        self.assertTrue(self.node.alive(), self.node.log_tail())
        p = rptest.echoscu(self.node.port)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr + self.node.log_tail())

    def test_malformed_files(self):
        files = rptest.data_files("malformed")
        self.assertGreaterEqual(len(files), 16)
        res = rptest.storescu_asis(self.node.port, files)
        self.alive()
        time.sleep(0.5)  # index flush
        for f, st in res.status.items():
            info = rptest.file_sop_info(f)
            if st == "Success":
                self.assertIsNotNone(info, f)
                end = time.time() + 5
                rows = []
                while time.time() < end and not rows:
                    rows = self.node.query("SELECT file_path FROM instances WHERE sop_uid = ?",
                                           (info[1],))
                    time.sleep(0.1)
                self.assertEqual(len(rows), 1, "stored but not indexed: %s" % f)
                rel = rows[0][0]
                self.assertTrue(rel.endswith("/%s.dcm" % info[1]), rel)
                self.assertTrue(os.path.isfile(os.path.join(self.node.store_dir, rel)), f)
            elif info is not None and st not in ("ignored", "failed", "not sent"):
                # a failure status: nothing of it in the store
                self.assertRegex(st, r"Error|Refused|Failure|Failed", f)
                for p in self.node.files_in_store():
                    self.assertFalse(p.endswith(info[1] + ".dcm"), (f, st))
        self.assertTrue(any(s.startswith("Error") for s in res.status.values()),
                        "no malformed file was refused: %s" % res.status)
        assert_store_clean(self, self.node)

    def test_hostile_uids(self):
        cases = [("../../etc", "1.2.3.4", "1.2.3.4.5"), ("1.2.3", "1.2.3.4", "../../../tmp/evil"),
                 ("", "1.2.3.4", "1.2.3.4.6"), ("1.2.3", None, "1.2.3.4.7"),
                 ("1.2.3", "1.2.3.4", "1.2.3.4.abc"),
                 ("1." + "1" * 70, "1.2.3.4", "1.2.3.4.9")]
        files = [make_dataset(os.path.join(self.tmp, "h%d.dcm" % i), *c)
                 for i, c in enumerate(cases)]
        res = rptest.storescu(self.node.port, files)
        for f in files:
            self.assertIn("Error", res.status[f], res.out[-3000:])
        self.assertGreaterEqual(len(self.node.log_kv(r"store failed .*status=0xC000")),
                                len(files))
        self.assertFalse(os.path.exists("/tmp/evil.dcm"))
        assert_store_clean(self, self.node)
        for c in cases:
            for p in self.node.files_in_store():
                self.assertNotIn(c[2] + ".dcm", os.path.basename(p))
        self.alive()

    def test_garbage_bytes(self):
        s = socket.create_connection(("127.0.0.1", self.node.port))
        s.sendall(os.urandom(5000))
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        self.node.wait_log(r"connection dropped peer=127\.0\.0\.1:\d+ reason=.*"
                           r"(bad association|not a DICOM|larger than)")
        # a huge announced length must not make the node wait for it or allocate it
        s = socket.create_connection(("127.0.0.1", self.node.port))
        s.sendall(b"\x01\x00\xff\xff\xff\xf0" + b"\0" * 100)
        s.close()
        self.alive()

    def test_silent_connection_and_silent_association(self):
        quiet = socket.create_connection(("127.0.0.1", self.node.port))
        t0 = time.time()
        a = rptest.RawAssociation(self.node.port).open()
        self.assertEqual(a.result, "accepted")
        # while both are silent, others are served
        self.alive()
        self.assertTrue(a.closed_by_peer(timeout=15), "silent association was not dropped")
        self.assertLess(time.time() - t0, 14)
        quiet.settimeout(15)
        try:
            self.assertEqual(quiet.recv(10), b"")
        except ConnectionResetError:
            pass
        self.node.wait_log(r"no association request within acse_timeout_s=2")
        self.node.wait_log(r"association ended abnormally calling_ae=RAWSCU .*end=timeout")
        a.close()
        quiet.close()
        self.alive()

    def test_truncated_pdata(self):
        a = rptest.RawAssociation(
            self.node.port, contexts=((1, rptest.CT_IMAGE_STORAGE, (rptest.EXPLICIT_LE,)),)).open()
        self.assertEqual(a.result, "accepted")
        full = rptest.pdata_pdu(1, b"\x00" * 200)
        a.send(full[:60])  # the PDU announces 208 bytes; 54 come, then the peer vanishes
        a.close()
        a2 = rptest.RawAssociation(
            self.node.port, contexts=((1, rptest.CT_IMAGE_STORAGE, (rptest.EXPLICIT_LE,)),)).open()
        a2.send(full[:60])  # and this one stays connected but silent
        self.assertTrue(a2.closed_by_peer(timeout=20), "half-sent PDU pinned the association")
        a2.close()
        self.alive()
        assert_store_clean(self, self.node)


def implicit_dataset_bytes(study, series, sop, cls):
    """A small dataset (no File Meta) encoded implicit VR LE, as it travels in a P-DATA."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    path = make_dataset(os.path.join(rptest.tempdir("ds"), "x.dcm"), study, series, sop, cls)
    ds = pydicom.dcmread(path)
    del ds.file_meta
    ds.is_little_endian, ds.is_implicit_VR = True, True
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, True
    write_dataset(buf, ds)
    return buf.getvalue()


class TestRequestMismatch(unittest.TestCase):
    """The C-STORE request's UIDs are checked against the dataset (hand-made DIMSE)."""

    def test_request_vs_dataset(self):
        sc = "1.2.840.10008.5.1.4.1.1.7"
        ct = rptest.CT_IMAGE_STORAGE
        node = rptest.Radprepd().start()
        try:
            ok = implicit_dataset_bytes("1.2.3", "1.2.3.4", "1.2.3.4.100", sc)
            self.assertEqual(rptest.raw_cstore(node.port, ok, sc, "1.2.3.4.100"), 0x0000)
            bad = implicit_dataset_bytes("1.2.3", "1.2.3.4", "1.2.3.4.101", sc)
            self.assertEqual(rptest.raw_cstore(node.port, bad, sc, "1.2.3.4.999"), 0xC000)
            node.wait_log(r"store failed sop=1\.2\.3\.4\.999 .*status=0xC000 .*differs from request")
            cls = implicit_dataset_bytes("1.2.3", "1.2.3.4", "1.2.3.4.102", sc)
            self.assertEqual(rptest.raw_cstore(node.port, cls, ct, "1.2.3.4.102"), 0xA900)
            node.wait_log(r"status=0xA900 reason=.*SOP Class UID")
            garbage = os.urandom(3000)
            st = rptest.raw_cstore(node.port, garbage, sc, "1.2.3.4.103")
            self.assertIsNotNone(st)
            self.assertEqual(st & 0xF000, 0xC000, hex(st))
            node.wait_store(node.files_in_store)
            files = [os.path.basename(f) for f in node.files_in_store()]
            self.assertEqual(files, ["1.2.3.4.100.dcm"])
            assert_store_clean(self, node)
        finally:
            self.assertEqual(node.stop(), 0)


class TestResourceLimits(unittest.TestCase):
    def test_watermark_gives_a700(self):
        node = rptest.Radprepd(node={"min_free_mb": 1 << 40}).start()
        try:
            f = rptest.data_path("ct_chest_lidc0001", "000001.dcm")
            res = rptest.storescu(node.port, [f])
            self.assertRegex(res.status[f], r"(?i)out ?of ?resources", res.out[-2000:])
            self.assertIn("0xA700", res.out + node.log())
            node.wait_log(r"store failed .*status=0xA700 reason=.*min_free_mb")
            self.assertEqual(node.files_in_store(), [])
            assert_store_clean(self, node)
        finally:
            self.assertEqual(node.stop(), 0)

    def test_disk_full_mid_write(self):
        """The disk fills while the dataset is written (min_free_mb=0, a 3 MB tmpfs):
        0xA700, no half file anywhere, the next small instance is stored. Needs mount
        rights (root); skipped elsewhere."""
        mnt = rptest.tempdir("tinyfs")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mnt],
                          capture_output=True).returncode != 0:
            self.skipTest("cannot mount a tmpfs here")
        try:
            node = rptest.Radprepd(workdir=mnt, node={"min_free_mb": 0}).start()
            try:
                big = rptest.data_path("xray", "mg_ge_senographe_mono2_jpeg_lossless.dcm")
                small = rptest.data_path("non_image_objects", "sr_comprehensive.dcm")
                res = rptest.storescu_asis(node.port, [big])
                self.assertRegex(res.status[big], r"(?i)out ?of ?resources",
                                 res.out[-1000:] + node.log_tail())
                node.wait_log(r"store failed .*status=0xA700 reason=.*(No space|write)")
                self.assertEqual(node.files_in_store(), [])
                self.assertEqual(node.files_in_spool(), [])
                res = rptest.storescu(node.port, [small])
                self.assertEqual(res.status[small], "Success", res.out[-2000:])
                assert_store_clean(self, node)
            finally:
                node.stop()
        finally:
            subprocess.run(["umount", mnt])

    def test_max_instance_mb(self):
        node = rptest.Radprepd(node={"max_instance_mb": 1}).start()
        try:
            big = rptest.data_path("xray", "dx_chest_nih_sc_mono2_8bit.dcm")  # ~1 MB+ of pixels
            small = rptest.data_path("non_image_objects", "sr_comprehensive.dcm")
            self.assertGreater(os.path.getsize(big), 1 << 20)
            res = rptest.storescu(node.port, [big, small])
            self.assertNotEqual(res.status[big], "Success", res.out[-2000:])
            self.assertEqual(res.status[small], "Success", res.out[-2000:])
            node.wait_log(r"store failed .*max_instance_mb=1")
            node.wait_store(node.files_in_store)
            self.assertEqual(len(node.files_in_store()), 1)
            assert_store_clean(self, node)
        finally:
            self.assertEqual(node.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
