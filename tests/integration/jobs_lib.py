"""Helpers for the completion / jobs / systemd integration tests: start a real radprepd on a
free loopback port with a config file, send with dcmtk's storescu, generate small CT
phantoms with pydicom, read the index read-only, and run the radprep CLI.

Not a test itself (the name does not start with test_)."""
import datetime
import os
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SRC = os.environ.get("RP_SOURCE_DIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("RP_BUILD_DIR", os.path.join(SRC, "build"))
RADPREPD = os.path.join(BUILD, "node", "radprepd")
RADPREP = os.path.join(BUILD, "cli", "radprep")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def log_time(line):
    """Wall-clock seconds of a radprep log line."""
    m = TS_RE.match(line)
    if not m:
        return None
    dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def make_series(folder, n, study_uid=None, series_uid=None, modality="CT",
                images_in_acquisition=None, first=1, series_number=1, size=16):
    """Write n small single-frame CT images of one series; returns (paths, study, series)."""
    os.makedirs(folder, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    paths = []
    for k in range(first, first + n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CT_IMAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = study_uid[:60] + ".1" if len(study_uid) <= 60 else study_uid
        ds.PatientName = "Phantom^Completion"
        ds.PatientID = "RPTEST1"
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.Modality = modality
        ds.SeriesNumber = series_number
        ds.InstanceNumber = k
        ds.AcquisitionNumber = 1
        if images_in_acquisition:
            ds.ImagesInAcquisition = images_in_acquisition
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        px = (np.arange(size * size, dtype=np.int16).reshape(size, size) + k * 7)
        ds.PixelData = px.astype("<i2").tobytes()
        p = os.path.join(folder, f"{series_number:03d}_{k:05d}.dcm")
        ds.is_little_endian = True
        ds.is_implicit_VR = False
        pydicom.dcmwrite(p, ds, write_like_original=False)
        paths.append(p)
    return paths, study_uid, series_uid


def storescu(port, files, aec="RADPREP", timeout=300):
    """Send files in one association. Returns (exit code, number of Success responses, text)."""
    r = subprocess.run(["storescu", "-v", "-aet", "RPTEST", "-aec", aec, "127.0.0.1", str(port)]
                       + list(files), capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    return r.returncode, out.count("Received Store Response (Success)"), out


class Node:
    """One radprepd process with its own data_dir and config file."""

    def __init__(self, tmp, quiet_s=2, use_expected_count=True, extra_node="", extra="",
                 cheap_rule=True):
        self.tmp = tmp
        os.makedirs(tmp, exist_ok=True)
        self.data = os.path.join(tmp, "data")
        self.port = free_port()
        self.conf = os.path.join(tmp, "radprep.ini")
        self.log_path = os.path.join(tmp, "radprepd.log")
        self.proc = None
        lines = [
            "[node]", f"port = {self.port}", "bind = 127.0.0.1", f"data_dir = {self.data}",
            "min_free_mb = 1", "index_flush_ms = 50", extra_node, "",
        ]
        for mod in ("default", "CT", "MR"):
            lines += [f"[completion {mod}]", f"quiet_s = {quiet_s}",
                      f"use_expected_count = {'yes' if use_expected_count else 'no'}", ""]
        # A cheap recipe for the phantoms, so that job times stay short on a loaded machine
        # (the supervisor, not the pipeline, is under test here).
        if cheap_rule:
            lines += ["[rule rptest]", "modality = CT", "steps = hu clip(-1000,1000)",
                      "outputs = nifti json", "priority = 100", ""]
        lines.append(extra)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, env=None, wait_ready=True):
        e = dict(os.environ)
        e.pop("RP_TEST_JOB_FAULT", None)
        e.update(env or {})
        self.logf = open(self.log_path, "a")
        self.log_offset = len(self.log()) if os.path.exists(self.log_path) else 0
        self.proc = subprocess.Popen([RADPREPD, "--config", self.conf], stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=e)
        if wait_ready:
            self.wait_log(r"node ready", timeout=30, since=self.log_offset)
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, pattern, timeout=30, count=1, since=0):
        """Wait until `pattern` appears `count` times in the log (after offset since)."""
        rx = re.compile(pattern)
        t0 = time.time()
        while True:
            text = self.log()[since:]
            hits = rx.findall(text)
            if len(hits) >= count:
                return text
            if self.proc and self.proc.poll() is not None and "node stopped" not in text:
                raise AssertionError(f"radprepd exited rc={self.proc.returncode}:\n"
                                     + text[-3000:])
            if time.time() - t0 > timeout:
                raise AssertionError(f"timeout waiting for /{pattern}/ x{count}:\n"
                                     + text[-3000:])
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        self.logf.close()
        return rc

    def db(self, sql, args=()):
        con = sqlite3.connect(f"file:{self.data}/index.sqlite?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def series(self, uid):
        rows = self.db("SELECT state, version, instance_count, completed_reason, completed_at,"
                       " last_seen, expected_count FROM series WHERE series_uid=?", (uid,))
        if not rows:
            return None
        keys = ("state", "version", "instances", "reason", "completed_at", "last_seen",
                "expected")
        return dict(zip(keys, rows[0]))

    def jobs(self, uid=None):
        sql = ("SELECT id, series_uid, version, state, attempts, reason, exit_status,"
               " created_at, started_at, finished_at, output_dir FROM jobs")
        rows = self.db(sql + (" WHERE series_uid=? ORDER BY id" if uid else " ORDER BY id"),
                       (uid,) if uid else ())
        keys = ("id", "series", "version", "state", "attempts", "reason", "exit_status",
                "created_at", "started_at", "finished_at", "output_dir")
        return [dict(zip(keys, r)) for r in rows]

    def outputs(self, job_id):
        return self.db("SELECT kind, path, sha256 FROM outputs WHERE job_fk=?", (job_id,))

    def wait_job(self, uid, version, states=("done",), timeout=60):
        t0 = time.time()
        while True:
            js = [j for j in self.jobs(uid) if j["version"] == version]
            if js and js[0]["state"] in states:
                return js[0]
            if time.time() - t0 > timeout:
                raise AssertionError(f"job of {uid} v{version} not in {states}: {js}\n"
                                     + self.log()[-3000:])
            time.sleep(0.1)

    def wait_series(self, uid, state, version=None, timeout=30):
        t0 = time.time()
        while True:
            s = self.series(uid)
            if s and s["state"] == state and (version is None or s["version"] == version):
                return s
            if time.time() - t0 > timeout:
                raise AssertionError(f"series {uid} not {state} v{version}: {s}")
            time.sleep(0.05)

    def cli(self, *args, check=True):
        r = subprocess.run([RADPREP, "--config", self.conf, *args], capture_output=True,
                           text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"radprep {' '.join(args)} rc={r.returncode}: {r.stderr}")
        return r


def tmpdir(prefix):
    return tempfile.mkdtemp(prefix=prefix)
