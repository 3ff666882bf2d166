"""Acknowledged means durable: kill -9 the node while storescu is sending, restart, and
every instance storescu saw answered Success must be on disk, complete, and in the index
after start-up reconciliation; no spool leftovers survive the restart; nothing half-written
sits in store/. Three rounds, killing at a different moment each time.
"""
import os
import subprocess
import sys
import threading
import unittest
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

N_PER_ROUND = 300
ROOT = "1.2.826.0.1.3680043.8.498."


def make_series(outdir, n, rows=64):
    """n small CT-like instances of one new series; returns [(path, sop_uid)]."""
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    out = []
    rng = np.random.default_rng(len(outdir))
    for i in range(n):
        sop = generate_uid(ROOT)
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        fm.MediaStorageSOPInstanceUID = sop
        fm.TransferSyntaxUID = rptest.EXPLICIT_LE
        ds = Dataset()
        ds.file_meta = fm
        ds.SOPClassUID, ds.SOPInstanceUID = fm.MediaStorageSOPClassUID, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality = "DURABLE", "Kill^Nine", "OT"
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = rows
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = rng.integers(0, 4000, (rows, rows), dtype=np.uint16).tobytes()
        ds.is_little_endian, ds.is_implicit_VR = True, False
        p = os.path.join(outdir, "%05d.dcm" % i)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(p, write_like_original=False)
        out.append((p, sop))
    return out


class TestDurability(unittest.TestCase):
    def test_kill9_while_receiving(self):
        node = rptest.Radprepd(node={"index_batch": 64, "index_flush_ms": 1000})
        node.start()
        acked_all = {}
        reconciled = 0
        try:
            for rnd, kill_after in enumerate((40, 120, 220)):
                src = rptest.tempdir("durable_src")
                inst = make_series(src, N_PER_ROUND)
                sop_of = dict(inst)
                cmd = ["storescu", "-v", "-nh", "-aec", node.ae, "-aet", "KILLTEST",
                       "127.0.0.1", str(node.port)] + [p for p, _ in inst]
                scu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
                acked, cur, lines = [], None, []
                killed = threading.Event()
                for line in scu.stdout:
                    lines.append(line)
                    if "Sending file:" in line:
                        cur = line.split("Sending file:", 1)[1].strip()
                    elif "Received Store Response (Success)" in line and cur:
                        acked.append(cur)
                        cur = None
                        if len(acked) == kill_after and not killed.is_set():
                            node.kill()  # kill -9, mid-stream
                            killed.set()
                scu.wait(60)
                scu.stdout.close()
                self.assertTrue(killed.is_set(), "round %d: never reached %d acks\n%s" % (
                    rnd, kill_after, "".join(lines[-30:])))
                self.assertGreaterEqual(len(acked), kill_after)
                self.assertLess(len(acked), N_PER_ROUND, "the kill came too late to matter")
                for p in acked:
                    acked_all[sop_of[p]] = p

                node.start()  # reconciliation runs before the port accepts
                m = node.wait_log(r"reconcile done indexed=(\d+) spool_removed=(\d+)",
                                  since_start=True)
                reconciled += int(m.group(1))
                self.assertEqual(node.files_in_spool(), [])
                # every acknowledged instance: on disk, complete, indexed
                for sop, p in acked_all.items():
                    rows = node.query("SELECT file_path FROM instances WHERE sop_uid = ?", (sop,))
                    self.assertEqual(len(rows), 1, "acked but not indexed: %s (round %d, %s)" % (
                        sop, rnd, m.group(0)))
                    stored = os.path.join(node.store_dir, rows[0][0])
                    self.assertEqual(rptest.dataset_bytes(stored), rptest.dataset_bytes(p))
                # nothing half-written anywhere in the store
                for f in node.files_in_store():
                    ds = pydicom.dcmread(f)
                    self.assertEqual(len(ds.PixelData), 64 * 64 * 2, f)
            # the index lagged (flush_ms=1000) when the node died: reconciliation caught up
            self.assertGreater(reconciled, 0)
            n = node.query("SELECT count(*) FROM instances")[0][0]
            self.assertGreaterEqual(n, len(acked_all))
            self.assertEqual(n, len(node.files_in_store()))
        finally:
            if node.alive():
                self.assertEqual(node.stop(), 0)

    def test_sigterm_drains_in_flight_and_flushes_index(self):
        """SIGTERM while storescu sends: the open association may finish (bounded grace),
        new associations are refused, the index is flushed, exit code 0."""
        node = rptest.Radprepd(node={"index_batch": 1000, "index_flush_ms": 60000}).start()
        src = rptest.tempdir("drain_src")
        inst = make_series(src, 200)
        cmd = ["storescu", "-v", "-nh", "-aec", node.ae, "-aet", "DRAIN", "127.0.0.1",
               str(node.port)] + [p for p, _ in inst]
        scu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        acked, termed = 0, False
        for line in scu.stdout:
            if "Received Store Response (Success)" in line:
                acked += 1
                if acked == 30 and not termed:
                    node.proc.send_signal(15)
                    termed = True
                    node.wait_log(r"stop requested")
                    p = rptest.echoscu(node.port, timeout=20)
                    self.assertNotEqual(p.returncode, 0, "a new association was accepted "
                                                         "while stopping")
        scu.wait(60)
        scu.stdout.close()
        self.assertTrue(termed)
        self.assertEqual(acked, len(inst), "in-flight association was cut short")
        self.assertEqual(node.stop(timeout=60), 0)
        # flush_ms=60000 and batch=1000: only the shutdown flush can have written these
        self.assertEqual(node.query("SELECT count(*) FROM instances")[0][0], len(inst))
        self.assertIn("association released calling_ae=DRAIN", node.log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
