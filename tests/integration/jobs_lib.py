"""Helpers for the completion / jobs / systemd integration tests (and bench/completion,
bench/ingest_tls): small CT phantoms made with pydicom, storescu with the (rc, successes,
text) answer these tests compare, and Node: rptest.Radprepd with a completion policy for
every modality and a cheap CT rule, plus views of the series / jobs / outputs tables.
Daemon, ports, paths and logs come from tests/lib/rptest.py.

Not a test itself (the name does not start with test_)."""
import datetime
import os
import re
import sys
import time

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

SRC = rptest.SOURCE_DIR
RADPREPD = rptest.radprepd_bin()
RADPREP = rptest.radprep_bin()
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z")
free_port = rptest.free_port
tmpdir = rptest.tempdir


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
    """Send files in one association (storescu stops at the first failure).
    Returns (exit code, number of Success responses, text)."""
    r = rptest.storescu(port, files, aec=aec, aet="RPTEST", timeout=timeout, no_halt=False)
    return r.rc, sum(1 for s in r.status.values() if s == "Success"), r.out


class Node(rptest.Radprepd):
    """One radprepd with its own data_dir (tmp/data) and config file: quiet_s and
    use_expected_count for every modality, a cheap CT rule unless cheap_rule=False;
    extra_node: "key = value" lines for [node]; extra: INI text appended as it is."""

    def __init__(self, tmp, quiet_s=2, use_expected_count=True, extra_node="", extra="",
                 cheap_rule=True):
        node = {"index_flush_ms": 50}
        for line in extra_node.splitlines():
            if line.strip():
                k, _, v = line.partition("=")
                node[k.strip()] = v.strip()
        sections = {}
        for mod in ("default", "CT", "MR"):
            sections["completion " + mod] = {"quiet_s": quiet_s,
                                             "use_expected_count": bool(use_expected_count)}
        # A cheap recipe for the phantoms, so that job times stay short on a loaded machine
        # (the supervisor, not the pipeline, is under test here).
        if cheap_rule:
            sections["rule rptest"] = {"modality": "CT", "steps": "hu clip(-1000,1000)",
                                       "outputs": "nifti json", "priority": 100}
        super().__init__(workdir=tmp, node=node, extra=sections, extra_text=extra)
        self.tmp, self.data, self.conf = tmp, self.data_dir, self.config_path
        self._base_env = dict(self.env)

    def start(self, env=None, wait_ready=True):
        """Start with the environment of construction time plus env; a job fault hook of
        the caller's environment is never inherited."""
        self.env = dict(self._base_env)
        self.env.pop("RP_TEST_JOB_FAULT", None)
        self.env.update(env or {})
        return super().start(wait_ready=wait_ready)

    def db(self, sql, args=()):
        return self.query(sql, args)

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
        r = rptest.run_radprep("--config", self.conf, *args, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"radprep {' '.join(args)} rc={r.returncode}: {r.stderr}")
        return r
