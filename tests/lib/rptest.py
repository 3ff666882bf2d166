"""rptest — shared helpers for radprep's integration tests and benchmarks.

Import from a test:

    import os, sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    import rptest

What is here (all real peers on loopback, free ports, private temp dirs):
  paths        BUILD_DIR, SOURCE_DIR, SHARED_DATA, SHARED_TOOLS, radprepd_bin(), radprep_bin(),
               unit_test_bin(name) (a unit test executable in driver mode), require_built()
  shared data  data_path(*parts), data_files(*parts, pattern, count): fail (MissingData)
               with a clear message when ../shared/data lacks what a test needs
  temp dirs    tempdir(prefix)  -> removed at exit unless RP_KEEP_TMP=1
  checks       check(cond, msg) collects failures, finish() prints them and gives the exit
               code: for script-style tests that report every failed check, not the first
  processes    spawn(cmd) (killed at exit if still running), stop_process(p, timeout),
               run_radprep(*args)
  ports        free_port(), wait_for_port(port, timeout, proc)
  config       write_ini(path, sections)  ({"node": {...}, "peer CT": {...}} -> INI)
  daemon       Radprepd(...)  start/stop/kill/restart, log(), wait_log(), log_kv(),
               query() on index.sqlite, vmhwm_kb(), store_dir/spool_dir/db_path
  shim         bind_loopback_shim() -> path of the LD_PRELOAD .so (built once)
  reference    StoreSCP(outdir) -> dcmtk storescp (bit-preserving, all TS) under the shim
               Orthanc(workdir, name, ...) -> Orthanc under the shim, rest(path)
  peers        echoscu(...), storescu(...), storescu_asis(...) (proposes each file's own
               transfer syntax via a generated association config, so nothing is transcoded)
  DICOM bytes  dataset_bytes(path), file_sop_info(path), dicom_files(root)
  volumes      load_series(folder) -> files, datasets, float32 volume, RAS affine (pydicom)
  logs         parse_kv(line)

Everything fails loudly (AssertionError / RuntimeError with the daemon's log tail), so a
test that cannot reach its peer never passes by accident.
"""

import atexit
import glob
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import time

SOURCE_DIR = os.environ.get(
    "RP_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD_DIR = os.environ.get("RP_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
SHARED_DATA = os.environ.get("RP_SHARED_DATA", os.path.join(SOURCE_DIR, "..", "shared", "data"))
SHARED_TOOLS = os.environ.get("RP_SHARED_TOOLS",
                              os.path.join(SOURCE_DIR, "..", "shared", "tools"))

_TEMPS = []


def _cleanup():
    if os.environ.get("RP_KEEP_TMP") == "1":
        for t in _TEMPS:
            print("rptest: kept", t)
        return
    for t in _TEMPS:
        shutil.rmtree(t, ignore_errors=True)


atexit.register(_cleanup)

_SPAWNED = []


def spawn(cmd, **kw):
    """subprocess.Popen(cmd, **kw), stopped at exit if still running: a test that fails
    half-way leaves no peer behind."""
    p = subprocess.Popen(cmd, **kw)
    _SPAWNED.append(p)
    return p


def _stop_spawned():
    for p in _SPAWNED:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_stop_spawned)  # runs before _cleanup (atexit is last in, first out)


def tempdir(prefix="rptest"):
    """A fresh directory, removed at exit (kept with RP_KEEP_TMP=1)."""
    d = tempfile.mkdtemp(prefix=prefix + "_")
    _TEMPS.append(d)
    return d


def radprepd_bin():
    return os.path.join(BUILD_DIR, "node", "radprepd")


def radprep_bin():
    return os.path.join(BUILD_DIR, "cli", "radprep")


def require_built(*paths):
    """Fail (AssertionError) unless every path is an executable of this build."""
    for p in paths:
        if not os.access(p, os.X_OK):
            raise AssertionError("not built: %s (build the tree in RP_BUILD_DIR=%s first)"
                                 % (p, BUILD_DIR))
    return paths[0] if len(paths) == 1 else paths


