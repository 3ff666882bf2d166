"""Acknowledged means durable.

kill -9: four storescu senders in parallel (one series each); the node is killed at a random
moment (seeded, printed), restarted, and every instance a sender saw answered Success must be
on disk, byte-identical and in the index after start-up reconciliation (which replays the
spool log); nothing is left in spool/; every file in store/ is a complete instance that was
sent. Three rounds, each at its own moment.

Power loss: the node's data directory is an ext4 file system on a loop device whose image
file lives on XFS (itself on a loop device). Mid-transfer (four senders) the node is frozen
(SIGSTOP: it sends nothing more), the image is cloned with FICLONE (cp --reflink: atomic
against the loop driver's writes, which take the same inode lock), and the node is killed.
The clone holds exactly what had reached the "disk": what fsync/fdatasync forced there and
whatever the kernel happened to write back, never the page cache's dirty pages. The clone is
then mounted in place of the original (ext4 replays its journal) and a node started on it:
every acknowledged instance must be there, byte-identical and indexed; every file in store/
a complete instance that was sent. A canary file written without fsync just before the
freeze must be missing, which shows the page cache really was dropped. dm-flakey is not
available in this kernel (no device-mapper) and marking a loop device read-only only warns;
the clone is what works as root here. Needs root, loop devices and mkfs.xfs (xfsprogs);
skipped when it cannot mount.

SIGTERM: the open association may finish (bounded grace), new ones are refused, the index
is flushed, exit code 0.
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

N_PER_SENDER = 150
SENDERS = 4
ROWS = 128
ROOT = "1.2.826.0.1.3680043.8.498."


def make_series(outdir, n, rows=ROWS):
    """n CT-like instances of one new series; returns [(path, sop_uid)]."""
    study, series = generate_uid(ROOT), generate_uid(ROOT)
    out = []
    rng = np.random.default_rng(abs(hash(outdir)) % (1 << 32))
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


class Senders:
    """SENDERS parallel storescu processes, one series each; collects what was acknowledged
    (a Success response read by the sender: the node sent it, so it had decided it) and
    calls on_ack(total acks) after each one."""

    def __init__(self, port, ae, on_ack=None, n=N_PER_SENDER):
        self.sop_of = {}
        self.lists = []
        for k in range(SENDERS):
            inst = make_series(rptest.tempdir("durable_src%d" % k), n)
            self.sop_of.update(dict(inst))
            self.lists.append([p for p, _ in inst])
        self.port, self.ae, self.on_ack = port, ae, on_ack
        self.acked, self.lock, self.tail = [], threading.Lock(), {}

    def _run(self, k):
        cmd = ["storescu", "-v", "-nh", "-aec", self.ae, "-aet", "DURABLE%d" % k, "127.0.0.1",
               str(self.port)] + self.lists[k]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        cur, lines = None, []
        for line in p.stdout:
            lines.append(line)
            if "Sending file:" in line:
                cur = line.split("Sending file:", 1)[1].strip()
            elif "Received Store Response (Success)" in line and cur:
                with self.lock:
                    self.acked.append(cur)
                    n = len(self.acked)
                cur = None
                if self.on_ack:
                    self.on_ack(n)
        p.wait(120)
        p.stdout.close()
        self.tail[k] = "".join(lines[-15:])

    def run(self):
        ts = [threading.Thread(target=self._run, args=(k,)) for k in range(SENDERS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return self

    def total(self):
        return sum(len(x) for x in self.lists)


def check_store(tc, node, acked, sop_of, what):
    """Every acknowledged instance stored byte-identical and indexed; every file in store/
    a complete instance that was sent (nothing half-present); spool/ empty."""
    tc.assertEqual(node.files_in_spool(), [], what)
    for p in acked:
        sop = sop_of[p]
        rows = node.query("SELECT file_path FROM instances WHERE sop_uid = ?", (sop,))
        tc.assertEqual(len(rows), 1, "%s: acknowledged but not indexed: %s" % (what, sop))
        stored = os.path.join(node.store_dir, rows[0][0])
        tc.assertEqual(rptest.dataset_bytes(stored), rptest.dataset_bytes(p),
                       "%s: acknowledged, stored differently: %s" % (what, sop))
    src_of = {s: p for p, s in sop_of.items()}
    for f in node.files_in_store():
        tc.assertTrue(f.endswith(".dcm"), "%s: stray file in store: %s" % (what, f))
        sop = os.path.basename(f)[:-4]
        tc.assertIn(sop, src_of, "%s: a file that was never sent: %s" % (what, f))
        tc.assertEqual(rptest.dataset_bytes(f), rptest.dataset_bytes(src_of[sop]),
                       "%s: half-present or altered: %s" % (what, f))
    n_idx = node.query("SELECT count(*) FROM instances")[0][0]
    tc.assertEqual(n_idx, len(node.files_in_store()), what + ": index and store differ")


class TestDurability(unittest.TestCase):
    def test_kill9_four_senders_random_moments(self):
        seed = int(os.environ.get("RP_TEST_SEED", time.time()))
        rnd = random.Random(seed)
        print("kill -9 rounds, seed=%d (RP_TEST_SEED to repeat)" % seed, flush=True)
        node = rptest.Radprepd(node={"index_batch": 64, "index_flush_ms": 1000})
        node.start()
        acked_all, sop_all = [], {}
        try:
            for r in range(3):
                kill_at = rnd.randint(20, SENDERS * N_PER_SENDER * 3 // 4)
                killed, once = threading.Event(), threading.Lock()

                def on_ack(n, kill_at=kill_at, killed=killed, once=once):
                    with once:
                        if n >= kill_at and not killed.is_set():
                            killed.set()
                            node.kill()  # kill -9, mid-stream

                s = Senders(node.port, node.ae, on_ack).run()
                self.assertTrue(killed.is_set(), "round %d: never reached %d acks\n%s" % (
                    r, kill_at, s.tail))
                self.assertLess(len(s.acked), s.total(), "the kill came too late to matter")
                print("round %d: killed after %d acks, %d acknowledged of %d" % (
                    r, kill_at, len(s.acked), s.total()), flush=True)
                acked_all += s.acked
                sop_all.update(s.sop_of)
                node.start()  # reconciliation (log replay) runs before the port accepts
                node.wait_log(r"reconcile done indexed=\d+", since_start=True)
                check_store(self, node, acked_all, sop_all, "kill -9 round %d" % r)
        finally:
            if node.alive():
                self.assertEqual(node.stop(), 0)

    def test_power_loss(self):
        if os.geteuid() != 0 or not shutil.which("mkfs.xfs") or not shutil.which("losetup"):
            self.skipTest("needs root, losetup and mkfs.xfs (xfsprogs)")
        tmp = rptest.tempdir("powerloss")
        outer, mnt = os.path.join(tmp, "outer"), os.path.join(tmp, "data")
        os.makedirs(outer)
        os.makedirs(mnt)
        loops, mounts = [], []

        def sh(*cmd):
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

        def attach(img, at):
            dev = sh("losetup", "-f", "--show", img)
            loops.append(dev)
            sh("mount", dev, at)
            mounts.append(at)
            return dev

        def detach_inner():
            sh("umount", mnt)  # writes the old image's dirty pages: that image is done with
            mounts.remove(mnt)
            sh("losetup", "-d", loops.pop())

        try:
            try:
                subprocess.run(["truncate", "-s", "2G", os.path.join(tmp, "outer.img")],
                               check=True)
                sh("mkfs.xfs", "-q", "-m", "reflink=1", os.path.join(tmp, "outer.img"))
                attach(os.path.join(tmp, "outer.img"), outer)
            except subprocess.CalledProcessError as e:
                self.skipTest("cannot make and mount a loop file system here: %s" % e.stderr)
            img, snap = os.path.join(outer, "data.img"), os.path.join(outer, "snap.img")
            subprocess.run(["truncate", "-s", "1G", img], check=True)
            sh("mkfs.ext4", "-q", img)
            attach(img, mnt)

            node = rptest.Radprepd(node={"data_dir": mnt, "index_batch": 64,
                                         "index_flush_ms": 1000})
            node.data_dir = mnt
            node.start()
            frozen, once = threading.Event(), threading.Lock()
            stop_at = random.Random(os.getpid()).randint(100, 400)

            def on_ack(n):
                with once:
                    if n < stop_at or frozen.is_set():
                        return
                    frozen.set()
                    # A file that was never synced: it must not survive.
                    with open(os.path.join(mnt, "canary"), "wb") as f:
                        f.write(b"x" * 65536)
                    os.kill(node.pid, signal.SIGSTOP)  # nothing more leaves the node
                    sh("cp", "--reflink=always", img, snap)  # the "disk" at power loss
                    node.kill()

            s = Senders(node.port, node.ae, on_ack).run()
            self.assertTrue(frozen.is_set(), "never reached %d acks\n%s" % (stop_at, s.tail))
            self.assertLess(len(s.acked), s.total(), "the power loss came too late to matter")
            print("power loss after %d acks: %d acknowledged of %d" % (
                stop_at, len(s.acked), s.total()), flush=True)
            detach_inner()
            attach(snap, mnt)  # the machine comes back with what the disk had
            self.assertFalse(os.path.exists(os.path.join(mnt, "canary")) and
                             os.path.getsize(os.path.join(mnt, "canary")) > 0,
                             "unsynced data survived: the simulation dropped nothing")
            node.start()
            m = node.wait_log(r"reconcile done indexed=\d+ .*log_replayed=(\d+)",
                              since_start=True)
            print("after power loss: %s" % m.group(0), flush=True)
            check_store(self, node, s.acked, s.sop_of, "power loss")
            self.assertEqual(node.stop(), 0)
        finally:
            for at in reversed(mounts):
                subprocess.run(["umount", "-l", at], capture_output=True)
            for dev in reversed(loops):
                subprocess.run(["losetup", "-d", dev], capture_output=True)

    def test_sigterm_drains_in_flight_and_flushes_index(self):
        """SIGTERM while storescu sends: the open association may finish (bounded grace),
        new associations are refused, the index is flushed, exit code 0."""
        node = rptest.Radprepd(node={"index_batch": 1000, "index_flush_ms": 60000}).start()
        src = rptest.tempdir("drain_src")
        inst = make_series(src, 200, rows=64)
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
