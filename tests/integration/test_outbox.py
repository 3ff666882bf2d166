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
4. Parallel associations ([peer] send_associations = 4) to Orthanc and a forking storescp:
   every instance exactly once, 4 associations per destination for the series, the SEG
   stored after every image of the series.
5. A peer that takes one association at a time from us (radprepd, [peer] max_associations =
   1) while we are configured for 4: the refused associations' rows are retried on fewer
   associations at once (no backoff, nothing dead), everything arrives exactly once.
6. Per-instance failures (Orthanc's ReceivedCStoreInstanceFilter): 0xC000 for one instance
   -> dead at once; 0x0110 for another -> dead after a few attempts; 0xA700 twice for a third
   -> retried with backoff, then done; every other instance done on its first attempt; each
   failure has a log line with its reason.
7. The PACS goes away mid-series (Orthanc killed with SIGKILL while 2 associations send):
   nothing dead, every row marked done is in Orthanc after its restart (never reported as
   sent when it was not), and a second run delivers the rest, exactly once.
8. Transfer syntaxes: JPEG lossless and JPEG baseline files to a peer that accepts only
   implicit VR little endian arrive decompressed (the lossless one pixel-identical); a
   JPEG 2000 file (no decoder here) goes dead at once saying why.

The outbox runs through the driver mode of the unit test binary (`outbox_test_outbox --send`,
found with rptest.unit_test_bin), which queues files for every destination of a configuration
and runs until nothing is pending.
"""
import json
import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402


def start_orthanc(tmp, name, allow_store):
    return rptest.Orthanc(os.path.join(tmp, name), name, config={
        "DicomAlwaysAllowStore": allow_store, "DicomCheckCalledAet": True, "StableAge": 1,
    }).start()


def start_storescp(port, out, extra=()):
    os.makedirs(out, exist_ok=True)
    p = rptest.spawn(["storescp", "-aet", "STORESCP", "-od", out, "+uf", *extra, str(port)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     env=dict(os.environ, LD_PRELOAD=rptest.bind_loopback_shim()))
    if not rptest.wait_for_port(port, 20, p):
        rptest.stop_process(p)
        raise RuntimeError("storescp did not start")
    return p


def write_conf(path, peers, peer_extra=""):
    with open(path, "w") as f:
        f.write("[node]\nae_title = RADPREP\nacse_timeout_s = 10\ndimse_timeout_s = 30\n")
        for name, ae, port in peers:
            f.write("\n[peer %s]\nae_title = %s\nhost = 127.0.0.1\nport = %d\n"
                    "destination = yes\n%s" % (name, ae, port, peer_extra))


def run_outbox(conf, db, timeout, files, env_extra=None, log=None):
    """Run the outbox driver; its JSON result. log: a list that gets the driver's stderr."""
    env = dict(os.environ)
    env.update(env_extra or {})
    r = subprocess.run([rptest.unit_test_bin("test_outbox"), "--send", conf, db, str(timeout),
                        *files], capture_output=True, text=True, env=env)
    check(r.returncode == 0, "outbox driver failed rc=%d: %s" % (r.returncode, r.stderr[-1500:]))
    if log is not None:
        log.append(r.stderr)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def outbox_rows(db):
    """{sop_uid: (state, attempts, last_status, last_reason, id)} of the driver's outbox db."""
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    try:
        return {r[0]: r[1:] for r in con.execute(
            "SELECT sop_uid, state, attempts, last_status, last_reason, id FROM outbox")}
    finally:
        con.close()


def sop_uid(path):
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def orthanc_uids(orth):
    return {i["MainDicomTags"]["SOPInstanceUID"] for i in orth.rest("/instances?expand")}


FAST = {"RP_OUTBOX_BASE_DELAY": "0.2", "RP_OUTBOX_MAX_DELAY": "1"}


def make_derived(tmp):
    """A derived CT series + SEG from the LIDC series, through the derived writer."""
    files = rptest.data_files("ct_chest_lidc0001", pattern="*.dcm")
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
    r = subprocess.run([rptest.unit_test_bin("test_derived"), "--spec", os.path.join(out, "spec.json")], capture_output=True,
                       text=True)
    check(r.returncode == 0, "derived driver failed: " + r.stderr[-1000:])
    return r.stdout.split(), ds[0]


def scenario_destinations(tmp, paths, src):
    mb = sum(os.path.getsize(p) for p in paths) / 1e6
    print("derived: %d files, %.1f MB" % (len(paths), mb))
    orth = start_orthanc(tmp, "orthanc_ok", True)
    scp_port = rptest.free_port()
    scp_dir = os.path.join(tmp, "storescp_multi")
    scp = start_storescp(scp_port, scp_dir)
    conf = os.path.join(tmp, "multi.ini")
    write_conf(conf, [("orthanc", "ORTHANC", orth.port), ("archive", "STORESCP", scp_port)])
    res = run_outbox(conf, os.path.join(tmp, "multi.db"), 300, paths)
    print("two destinations:", json.dumps(res))
    check(res.get("finished") == 1 and res.get("done") == 2 * len(paths) and
          res.get("dead_rows") == 0, "every row done for both destinations")
    time.sleep(0.5)
    inst = orth.rest("/instances")
    check(len(inst) == len(paths), "Orthanc has %d instances, want %d" % (len(inst), len(paths)))
    check(len(os.listdir(scp_dir)) == len(paths),
          "storescp has %d files, want %d" % (len(os.listdir(scp_dir)), len(paths)))
    studies = orth.rest("/studies")
    check(len(studies) == 1, "one study in Orthanc")
    if studies:
        st = orth.rest("/studies/%s" % studies[0])
        check(st["MainDicomTags"]["StudyInstanceUID"] == src.StudyInstanceUID,
              "derived series in the source study")
        mods = sorted(orth.rest("/series/%s" % s)["MainDicomTags"].get("Modality", "")
                      for s in st["Series"])
        check(mods == ["CT", "SEG"], "derived CT series + SEG in Orthanc, got %s" % mods)
    orth.stop()
    rptest.stop_process(scp, 10)

    # send rate: outbox -> fresh Orthanc vs storescu -> fresh Orthanc, same files
    o1 = start_orthanc(tmp, "orthanc_rate1", True)
    conf1 = os.path.join(tmp, "rate.ini")
    write_conf(conf1, [("orthanc", "ORTHANC", o1.port)])
    res = run_outbox(conf1, os.path.join(tmp, "rate.db"), 300, paths)
    check(res.get("done") == len(paths), "rate run: all done")
    o2 = start_orthanc(tmp, "orthanc_rate2", True)
    t0 = time.time()
    # -R: propose only the SOP classes of the files (storescu's default list lacks SEG)
    r = subprocess.run(["storescu", "-R", "-aet", "RADPREP", "-aec", "ORTHANC", "127.0.0.1",
                        str(o2.port), *paths], capture_output=True, text=True)
    t_ref = time.time() - t0
    check(r.returncode == 0, "storescu reference failed: " + r.stderr[-800:])
    check(len(o2.rest("/instances")) == len(paths), "reference Orthanc received all")
    print("send rate to Orthanc (%d instances, %.1f MB):" % (len(paths), mb))
    print("  radprep outbox : %.2f s in sender (%.0f inst/s, %.1f MB/s), %.2f s queue->done"
          % (res["send_seconds"], len(paths) / res["send_seconds"], mb / res["send_seconds"],
             res["wall_seconds"]))
    print("  dcmtk storescu : %.2f s (%.0f inst/s, %.1f MB/s, incl. process start)"
          % (t_ref, len(paths) / t_ref, mb / t_ref))
    o1.stop()
    o2.stop()


def scenario_rejected(tmp):
    orth = start_orthanc(tmp, "orthanc_reject", False)
    conf = os.path.join(tmp, "reject.ini")
    write_conf(conf, [("strict", "ORTHANC", orth.port)])
    files = rptest.data_files("seg_with_source_ct", "ct_3slice", pattern="*.dcm")
    res = run_outbox(conf, os.path.join(tmp, "reject.db"), 60, files,
                     {"RP_OUTBOX_BASE_DELAY": "0.1"})
    print("rejecting Orthanc:", json.dumps(res))
    check(res.get("finished") == 1, "rejected rows must not loop for ever")
    check(res.get("dead_rows") == len(files) and res.get("done") == 0, "all rows dead")
    check("calling AE" in res.get("last_reason", ""), "reason names the AE title")
    check(res.get("max_attempts", 99) <= 5, "bounded attempts")
    check(len(orth.rest("/instances")) == 0, "Orthanc stored nothing")
    orth.stop()


def scenario_absent_then_started(tmp):
    port = rptest.free_port()
    conf = os.path.join(tmp, "absent.ini")
    write_conf(conf, [("later", "STORESCP", port)])
    db = os.path.join(tmp, "absent.db")
    files = rptest.data_files("seg_with_source_ct", "ct_3slice", pattern="*.dcm")
    env = {"RP_OUTBOX_BASE_DELAY": "0.2", "RP_OUTBOX_MAX_DELAY": "0.8"}
    res = run_outbox(conf, db, 4, files, env)
    print("receiver absent:", json.dumps(res))
    check(res.get("finished") == 0 and res.get("pending") == len(files), "rows still pending")
    check(res.get("dead_rows") == 0, "nothing dead while the receiver is absent")
    check(3 <= res.get("max_attempts", 0) <= 10, "attempts grow with a backoff")
    out = os.path.join(tmp, "storescp_later")
    scp = start_storescp(port, out)
    res = run_outbox(conf, db, 60, files, env)   # a restart: same db, nothing new queued
    print("receiver started:", json.dumps(res))
    check(res.get("queued") == 0, "restart queues nothing twice")
    check(res.get("finished") == 1 and res.get("done") == len(files), "all delivered")
    time.sleep(0.3)
    rptest.stop_process(scp, 10)
    check(len(os.listdir(out)) == len(files), "exactly once: %d files" % len(os.listdir(out)))


def scenario_parallel(tmp, paths):
    orth = start_orthanc(tmp, "orthanc_par", True)
    scp_port = rptest.free_port()
    scp_dir = os.path.join(tmp, "storescp_par")
    scp = start_storescp(scp_port, scp_dir, ("--fork",))
    conf = os.path.join(tmp, "par.ini")
    write_conf(conf, [("orthanc", "ORTHANC", orth.port), ("archive", "STORESCP", scp_port)],
               "send_associations = 4\n")
    log = []
    res = run_outbox(conf, os.path.join(tmp, "par.db"), 300, paths, log=log)
    print("4 associations per destination:", json.dumps(res))
    check(res.get("finished") == 1 and res.get("done") == 2 * len(paths) and
          res.get("dead_rows") == 0 and res.get("max_attempts") == 1,
          "every row done on its first attempt for both destinations")
    # per destination: 4 associations for the series, 1 for the SEG after it
    check(res.get("associations") == 10, "associations: %s, want 2 x (4 + 1)"
          % res.get("associations"))
    check("parallel=4" in log[0], "the log says the series went over 4 associations")
    time.sleep(0.5)
    check(orthanc_uids(orth) == {sop_uid(p) for p in paths}, "Orthanc has every instance once")
    files = [os.path.join(scp_dir, f) for f in os.listdir(scp_dir)]
    check(len(files) == len(paths), "storescp has %d files, want %d" % (len(files), len(paths)))
    seg = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).Modality == "SEG"]
    check(len(seg) == 1, "one SEG received")
    if seg:
        last_image = max(os.stat(f).st_mtime_ns for f in files if f != seg[0])
        check(os.stat(seg[0]).st_mtime_ns >= last_image, "the SEG arrived after every image")
    orth.stop()
    rptest.stop_process(scp, 10)