def unit_test_bin(name):
    """The unit test executable `name` (e.g. "test_outbox") in its driver mode: the file
    below BUILD_DIR/tests called name or ending in "_" + name. The <module>_ prefix comes from
    the folder the test lives in, so a test that moves keeps working. Fails unless exactly
    one is built."""
    root = os.path.join(BUILD_DIR, "tests")
    found = []
    for dp, dns, fns in os.walk(root):
        dns[:] = [d for d in dns if d != "CMakeFiles"]
        for fn in fns:
            p = os.path.join(dp, fn)
            if (fn == name or fn.endswith("_" + name)) and os.access(p, os.X_OK):
                found.append(p)
    if len(found) != 1:
        raise AssertionError("unit test driver %s: want exactly one built below %s, found %s"
                             % (name, root, found or "none"))
    return found[0]


def run_radprep(*args, timeout=600, env=None, **kw):
    """`radprep ARGS` of this build, output captured as text; returns the CompletedProcess."""
    return subprocess.run([radprep_bin()] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def stop_process(p, timeout=30):
    """SIGTERM, wait up to timeout, then SIGKILL; returns the exit code."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


# ---- shared data ----------------------------------------------------------------------------

class MissingData(AssertionError):
    """The shared test data lacks what a test needs: the test fails, it is never skipped."""


def data_path(*parts):
    """SHARED_DATA/parts..., which must exist."""
    p = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(p):
        raise MissingData("shared test data missing: %s (RP_SHARED_DATA=%s; see the README "
                          "there)" % (p, SHARED_DATA))
    return p


def data_files(*parts, pattern=None, count=None):
    """Sorted files of a shared data folder: every file matching the glob pattern, or with
    no pattern every DICOM-ish file below it (dicom_files). Fails when there are none, or
    not exactly count of them."""
    d = data_path(*parts)
    files = sorted(glob.glob(os.path.join(d, pattern))) if pattern else dicom_files(d)
    if not files or (count is not None and len(files) != count):
        raise MissingData("shared test data incomplete: %s holds %d file(s)%s, want %s"
                          % (d, len(files), " matching %r" % pattern if pattern else "",
                             count if count is not None else "at least 1"))
    return files


# ---- checks that collect ----------------------------------------------------------------------
# Script-style tests run many checks and report every failure, not only the first.

FAILURES = []
SHOW_PASSED = False  # a test may set it to print "ok   msg" for each check that holds


def check(cond, msg):
    """Record msg as failed unless cond; returns bool(cond)."""
    if not cond:
        FAILURES.append(msg)
        print("FAIL:", msg, flush=True)
    elif SHOW_PASSED:
        print("ok   " + msg, flush=True)
    return bool(cond)


def finish():
    """Summary of the collected checks; the exit code for sys.exit (0 only when none failed)."""
    if FAILURES:
        print("\n%d check(s) failed:" % len(FAILURES))
        for m in FAILURES:
            print("  -", m.splitlines()[0] if m else m)
        return 1
    print("OK: every check passed")
    return 0


def free_port():
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=15.0, proc=None, host="127.0.0.1"):
    """True once something accepts on host:port; False on timeout or if proc died."""
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def write_ini(path, sections):
    """Write {"node": {"port": 1}, "peer CT": {...}} as an INI file; returns path."""
    with open(path, "w") as f:
        for name, kv in sections.items():
            f.write("[%s]\n" % name)
            for k, v in kv.items():
                if isinstance(v, bool):
                    v = "yes" if v else "no"
                f.write("%s = %s\n" % (k, v))
            f.write("\n")
    return path


def parse_kv(line):
    """key=value pairs of a log line (values may be "quoted") -> dict."""
    out = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[m.group(1)] = v
    return out


_SHIM = None


def bind_loopback_shim():
    """Build (once) and return the LD_PRELOAD shim that makes wildcard binds loopback."""
    global _SHIM
    if _SHIM and os.path.exists(_SHIM):
        return _SHIM
    src = os.path.join(SHARED_TOOLS, "bind_loopback.c")
    outdir = os.path.join(BUILD_DIR, "tests") if os.path.isdir(BUILD_DIR) else tempdir("shim")
    os.makedirs(outdir, exist_ok=True)
    so = os.path.join(outdir, "bind_loopback.so")
    if not os.path.exists(so) or os.path.getmtime(so) < os.path.getmtime(src):
        tmp = so + ".%d.tmp" % os.getpid()
        subprocess.run(["gcc", "-O2", "-fPIC", "-shared", "-o", tmp, src, "-ldl"], check=True)
        os.replace(tmp, so)
    _SHIM = so
    return so


# ---- DICOM bytes ---------------------------------------------------------------------------

def dataset_offset(data):
    """Offset of the dataset in Part-10 bytes (after preamble + File Meta), 0 if raw."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return 0
    off = 132
    while off + 8 <= len(data):
        group = struct.unpack_from("<H", data, off)[0]
        if group != 0x0002:
            break
        vr = data[off + 4:off + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            ln = struct.unpack_from("<I", data, off + 8)[0]
            off += 12 + ln
        else:
            ln = struct.unpack_from("<H", data, off + 6)[0]
            off += 8 + ln
    return off


def dataset_bytes(path):
    """The dataset part of a DICOM file: what a sender put on the wire."""
    with open(path, "rb") as f:
        data = f.read()
    return data[dataset_offset(data):]


def file_sop_info(path):
    """(sop_class_uid, sop_instance_uid, transfer_syntax_uid) of a file, or None.
    Uses pydicom (header only); falls back to dcmdump for what pydicom cannot read."""
    try:
        import pydicom
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        ts = str(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(
            ds, "file_meta", {}) else None
        cls, inst = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        if ts is None:
            ts = "1.2.840.10008.1.2"
        return cls, inst, ts
    except Exception:
        pass
    try:
        out = subprocess.run(["dcmdump", "-q", "-Un", "+P", "0008,0016", "+P", "0008,0018",
                              "+P", "0002,0010", path], capture_output=True, text=True,
                             timeout=30).stdout
        vals = re.findall(r"\[([0-9.]+)\]", out)
        tags = re.findall(r"^\((\w{4},\w{4})\)", out, re.M)
        d = dict(zip(tags, vals))
        if "0008,0016" in d and "0008,0018" in d:
            return d["0008,0016"], d["0008,0018"], d.get("0002,0010", "1.2.840.10008.1.2")
    except Exception:
        pass
    return None


def dicom_files(root):
    """Every regular file below root (sorted), skipping README/MANIFEST/NIfTI/JSON. A root
    that does not exist fails (MissingData) instead of giving no files."""
    if not os.path.isdir(root):
        raise MissingData("no such folder: %s (RP_SHARED_DATA=%s)" % (root, SHARED_DATA))
    out = []
    for dp, _, fns in os.walk(root):
        for fn in fns:
            if fn.lower().endswith((".md", ".tsv", ".nii", ".json", ".txt", ".gz")):
                continue
            out.append(os.path.join(dp, fn))
    return sorted(out)


def load_series(folder, pattern="*"):
    """A classic single-frame series read with pydicom, in slice order:
    (files, datasets, volume [z, y, x] float32 after Rescale Slope/Intercept, 4x4 RAS affine
    of voxel centres (i = column, j = row, k = slice; NIfTI convention, as dcm2niix)).
    Files matching pattern that pydicom cannot read, or that hold no pixels, are passed over;
    a folder without any image fails (MissingData)."""
    import numpy as np
    import pydicom
    if not os.path.isdir(folder):
        raise MissingData("no such series folder: %s" % folder)
    pairs = []
    for f in sorted(glob.glob(os.path.join(folder, pattern))):
        try:
            ds = pydicom.dcmread(f)
        except Exception:
            continue
        if "PixelData" in ds:
            pairs.append((f, ds))
    if not pairs:
        raise MissingData("no image in %s" % folder)
    iop = np.array(pairs[0][1].ImageOrientationPatient, float)
    rowc, colc = iop[:3], iop[3:]
    normal = np.cross(rowc, colc)
    pairs.sort(key=lambda p: float(np.dot(normal, np.array(p[1].ImagePositionPatient, float))))
    files, dss = [p[0] for p in pairs], [p[1] for p in pairs]
    ps = [float(x) for x in dss[0].PixelSpacing]  # row spacing, column spacing
    ipp0 = np.array(dss[0].ImagePositionPatient, float)
    if len(dss) > 1:
        step = (np.array(dss[-1].ImagePositionPatient, float) - ipp0) / (len(dss) - 1)
    else:
        step = normal * float(getattr(dss[0], "SliceThickness", 1.0))
    lps = np.eye(4)
    lps[:3, 0] = rowc * ps[1]
    lps[:3, 1] = colc * ps[0]
    lps[:3, 2] = step
    lps[:3, 3] = ipp0
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    vol = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1))
                    + float(getattr(d, "RescaleIntercept", 0)) for d in dss])
    return files, dss, vol.astype(np.float32), ras


