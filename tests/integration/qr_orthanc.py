"""qr_orthanc — Orthanc as the PACS for the query/retrieve tests and bench/pull.

Orthanc runs under the bind_loopback shim (it cannot bind loopback alone) with its own
storage in a temp dir, radprep registered as a DICOM modality (so C-MOVE can send to it),
and C-FIND/C-MOVE/C-GET allowed from any AE (so a radprep with an AE title Orthanc does not
know reaches the C-MOVE, where the unknown destination is refused).
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402


class Orthanc:
    def __init__(self, workdir, ae="ORTHANC", modalities=None, env=None):
        self.workdir = workdir
        self.ae = ae
        self.http = rptest.free_port()
        self.port = rptest.free_port()
        self.modalities = modalities or {}
        self.env = env or {}
        self.proc = None
        os.makedirs(workdir, exist_ok=True)
        self.config = os.path.join(workdir, "orthanc.json")
        self.log_path = os.path.join(workdir, "orthanc.log")

    def write_config(self):
        cfg = {"Name": "rp-qr-test",
               "StorageDirectory": os.path.join(self.workdir, "storage"),
               "IndexDirectory": os.path.join(self.workdir, "index"),
               "HttpPort": self.http, "DicomPort": self.port, "DicomAet": self.ae,
               "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
               "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
               "DicomAlwaysAllowFind": True, "DicomAlwaysAllowMove": True,
               "DicomAlwaysAllowGet": True, "DicomCheckCalledAet": False,
               "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
               "StorageCompression": False, "Plugins": []}
        with open(self.config, "w") as f:
            json.dump(cfg, f)

    def start(self, timeout=60):
        self.write_config()
        env = dict(os.environ, LD_PRELOAD=rptest.bind_loopback_shim(), **self.env)
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["Orthanc", self.config], stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env)
        if not (rptest.wait_for_port(self.port, timeout, self.proc) and
                rptest.wait_for_port(self.http, timeout, self.proc)):
            raise RuntimeError("Orthanc did not start (log %s)" % self.log_path)
        return self

    def stop(self, sig=signal.SIGTERM):
        """Stop and wait until it has exited (its index must be free before a restart)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "_logf", None):
            self._logf.close()
            self._logf = None

    def rest(self, path, data=None, method=None):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.http, path), data=data,
                                     method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def load(self, files, aet="LOADER"):
        """C-STORE files into Orthanc with storescu (its own DICOM path, as a modality would)."""
        res = rptest.storescu_asis(self.port, files, aec=self.ae, aet=aet)
        if res.failed():
            raise RuntimeError("loading Orthanc failed for %d files: %s" %
                               (len(res.failed()), res.out[-1500:]))
        return res

    def count_instances(self):
        return len(self.rest("/instances"))