def scenario_narrowed(tmp, paths):
    rd = rptest.Radprepd(os.path.join(tmp, "narrow_rd"), ae="ARCHIVE", peers={
        "sender": {"ae_title": "RADPREP", "host": "127.0.0.1", "max_associations": 1}}).start()
    conf = os.path.join(tmp, "narrow.ini")
    write_conf(conf, [("archive", "ARCHIVE", rd.port)], "send_associations = 4\n")
    log = []
    res = run_outbox(conf, os.path.join(tmp, "narrow.db"), 300, paths, env_extra=FAST, log=log)
    print("peer taking one association at a time:", json.dumps(res))
    check(res.get("finished") == 1 and res.get("done") == len(paths) and
          res.get("dead_rows") == 0, "every row done, nothing dead")
    check("refused extra associations" in log[0], "the log says the peer refused associations")
    check("destination unavailable" not in log[0],
          "a peer that is up (at most busy at its association limit) is never called unavailable")
    n, t0 = 0, time.time()
    while time.time() - t0 < 30:  # the index follows the acknowledgements by a moment
        n = rd.query("SELECT COUNT(*) FROM instances")[0][0]
        if n >= len(paths):
            break
        time.sleep(0.2)
    check(n == len(paths), "radprepd has %d instances, want %d" % (n, len(paths)))
    rd.stop()