# ---- the daemon ------------------------------------------------------------------------------

class Radprepd:
    """radprepd on 127.0.0.1:free port with a generated config in a private data dir.

    node:  [node] keys to override (ae_title, timeouts, min_free_mb, ...)
    peers: {"NAME": {"ae_title": "CT1", "host": "127.0.0.1"}} -> [peer NAME] sections
    extra: other sections {"completion CT": {...}}
    extra_text: INI text appended as it is (sections written by hand)
    """

    def __init__(self, workdir=None, ae="RADPREP", node=None, peers=None, extra=None, env=None,
                 args=(), extra_text=""):
        self.workdir = workdir or tempdir("radprepd")
        self.ae = ae
        self.port = free_port()
        self.data_dir = os.path.join(self.workdir, "data")
        self.config_path = os.path.join(self.workdir, "radprep.ini")
        self.log_path = os.path.join(self.workdir, "radprepd.log")
        self.args = list(args)
        sections = {"node": {
            "ae_title": ae, "port": self.port, "bind": "127.0.0.1", "data_dir": self.data_dir,
            "min_free_mb": 1, "acse_timeout_s": 10, "dimse_timeout_s": 30,
            "network_timeout_s": 30,
        }}
        sections["node"].update(node or {})
        for name, kv in (peers or {}).items():
            sections["peer " + name] = kv
        sections.update(extra or {})
        os.makedirs(self.workdir, exist_ok=True)
        write_ini(self.config_path, sections)
        if extra_text:
            with open(self.config_path, "a") as f:
                f.write(extra_text + "\n")
        self.env = dict(os.environ)
        if os.path.exists(radprep_bin()):
            self.env.setdefault("RP_WORKER_BIN", radprep_bin())
        self.env.update(env or {})
        self.proc = None
        self._logf = None

    # paths
    @property
    def store_dir(self):
        return os.path.join(self.data_dir, "store")

    @property
    def spool_dir(self):
        return os.path.join(self.data_dir, "spool")

    @property
    def db_path(self):
        return os.path.join(self.data_dir, "index.sqlite")

    def start(self, timeout=30.0, wait_ready=True):
        self._logf = open(self.log_path, "ab")
        self._log_start = os.path.getsize(self.log_path)
        cmd = [radprepd_bin(), "--config", self.config_path, "--foreground"] + self.args
        self.proc = spawn(cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=self.env)
        if wait_ready:
            if not wait_for_port(self.port, timeout, self.proc):
                raise RuntimeError("radprepd did not open port %d\n%s" % (self.port,
                                                                          self.log_tail()))
            if self.env.get("RP_LOG_LEVEL", "info").lower() in ("info", "debug"):
                self.wait_log(r"node ready", timeout=timeout, since_start=True)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=60.0):
        """Signal and wait; returns the exit code."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("radprepd did not stop in %.0fs\n%s" % (timeout,
                                                                          self.log_tail()))
        rc = self.proc.returncode
        self.proc = None
        if self._logf:
            self._logf.close()
            self._logf = None
        return rc

    def kill(self):
        """kill -9 (no cleanup at all), returns the exit code (-9)."""
        return self.stop(signal.SIGKILL)

    def restart(self, **kw):
        self.stop()
        return self.start(**kw)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc:
            self.stop()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # logs
    def log(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, regex, timeout=10.0, since_start=False, count=1):
        """Wait until regex matches count times in the log (only in what this start wrote
        with since_start); returns the count-th re.Match (raises on timeout)."""
        rx = re.compile(regex)
        end = time.time() + timeout
        while True:
            text = self.log()
            if since_start:
                text = text[getattr(self, "_log_start", 0):]
            found = list(rx.finditer(text)) if count > 1 else [rx.search(text)]
            m = found[count - 1] if len(found) >= count and found[count - 1] else None
            if m:
                return m
            if time.time() > end:
                raise AssertionError("no log line matching %r in %.0fs\n%s" % (
                    regex, timeout, self.log_tail()))
            if self.proc is not None and self.proc.poll() is not None and not m:
                raise AssertionError("radprepd exited (%s) before logging %r\n%s" % (
                    self.proc.returncode, regex, self.log_tail()))
            time.sleep(0.05)

    def log_kv(self, message_regex):
        """kv dicts of every log line whose message matches message_regex."""
        rx = re.compile(message_regex)
        return [parse_kv(l) for l in self.log().splitlines() if rx.search(l)]

    # index
    def query(self, sql, args=()):
        """Rows of a read-only query on index.sqlite."""
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=30)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def vmhwm_kb(self):
        """Peak resident memory of the daemon (VmHWM, kB)."""
        return vmhwm_kb(self.pid)

    def wait_store(self, cond, timeout=15.0):
        """Wait until cond() is true, then return its value (or the last one): acknowledged
        instances are durable in the spool log and reach store/ when the node promotes them,
        once receiving pauses, not when the sender's association ends."""
        end = time.time() + timeout
        v = cond()
        while not v and time.time() < end:
            time.sleep(0.02)
            v = cond()
        return v

    def files_in_store(self):
        out = []
        for dp, _, fns in os.walk(self.store_dir):
            out += [os.path.join(dp, f) for f in fns]
        return out

    def files_in_spool(self):
        try:
            return os.listdir(self.spool_dir)
        except FileNotFoundError:
            return []


def vmhwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


# ---- reference SCP ---------------------------------------------------------------------------

class _Peer:
    """A peer process (self.proc, its log file self._logf) usable as a context manager."""
    stop_timeout = 30

    def stop(self):
        if self.proc:
            stop_process(self.proc, self.stop_timeout)
            self.proc = None
            self._logf.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class StoreSCP(_Peer):
    """dcmtk storescp under the loopback shim, bit-preserving, accepting every TS."""
    stop_timeout = 10

    def __init__(self, outdir=None, ae="STORESCP", extra=()):
        self.outdir = outdir or tempdir("storescp")
        self.ae = ae
        self.port = free_port()
        self.extra = list(extra)
        self.proc = None

    def start(self):
        env = dict(os.environ, LD_PRELOAD=bind_loopback_shim())
        cmd = ["storescp", "+B", "+xa", "-aet", self.ae, "-od", self.outdir] + self.extra + [
            str(self.port)]
        self.log_path = os.path.join(tempdir("storescp_log"), "storescp.log")
        self._logf = open(self.log_path, "wb")
        self.proc = spawn(cmd, stdout=self._logf, stderr=subprocess.STDOUT, env=env)
        if not wait_for_port(self.port, 10, self.proc):
            raise RuntimeError("storescp did not start")
        return self

    def file_for(self, sop_uid):
        """storescp names files MODALITY.SOPUID (no extension with -uf default)."""
        for fn in os.listdir(self.outdir):
            if fn.split(".", 1)[-1] == sop_uid or fn.endswith("." + sop_uid):
                return os.path.join(self.outdir, fn)
        return None


