#!/usr/bin/python3
"""End to end: storescu -> radprepd -> completion -> processing -> derived series + SEG ->
outbox -> Orthanc, all real processes on loopback (Orthanc under the bind_loopback shim).

radprepd gets a rule for CT with outputs "nifti json dicom seg" and send_to = the Orthanc peer.
After the last source instance is acknowledged, the test polls Orthanc's REST API until the
derived series and the SEG are there, then checks: same study, same patient, derived CT series
with as many instances as the processed volume has slices, a SEG referencing the source series.
It prints the latency from the last source instance to "derived stored in Orthanc" (this
includes the completion quiet time, which is set to 2 s here).
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

import pydicom

DATA = os.environ.get("RP_SHARED_DATA", "/work/shared/data")
TOOLS = os.environ.get("RP_SHARED_TOOLS", "/work/shared/tools")
BUILD = os.environ.get("RP_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
RADPREPD = os.path.join(BUILD, "node", "radprepd")
RADPREP = os.path.join(BUILD, "cli", "radprep")
QUIET_S = 2

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


def wait_port(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rest(http, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (http, path), timeout=10) as r:
        return json.loads(r.read())


def run_case(tmp, shim, name, files, steps):
    d = os.path.join(tmp, name)
    os.makedirs(d)
    http, dicom, port = free_port(), free_port(), free_port()
    cfg = {"Name": name, "StorageDirectory": os.path.join(d, "orthanc", "s"),
           "IndexDirectory": os.path.join(d, "orthanc", "i"), "HttpPort": http,
           "DicomPort": dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
           "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
           "DicomModalities": {}, "Plugins": []}
    os.makedirs(os.path.join(d, "orthanc"))
    with open(os.path.join(d, "orthanc", "orthanc.json"), "w") as f:
        json.dump(cfg, f)
    orth = subprocess.Popen(["Orthanc", os.path.join(d, "orthanc", "orthanc.json")],
                            env=dict(os.environ, LD_PRELOAD=shim), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    procs.append(orth)
    check(wait_port(dicom) and wait_port(http), "Orthanc did not start")
    conf = os.path.join(d, "radprep.ini")
    with open(conf, "w") as f:
        f.write("[node]\nae_title = RADPREP\nport = %d\nbind = 127.0.0.1\ndata_dir = %s\n"
                "min_free_mb = 1\nworkers = 1\n\n"
                "[completion CT]\nquiet_s = %d\n\n"
                "[peer scanner]\nae_title = STORESCU\n\n"
                "[peer archive]\nae_title = ORTHANC\nhost = 127.0.0.1\nport = %d\n"
                "destination = yes\n\n"
                "[rule e2e_ct]\nmodality = CT\nsteps = %s\noutputs = nifti json dicom seg\n"
                "send_to = archive\npriority = 100\n"
                % (port, os.path.join(d, "data"), QUIET_S, dicom, steps))
    log = open(os.path.join(d, "radprepd.log"), "w")
    node = subprocess.Popen([RADPREPD, "--foreground", "-c", conf], stdout=log,
                            stderr=subprocess.STDOUT, env=dict(os.environ, RP_WORKER_BIN=RADPREP))
    procs.append(node)
    check(wait_port(port), "radprepd did not start (see %s)" % log.name)
    t0 = time.time()
    r = subprocess.run(["storescu", "-aet", "STORESCU", "-aec", "RADPREP", "127.0.0.1", str(port),
                        *files], capture_output=True, text=True)
    t_last = time.time()
    check(r.returncode == 0, "storescu into radprepd failed: " + r.stderr[-800:])
    src = pydicom.dcmread(files[0], stop_before_pixels=True)
    found = None
    deadline = t_last + float(os.environ.get("RP_E2E_WAIT_S", "180"))
    while time.time() < deadline and found is None:
        try:
            series = [rest(http, "/series/%s" % s) for s in rest(http, "/series")]
        except OSError:
            series = []
        ct = [s for s in series if s["MainDicomTags"].get("Modality") == "CT"]
        seg = [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]
        if ct and seg and ct[0].get("Status") != "Missing" and len(ct[0]["Instances"]) > 0:
            # wait until the count stops growing (a series arrives instance by instance)
            n1 = len(ct[0]["Instances"])
            time.sleep(0.3)
            if len(rest(http, "/series/%s" % ct[0]["ID"])["Instances"]) == n1:
                found = (time.time(), ct[0], seg[0])
                break
        time.sleep(0.1)
    if found is None:
        dicom_dirs = glob.glob(os.path.join(d, "data", "outputs", "*", "*", "v*", "dicom"))
        if not dicom_dirs:
            check(False, "the job wrote no <version>/dicom folder: pipeline/process.c does not "
                  "call rp_derived_write_outputs() yet (see docs/sending.md)")
        else:
            check(False, "derived series + SEG did not reach Orthanc within %s s (radprepd "
                  "log: %s)" % (os.environ.get("RP_E2E_WAIT_S", "180"), log.name))
    if found:
        t_found, ct, seg = found
        study = rest(http, "/studies/%s" % ct["ParentStudy"])
        check(study["MainDicomTags"]["StudyInstanceUID"] == src.StudyInstanceUID, "same study")
        check(seg["ParentStudy"] == ct["ParentStudy"], "SEG in the same study")
        check(study["PatientMainDicomTags"].get("PatientID", "") == str(src.get("PatientID", "")),
              "same patient")
        check("radprep" in ct["MainDicomTags"].get("SeriesDescription", ""),
              "series description says radprep")
        inst = rest(http, "/instances/%s/simplified-tags" % ct["Instances"][0])
        check(inst.get("ImageType", "").startswith("DERIVED\\SECONDARY"), "DERIVED\\SECONDARY")
        segt = rest(http, "/instances/%s/tags?simplify" % seg["Instances"][0])
        check(segt["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == src.SeriesInstanceUID,
              "SEG references the source series")
        print("%s: %d source instances -> derived CT %d instances + SEG in Orthanc; "
              "store %.2f s, last source instance -> derived in Orthanc %.2f s "
              "(quiet_s = %d)" % (name, len(files), len(ct["Instances"]), t_last - t0,
                                  t_found - t_last, QUIET_S))
    stop(node)
    stop(orth)
    # where the time went, from the node's own log lines
    import re
    text = open(log.name).read()
    job = re.findall(r"supervisor: job done .*?wall_s=([0-9.]+)", text)
    sent = re.findall(r"outbox: sent .*?instances=(\d+).*?seconds=([0-9.]+)", text)
    print("%s: job wall %s s; outbox batches (instances, s): %s" %
          (name, ",".join(job) or "?", ", ".join("(%s, %s)" % x for x in sent) or "?"))
    out = subprocess.run([RADPREP, "-c", conf, "outbox", "--state", "dead"], capture_output=True,
                         text=True)
    check(out.returncode == 0, "radprep outbox failed")
    check(len([l for l in out.stdout.splitlines() if " dead " in l]) == 0, "no dead rows")


def main():
    for b in (RADPREPD, RADPREP):
        if not os.path.exists(b):
            print("not built:", b)
            return 1
    tmp = tempfile.mkdtemp(prefix="rp_e2e_")
    shim = os.path.join(tmp, "bind_loopback.so")
    subprocess.run(["gcc", "-O2", "-fPIC", "-shared", "-o", shim,
                    os.path.join(TOOLS, "bind_loopback.c"), "-ldl"], check=True)
    try:
        ct3 = sorted(glob.glob(os.path.join(DATA, "seg_with_source_ct", "ct_3slice", "*.dcm")))
        run_case(tmp, shim, "ct3", ct3, "hu bodymask lungmask")
        lidc = sorted(glob.glob(os.path.join(DATA, "ct_chest_lidc0001", "*.dcm")))
        if lidc:
            run_case(tmp, shim, "lidc", lidc, "hu bodymask lungmask")
    finally:
        for p in procs:
            stop(p)
        if not failures:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