ORTHANC_PYTHON = "/usr/lib/orthanc/libOrthancPython.so.4.0"  # Debian's orthanc-python


def scripted_orthanc(tmp, name, script):
    """Orthanc whose C-STORE answers are decided by `script`, a Python plugin registering an
    incoming C-STORE filter (the Lua hook of Orthanc 1.10 cannot return a status)."""
    check(os.path.exists(ORTHANC_PYTHON), "orthanc-python is not installed: " + ORTHANC_PYTHON)
    path = os.path.join(tmp, name + ".py")
    with open(path, "w") as f:
        f.write("import json\nimport time\nimport orthanc\n\n" + script +
                "\northanc.RegisterIncomingCStoreInstanceFilter(cstore_filter)\n")
    return rptest.Orthanc(os.path.join(tmp, name), name, config={
        "DicomAlwaysAllowStore": True, "Plugins": [ORTHANC_PYTHON],
        "PythonScript": path}).start()


def scenario_instance_failures(tmp, paths):
    uids = [sop_uid(p) for p in paths]
    bad, few, busy = uids[5], uids[50], uids[100]
    orth = scripted_orthanc(tmp, "orthanc_status", """
tries = [0]


def cstore_filter(dicom):
    uid = json.loads(dicom.GetInstanceSimplifiedJson())["SOPInstanceUID"]
    if uid == %r:
        return 0xC000  # cannot understand
    if uid == %r:
        return 0x0110  # processing failure
    if uid == %r:
        tries[0] += 1
        if tries[0] <= 2:
            return 0xA700  # out of resources, twice
    return 0
""" % (bad, few, busy))
    conf = os.path.join(tmp, "status.ini")
    write_conf(conf, [("orthanc", "ORTHANC", orth.port)], "send_associations = 2\n")
    db = os.path.join(tmp, "status.db")
    log = []
    res = run_outbox(conf, db, 120, paths, env_extra=FAST, log=log)
    print("per-instance failures:", json.dumps(res))
    rows = outbox_rows(db)
    check(res.get("finished") == 1, "nothing left pending")
    check(rows[bad][0] == "dead" and rows[bad][1] == 1 and rows[bad][2] == 0xC000 and
          "0xc000" in rows[bad][3], "0xC000: dead at once with the status, got %s" % (rows[bad],))
    check(rows[few][0] == "dead" and rows[few][1] == 5 and "0x0110" in rows[few][3],
          "0x0110: dead after 5 attempts, got %s" % (rows[few],))
    check(rows[busy][0] == "done" and rows[busy][1] == 3,
          "0xA700 twice: done on the third attempt, got %s" % (rows[busy],))
    others = [u for u in uids if u not in (bad, few, busy)]
    check(all(rows[u][0] == "done" for u in others), "every other instance done")
    derived = [sop_uid(p) for p in paths if not p.endswith("seg.dcm")]
    check(all(rows[u][1] == 1 for u in derived if u in others),
          "no other image sent twice (attempts 1)")
    lines = log[0].splitlines()
    for u, status in ((bad, "0xc000"), (few, "0x0110")):
        check(any("instance not sent" in l and "outbox_id=%d " % rows[u][4] in l and
                  "outcome=dead" in l and status in l for l in lines),
              "a log line says why %s went dead (%s)" % (u, status))
    check(any("instance not sent" in l and "outbox_id=%d " % rows[few][4] in l and
              "outcome=retry" in l for l in lines), "a log line for each retry of 0x0110")
    check(any("destination busy" in l and "0xa700" in l for l in lines),
          "a log line says the destination was out of resources (0xA700) and backs off")
    check(orthanc_uids(orth) == set(others) | {busy}, "Orthanc has exactly the sent ones")
    orth.stop()