class Orthanc(_Peer):
    """Orthanc (Debian package) under the loopback shim, in its own folder, HTTP and DICOM on
    free ports, no authentication, plugins off. config: keys that override the defaults
    (e.g. {"DicomAlwaysAllowStore": False})."""

    def __init__(self, workdir=None, name="orthanc", config=None, ae="ORTHANC"):
        self.dir = workdir or tempdir("orthanc")
        self.name, self.ae = name, ae
        self.http, self.port = free_port(), free_port()
        self.config = {
            "Name": name, "StorageDirectory": os.path.join(self.dir, "storage"),
            "IndexDirectory": os.path.join(self.dir, "index"), "HttpPort": self.http,
            "DicomPort": self.port, "DicomAet": ae, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
            "DicomModalities": {}, "Plugins": [],
        }
        self.config.update(config or {})
        self.proc = None

    def start(self, timeout=30.0):
        os.makedirs(self.dir, exist_ok=True)
        cfg = os.path.join(self.dir, "orthanc.json")
        with open(cfg, "w") as f:
            json.dump(self.config, f)
        self.log_path = os.path.join(self.dir, "orthanc.log")
        self._logf = open(self.log_path, "wb")
        self.proc = spawn(["Orthanc", cfg], stdout=self._logf,
                                     stderr=subprocess.STDOUT,
                                     env=dict(os.environ, LD_PRELOAD=bind_loopback_shim()))
        if not (wait_for_port(self.port, timeout, self.proc)
                and wait_for_port(self.http, timeout, self.proc)):
            self.stop()
            with open(self.log_path, errors="replace") as f:
                raise RuntimeError("%s did not start\n%s" % (self.name, f.read()[-2000:]))
        return self

    def rest(self, path):
        """GET http://127.0.0.1:HTTP/path as parsed JSON."""
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (self.http, path),
                                    timeout=10) as r:
            return json.loads(r.read())


