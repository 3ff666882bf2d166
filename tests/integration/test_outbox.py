#!/usr/bin/python3
"""Outbox sender against real peers on loopback (Orthanc and dcmtk storescp, both under the
bind_loopback shim).

1. Several destinations: a derived series (133 CT slices, written by the derived writer from
   the LIDC series) + its SEG go to Orthanc and to storescp at once; both receive every
   instance exactly once, and Orthanc shows the derived series and the SEG in the source
   study. Prints the send rate beside dcmtk storescu sending the same files to a fresh Orthanc.
2. Orthanc that rejects our AE title (DicomAlwaysAllowStore=false, no modalities): rows go to
   dead with the reason after a bounded number of attempts (no endless loop).
3. Receiver absent: attempts grow with the backoff, nothing is dead; the sender is stopped
   (restart) and the receiver started: everything arrives exactly once.

The outbox runs through the driver mode of the unit test binary (`outbox_test_outbox --send`),
which queues files for every destination of a configuration and runs until nothing is pending.
"""
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import pydicom

DATA = os.environ.get("RP_SHARED_DATA", "/work/shared/data")
TOOLS = os.environ.get("RP_SHARED_TOOLS", "/work/shared/tools")
BUILD = os.environ.get("RP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
OUTBOX = os.path.join(BUILD, "tests", "outbox_test_outbox")
DERIVED = os.path.join(BUILD, "tests", "pipeline_test_derived")

failures = []
procs = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=20):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def start(cmd, env=None, log=None):
    p = subprocess.Popen(cmd, env=env, stdout=log or subprocess.DEVNULL,
                         stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def shim_env(shim):
    env = dict(os.environ)
    env["LD_PRELOAD"] = shim
    return env


def start_orthanc(tmp, name, shim, allow_store):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    http, dicom = free_port(), free_port()
    cfg = {
        "Name": name, "StorageDirectory": os.path.join(d, "storage"),
        "IndexDirectory": os.path.join(d, "index"), "HttpPort": http, "DicomPort": dicom,
        "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": allow_store, "DicomModalities": {}, "Plugins": [],
        "DicomCheckCalledAet": True, "StableAge": 1,
    }
    with open(os.path.join(d, "orthanc.json"), "w") as f:
        json.dump(cfg, f)
    log = open(os.path.join(d, "orthanc.log"), "w")
    p = start(["Orthanc", os.path.join(d, "orthanc.json")], env=shim_env(shim), log=log)
    check(wait_port(dicom) and wait_port(http), "%s did not start" % name)
    return p, http, dicom


def rest(http, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (http, path), timeout=10) as r:
        return json.loads(r.read())


def start_storescp(port, out, shim, extra=()):
    os.makedirs(out, exist_ok=True)
    p = start(["storescp", "-aet", "STORESCP", "-od", out, "+uf", *extra, str(port)],
              env=shim_env(shim))
    check(wait_port(port), "storescp did not start")
    return p


def write_conf(path, peers):
    with open(path, "w") as f:
        f.write("[node]\nae_title = RADPREP\nacse_timeout_s = 10\ndimse_timeout_s = 30\n")
        for name, ae, port in peers:
            f.write("\n[peer %s]\nae_title = %s\nhost = 127.0.0.1\nport = %d\n"
                    "destination = yes\n" % (name, ae, port))


def run_outbox(conf, db, timeout, files, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    r = subprocess.run([OUTBOX, "--send", conf, db, str(timeout), *files], capture_output=True,
                       text=True, env=env)
    check(r.returncode == 0, "outbox driver failed rc=%d: %s" % (r.returncode, r.stderr[-1500:]))
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def make_derived(tmp):
    """A derived CT series + SEG from the LIDC series, through the derived writer."""
    folder = os.path.join(DATA, "ct_chest_lidc0001")
    files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    ds = [pydicom.dcmread(f) for f in files]
    iop = np.array(ds[0].ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    order = sorted(range(len(ds)), key=lambda i: float(np.dot(n, ds[i].ImagePositionPatient)))
    ds = [ds[i] for i in order]
    files = [files[i] for i in order]
    vol = np.stack([d.pixel_array.astype(np.float32) * float(d.RescaleSlope)
                    + float(d.RescaleIntercept) for d in ds])
    ps = [float(x) for x in ds[0].PixelSpacing]
    ipp0 = np.array(ds[0].ImagePositionPatient, float)
    step = (np.array(ds[-1].ImagePositionPatient, float) - ipp0) / (len(ds) - 1)
    a = np.eye(4)
    a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = iop[:3] * ps[1], iop[3:] * ps[0], step, ipp0
    a[0, :] *= -1
    a[1, :] *= -1
    out = os.path.join(tmp, "derived")
    os.makedirs(out)
    vol.astype("<f4").tofile(os.path.join(out, "vol.f32"))
    lung = ((vol < -400) & (vol > -1000)).astype(np.uint8)
    lung.tofile(os.path.join(out, "lung.u8"))
    spec = {"dim": [vol.shape[2], vol.shape[1], vol.shape[0]], "affine": a.tolist(),
            "src_files": files, "raw": os.path.join(out, "vol.f32"),
            "out_dir": os.path.join(out, "series"), "description": "LIDC [radprep: outbox test]",
            "physical": 1, "window": [-600, 1600], "recipe": "hu",
            "masks": [{"name": "lung", "raw": os.path.join(out, "lung.u8")}],
            "seg_out": os.path.join(out, "seg.dcm")}
    with open(os.path.join(out, "spec.json"), "w") as f:
        json.dump(spec, f)
    r = subprocess.run([DERIVED, "--spec", os.path.join(out, "spec.json")], capture_output=True,
                       text=True)
    check(r.returncode == 0, "derived driver failed: " + r.stderr[-1000:])
    return r.stdout.split(), ds[0]


def scenario_destinations(tmp, shim):
    paths, src = make_derived(tmp)
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print("derived: %d files, %.1f MB" % (len(paths), mb))
    orth, http, dicom = start_orthanc(tmp, "orthanc_ok", shim, True)
    scp_port = free_port()
    scp_dir = os.path.join(tmp, "storescp_multi")
    scp = start_storescp(scp_port, scp_dir, shim)
    conf = os.path.join(tmp, "multi.ini")
    write_conf(conf, [("orthanc", "ORTHANC", dicom), ("archive", "STORESCP", scp_port)])
    res = run_outbox(conf, os.path.join(tmp, "multi.db"), 300, paths)
    print("two destinations:", json.dumps(res))
    check(res.get("finished") == 1 and res.get("done") == 2 * len(paths) and
          res.get("dead_rows") == 0, "every row done for both destinations")
    time.sleep(0.5)
    inst = rest(http, "/instances")
    check(len(inst) == len(paths), "Orthanc has %d instances, want %d" % (len(inst), len(paths)))
    check(len(os.listdir(scp_dir)) == len(paths),
          "storescp has %d files, want %d" % (len(os.listdir(scp_dir)), len(paths)))
    studies = rest(http, "/studies")
    check(len(studies) == 1, "one study in Orthanc")
    if studies:
        st = rest(http, "/studies/%s" % studies[0])
        check(st["MainDicomTags"]["StudyInstanceUID"] == src.StudyInstanceUID,
              "derived series in the source study")
        mods = sorted(rest(http, "/series/%s" % s)["MainDicomTags"].get("Modality", "")
                      for s in st["Series"])
        check(mods == ["CT", "SEG"], "derived CT series + SEG in Orthanc, got %s" % mods)
    stop(orth)
    stop(scp)

    # send rate: outbox -> fresh Orthanc vs storescu -> fresh Orthanc, same files
    o1, h1, d1 = start_orthanc(tmp, "orthanc_rate1", shim, True)
    conf1 = os.path.join(tmp, "rate.ini")
    write_conf(conf1, [("orthanc", "ORTHANC", d1)])
    res = run_outbox(conf1, os.path.join(tmp, "rate.db"), 300, paths)
    check(res.get("done") == len(paths), "rate run: all done")
    o2, h2, d2 = start_orthanc(tmp, "orthanc_rate2", shim, True)
    t0 = time.time()
    # -R: propose only the SOP classes of the files (storescu's default list lacks SEG)
    r = subprocess.run(["storescu", "-R", "-aet", "RADPREP", "-aec", "ORTHANC", "127.0.0.1",
                        str(d2), *paths], capture_output=True, text=True)
    t_ref = time.time() - t0
    check(r.returncode == 0, "storescu reference failed: " + r.stderr[-800:])
    check(len(rest(h2, "/instances")) == len(paths), "reference Orthanc received all")
    print("send rate to Orthanc (%d instances, %.1f MB):" % (len(paths), mb))
    print("  radprep outbox : %.2f s in sender (%.0f inst/s, %.1f MB/s), %.2f s queue->done"
          % (res["send_seconds"], len(paths) / res["send_seconds"], mb / res["send_seconds"],
             res["wall_seconds"]))
    print("  dcmtk storescu : %.2f s (%.0f inst/s, %.1f MB/s, incl. process start)"
          % (t_ref, len(paths) / t_ref, mb / t_ref))
    stop(o1)
    stop(o2)


def scenario_rejected(tmp, shim):
    orth, http, dicom = start_orthanc(tmp, "orthanc_reject", shim, False)
    conf = os.path.join(tmp, "reject.ini")
    write_conf(conf, [("strict", "ORTHANC", dicom)])
    files = sorted(glob.glob(os.path.join(DATA, "seg_with_source_ct", "ct_3slice", "*.dcm")))
    res = run_outbox(conf, os.path.join(tmp, "reject.db"), 60, files,
                     {"RP_OUTBOX_BASE_DELAY": "0.1"})
    print("rejecting Orthanc:", json.dumps(res))
    check(res.get("finished") == 1, "rejected rows must not loop for ever")
    check(res.get("dead_rows") == len(files) and res.get("done") == 0, "all rows dead")
    check("calling AE" in res.get("last_reason", ""), "reason names the AE title")
    check(res.get("max_attempts", 99) <= 5, "bounded attempts")
    check(len(rest(http, "/instances")) == 0, "Orthanc stored nothing")
    stop(orth)


def scenario_absent_then_started(tmp, shim):
    port = free_port()
    conf = os.path.join(tmp, "absent.ini")
    write_conf(conf, [("later", "STORESCP", port)])
    db = os.path.join(tmp, "absent.db")
    files = sorted(glob.glob(os.path.join(DATA, "seg_with_source_ct", "ct_3slice", "*.dcm")))
    env = {"RP_OUTBOX_BASE_DELAY": "0.2", "RP_OUTBOX_MAX_DELAY": "0.8"}
    res = run_outbox(conf, db, 4, files, env)
    print("receiver absent:", json.dumps(res))
    check(res.get("finished") == 0 and res.get("pending") == len(files), "rows still pending")
    check(res.get("dead_rows") == 0, "nothing dead while the receiver is absent")
    check(3 <= res.get("max_attempts", 0) <= 10, "attempts grow with a backoff")
    out = os.path.join(tmp, "storescp_later")
    scp = start_storescp(port, out, shim)
    res = run_outbox(conf, db, 60, files, env)   # a restart: same db, nothing new queued
    print("receiver started:", json.dumps(res))
    check(res.get("queued") == 0, "restart queues nothing twice")
    check(res.get("finished") == 1 and res.get("done") == len(files), "all delivered")
    time.sleep(0.3)
    stop(scp)
    check(len(os.listdir(out)) == len(files), "exactly once: %d files" % len(os.listdir(out)))


def main():
    for b in (OUTBOX, DERIVED):
        if not os.path.exists(b):
            print("not built:", b)
            return 1
    tmp = tempfile.mkdtemp(prefix="rp_outbox_")
    shim = os.path.join(tmp, "bind_loopback.so")
    subprocess.run(["gcc", "-O2", "-fPIC", "-shared", "-o", shim,
                    os.path.join(TOOLS, "bind_loopback.c"), "-ldl"], check=True)
    try:
        scenario_rejected(tmp, shim)
        scenario_absent_then_started(tmp, shim)
        scenario_destinations(tmp, shim)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