def scenario_gone_midseries(tmp, paths):
    # 40 ms more per instance, so that the series is still on its way when Orthanc is killed
    orth = scripted_orthanc(tmp, "orthanc_gone", """
def cstore_filter(dicom):
    time.sleep(0.04)
    return 0
""")
    conf = os.path.join(tmp, "gone.ini")
    write_conf(conf, [("orthanc", "ORTHANC", orth.port)], "send_associations = 2\n")
    db = os.path.join(tmp, "gone.db")
    env = dict(os.environ, **FAST)
    drv = subprocess.Popen([rptest.unit_test_bin("test_outbox"), "--send", conf, db, "12",
                            *paths], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env)
    t0 = time.time()
    n = 0
    while time.time() - t0 < 60:
        n = orth.rest("/statistics")["CountInstances"]
        if n >= 10:
            break
        time.sleep(0.02)
    orth.proc.kill()
    orth.proc.wait()
    out, err = drv.communicate(timeout=120)
    print("killed Orthanc at %d instances; driver: %s" % (n, out.strip()[-300:]))
    check(10 <= n < len(paths), "killed mid-series (%d of %d)" % (n, len(paths)))
    rows = outbox_rows(db)
    done = {u for u, r in rows.items() if r[0] == "done"}
    states = sorted({r[0] for r in rows.values()})
    check(not [u for u, r in rows.items() if r[0] in ("dead", "sending")],
          "nothing dead or left sending: %s" % states)
    check(0 < len(done) < len(paths), "some done, the rest pending (%d done)" % len(done))
    check("destination unavailable" in err, "the log says the destination went away")
    orth.config["Plugins"] = []
    orth.start()
    stored = orthanc_uids(orth)
    check(done <= stored, "every row reported done is in the PACS (%d not)" % len(done - stored))
    res = run_outbox(conf, db, 120, paths, env_extra=FAST)
    print("after restart:", json.dumps(res))
    check(res.get("queued") == 0 and res.get("finished") == 1 and
          res.get("done") == len(paths), "the rest delivered")
    check(orthanc_uids(orth) == {sop_uid(p) for p in paths} and
          len(orth.rest("/instances")) == len(paths), "exactly once in the PACS")
    orth.stop()