# ---- SCUs ------------------------------------------------------------------------------------

class StoreResult:
    """Outcome of one storescu run: per-file status text ('Success', 'Error: ...',
    'Refused: ...', 'Warning: ...', 'failed' when sending broke, 'ignored' when storescu
    could not read the file), plus rc and the full output."""

    def __init__(self, rc, out, files):
        self.rc, self.out = rc, out
        self.status = {}
        cur = None
        for line in out.splitlines():
            m = re.search(r"Sending file: (.*)$", line)
            if m:
                cur = m.group(1).strip()
                continue
            m = re.search(r"Received Store Response \((.*)\)\s*$", line)
            if m and cur:
                self.status[cur] = m.group(1)
                cur = None
                continue
            m = re.search(r"Store Failed, file: (.*?):?\s*$", line)
            if m:
                self.status[m.group(1)] = "failed"
                cur = None
                continue
            m = re.search(r"in file: (.*), ignoring file", line)
            if m:
                self.status[m.group(1)] = "ignored"
        for f in files:
            self.status.setdefault(f, "not sent")

    def ok(self):
        return [f for f, s in self.status.items() if s == "Success" or s.startswith("Warning")]

    def failed(self):
        return [f for f, s in self.status.items() if f not in self.ok()]


def echoscu(port, aec="RADPREP", aet="ECHOSCU", timeout=30, host="127.0.0.1", args=()):
    return subprocess.run(["echoscu", "-v", "-aet", aet, "-aec", aec] + list(args) +
                          [host, str(port)], capture_output=True, text=True, timeout=timeout)


def storescu(port, files, aec="RADPREP", aet="STORESCU", args=(), timeout=600, env=None,
             host="127.0.0.1", no_halt=True):
    """storescu -v [-nh] with default proposals (uncompressed) + args; returns StoreResult.
    no_halt=False: storescu stops at the first failed store (its default)."""
    cmd = ["storescu", "-v"] + (["-nh"] if no_halt else []) + ["-aet", aet, "-aec", aec] + \
        list(args) + [host, str(port)]
    cmd += list(files)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    return StoreResult(p.returncode, p.stdout + p.stderr, files)


def _asis_config(pairs, path):
    """dcmtk association config proposing each (sop_class, ts) pair in its own context."""
    tss = sorted({ts for _, ts in pairs})
    key = {ts: "TS%d" % i for i, ts in enumerate(tss)}
    lines = ["[[TransferSyntaxes]]"]
    for ts in tss:
        lines += ["[%s]" % key[ts], "TransferSyntax1 = %s" % ts]
    lines += ["", "[[PresentationContexts]]", "[RPContexts]"]
    for i, (cls, ts) in enumerate(pairs, 1):
        lines.append("PresentationContext%d = %s\\%s" % (i, cls, key[ts]))
    lines += ["", "[[Profiles]]", "[AsIs]", "PresentationContexts = RPContexts", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def asis_config(files, path=None):
    """Association config (for storescu -xf PATH AsIs) proposing each file's own
    (SOP class, transfer syntax) pair. Returns (path, unreadable_files). At most 127 pairs."""
    pairs, unknown = [], []
    for f in files:
        info = file_sop_info(f)
        if info is None:
            unknown.append(f)
        elif (info[0], info[2]) not in pairs:
            pairs.append((info[0], info[2]))
    if len(pairs) > 127:
        raise ValueError("more than 127 (SOP class, transfer syntax) pairs")
    path = path or os.path.join(tempdir("scucfg"), "asis.cfg")
    return _asis_config(pairs, path), unknown


def storescu_asis(port, files, aec="RADPREP", aet="STORESCU", args=(), timeout=600,
                  host="127.0.0.1"):
    """Send files in their own transfer syntax (no transcoding): one presentation context
    per (SOP class, transfer syntax) pair, chunked to stay under 128 contexts. Files whose
    header cannot be read go through plain storescu. Returns one merged StoreResult."""
    groups, unknown = {}, []
    for f in files:
        info = file_sop_info(f)
        if info is None:
            unknown.append(f)
        else:
            groups.setdefault((info[0], info[2]), []).append(f)
    results = []
    pairs = list(groups)
    for i in range(0, len(pairs), 100):
        chunk = pairs[i:i + 100]
        cfg = _asis_config(chunk, os.path.join(tempdir("scucfg"), "asis.cfg"))
        chunk_files = [f for p in chunk for f in groups[p]]
        results.append(storescu(port, chunk_files, aec, aet, ["-xf", cfg, "AsIs"] + list(args),
                                timeout, host=host))
    if unknown:
        results.append(storescu(port, unknown, aec, aet, list(args), timeout, host=host))
    merged = StoreResult(0, "", [])
    for r in results:
        merged.status.update(r.status)
        merged.out += r.out
        merged.rc = merged.rc or r.rc
    return merged


# ---- raw DICOM upper layer (for hostile and protocol tests) ------------------------------

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"


def _item(t, payload):
    return struct.pack(">BBH", t, 0, len(payload)) + payload


def associate_rq_pdu(calling, called, contexts=((1, VERIFICATION, (IMPLICIT_LE,)),),
                     max_pdu=16384, app_context="1.2.840.10008.3.1.1.1"):
    """Bytes of an A-ASSOCIATE-RQ. contexts: (id, abstract_syntax, [transfer syntaxes])."""
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16)[:16] + \
        calling.encode().ljust(16)[:16] + b"\0" * 32
    body += _item(0x10, app_context.encode())
    for pcid, abstract, tss in contexts:
        sub = _item(0x30, abstract.encode())
        for ts in tss:
            sub += _item(0x40, ts.encode())
        body += _item(0x20, struct.pack(">BBBB", pcid, 0, 0, 0) + sub)
    ui = _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, b"1.2.826.0.1.3680043.9.7777.1")
    body += _item(0x50, ui)
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def recv_pdu(sock, timeout=10.0):
    """(pdu_type, body) of the next PDU, or (None, b'') when the peer closed."""
    sock.settimeout(timeout)
    hdr = b""
    while len(hdr) < 6:
        chunk = sock.recv(6 - len(hdr))
        if not chunk:
            return None, b""
        hdr += chunk
    t, _, ln = struct.unpack(">BBI", hdr)
    body = b""
    while len(body) < ln:
        chunk = sock.recv(min(65536, ln - len(body)))
        if not chunk:
            break
        body += chunk
    return t, body