def pixels(path):
    return pydicom.dcmread(path).PixelData


def scenario_syntax(tmp):
    d = rptest.data_path("compressed")
    jpeg_ll = os.path.join(d, "ts_same_image_9_syntaxes", "5.dcm")
    jpeg_lossy = os.path.join(d, "single_files", "xa_96frame_jpeg_baseline_8bit.dcm")
    j2k = os.path.join(d, "ts_same_image_9_syntaxes", "9.dcm")
    for f in (jpeg_ll, jpeg_lossy, j2k):
        check(os.path.exists(f), "missing shared data " + f)
    port = rptest.free_port()
    out = os.path.join(tmp, "implicit_only")
    scp = start_storescp(port, out, ("+xi",))
    conf = os.path.join(tmp, "syntax.ini")
    write_conf(conf, [("implicit", "STORESCP", port)])
    db = os.path.join(tmp, "syntax.db")
    log = []
    res = run_outbox(conf, db, 60, [jpeg_ll, jpeg_lossy, j2k], env_extra=FAST, log=log)
    rptest.stop_process(scp, 10)
    print("implicit-only peer:", json.dumps(res))
    rows = outbox_rows(db)
    check(rows[sop_uid(jpeg_ll)][0] == "done" and rows[sop_uid(jpeg_lossy)][0] == "done",
          "JPEG lossless and baseline sent (decompressed)")
    r = rows[sop_uid(j2k)]
    check(r[0] == "dead" and r[1] == 1 and "JPEG 2000" in r[3] and "decoder" in r[3],
          "JPEG 2000: dead at once saying why, got %s" % (r,))
    check("JPEG 2000" in log[0], "a log line says why")
    got = {}
    for f in os.listdir(out):
        ds = pydicom.dcmread(os.path.join(out, f))
        got[str(ds.SOPInstanceUID)] = (os.path.join(out, f), ds.file_meta.TransferSyntaxUID)
    check(len(got) == 2 and all(ts == "1.2.840.10008.1.2" for _, ts in got.values()),
          "what arrived is implicit VR little endian: %s" % [t for _, t in got.values()])
    ref = os.path.join(tmp, "jpeg_ll_decoded.dcm")
    subprocess.run(["dcmdjpeg", jpeg_ll, ref], check=True)
    if sop_uid(jpeg_ll) in got:
        check(pixels(got[sop_uid(jpeg_ll)][0]) == pixels(ref),
              "lossless JPEG: pixels identical to dcmdjpeg's decoding")


def main():
    """test_outbox.py [SCENARIO...]: all of them, or those named (e.g. parallel narrowed)."""
    only = set(sys.argv[1:])
    tmp = rptest.tempdir("rp_outbox")
    for name, fn in (("rejected", scenario_rejected), ("absent", scenario_absent_then_started),
                     ("syntax", scenario_syntax)):
        if not only or name in only:
            fn(tmp)
    series = (("destinations", lambda t, p, s: scenario_destinations(t, p, s)),
              ("parallel", lambda t, p, s: scenario_parallel(t, p)),
              ("narrowed", lambda t, p, s: scenario_narrowed(t, p)),
              ("failures", lambda t, p, s: scenario_instance_failures(t, p)),
              ("gone", lambda t, p, s: scenario_gone_midseries(t, p)))
    if not only or only & {n for n, _ in series}:
        paths, src = make_derived(tmp)
        for name, fn in series:
            if not only or name in only:
                fn(tmp, paths, src)
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