class RawAssociation:
    """A hand-made association over a plain socket, for tests that need to misbehave.
    After open(): .result is 'accepted', 'rejected' or 'closed'; for a rejection
    .reject = (result, source, reason) as in the A-ASSOCIATE-RJ PDU."""

    def __init__(self, port, calling="RAWSCU", called="RADPREP", host="127.0.0.1",
                 contexts=((1, VERIFICATION, (IMPLICIT_LE,)),)):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.calling, self.called, self.contexts = calling, called, contexts
        self.result, self.reject = None, None

    def open(self, timeout=10.0):
        self.sock.sendall(associate_rq_pdu(self.calling, self.called, self.contexts))
        t, body = recv_pdu(self.sock, timeout)
        if t == 0x02:
            self.result = "accepted"
        elif t == 0x03:
            self.result = "rejected"
            self.reject = (body[1], body[2], body[3])
        else:
            self.result = "closed" if t is None else "pdu_%02x" % t
        return self

    def send(self, data):
        self.sock.sendall(data)

    def closed_by_peer(self, timeout=10.0):
        """True when the node closes (or aborts) the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                if d[:1] == b"\x07":  # A-ABORT
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def pdata_pdu(pcid, payload, command=True, last=True):
    """One P-DATA-TF PDU with a single PDV."""
    mch = (1 if command else 0) | (2 if last else 0)
    pdv = struct.pack(">IBB", len(payload) + 2, pcid, mch) + payload
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def _el_implicit(group, elem, value):
    if isinstance(value, int):
        raw = struct.pack("<H", value)
    else:
        raw = value.encode()
        if len(raw) % 2:
            raw += b"\0"
    return struct.pack("<HHI", group, elem, len(raw)) + raw


def cstore_rq_command(sop_class, sop_instance, message_id=1):
    """C-STORE-RQ command set (implicit VR LE, with group length) as bytes."""
    body = (_el_implicit(0, 0x0002, sop_class) + _el_implicit(0, 0x0100, 0x0001) +
            _el_implicit(0, 0x0110, message_id) + _el_implicit(0, 0x0700, 0) +
            _el_implicit(0, 0x0800, 0x0000) + _el_implicit(0, 0x1000, sop_instance))
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def dimse_status(pdata_body):
    """(0000,0900) Status from the body of a P-DATA-TF PDU carrying a command, or None."""
    off = 0
    cmd = b""
    while off + 6 <= len(pdata_body):
        ln = struct.unpack_from(">I", pdata_body, off)[0]
        cmd += pdata_body[off + 6:off + 4 + ln]
        off += 4 + ln
    i = 0
    while i + 8 <= len(cmd):
        g, e, ln = struct.unpack_from("<HHI", cmd, i)
        if (g, e) == (0, 0x0900):
            return struct.unpack_from("<H", cmd, i + 8)[0]
        i += 8 + ln
    return None


def raw_cstore(port, dataset_bytes, sop_class, sop_instance, ts=IMPLICIT_LE, called="RADPREP",
               calling="RAWSCU", timeout=30):
    """Send one C-STORE with a hand-made command (request UIDs chosen by the caller, the
    dataset encoded in ts) and return the DIMSE status (None if no response came)."""
    a = RawAssociation(port, calling=calling, called=called,
                       contexts=((1, sop_class, (ts,)),)).open()
    try:
        if a.result != "accepted":
            raise AssertionError("association %s %s" % (a.result, a.reject))
        a.send(pdata_pdu(1, cstore_rq_command(sop_class, sop_instance), command=True))
        a.send(pdata_pdu(1, dataset_bytes, command=False))
        t, body = recv_pdu(a.sock, timeout)
        if t != 0x04:
            return None
        status = dimse_status(body)
        a.send(struct.pack(">BBI", 0x05, 0, 4) + b"\0\0\0\0")  # A-RELEASE-RQ
        recv_pdu(a.sock, timeout)
        return status
    finally:
        a.close()
