#!/usr/bin/python3
"""End to end, results per destination: storescu -> radprepd -> job -> overlay + SR + SEG.

radprepd gets a CT rule with outputs "nifti json seg overlay sr" and send_to two destinations:
- "archive": Orthanc with results = seg overlay sr. Checked through its REST API: the SEG, the
  SR and the overlay (multi-frame true colour SC) are all stored in the source study;
- "sconly": a dcmtk storescp that accepts Secondary Capture only (association profile), with
  results = seg. It refuses the SEG's SOP class at association time, so the outbox sends the
  overlay instead, once: storescp holds exactly one file (the overlay), the outbox has one dead
  row (the SEG) whose reason says it was substituted by the overlay, nothing left pending.
"""
import os
import re
import subprocess
import sys
import time

import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

QUIET_S = 2
MF_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
SC_ONLY_CFG = r"""[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[SC]
PresentationContext1 = SecondaryCaptureImageStorage\Uncompressed
PresentationContext2 = MultiframeTrueColorSecondaryCaptureImageStorage\Uncompressed
[[Profiles]]
[SConly]
PresentationContexts = SC
"""


def start_sc_only(d):
    """storescp that negotiates Secondary Capture only (rptest.StoreSCP accepts everything)."""
    os.makedirs(os.path.join(d, "recv"), exist_ok=True)
    cfg = os.path.join(d, "sconly.cfg")
    with open(cfg, "w") as f:
        f.write(SC_ONLY_CFG)
    port = rptest.free_port()
    log = open(os.path.join(d, "storescp.log"), "wb")
    proc = rptest.spawn(["storescp", "-aet", "SCONLY", "-od", os.path.join(d, "recv"), "-xf",
                         cfg, "SConly", str(port)], stdout=log, stderr=subprocess.STDOUT,
                        env=dict(os.environ, LD_PRELOAD=rptest.bind_loopback_shim()))
    if not rptest.wait_for_port(port, 10, proc):
        raise RuntimeError("storescp (SC only) did not start")
    return proc, port


def main():
    rptest.require_built(rptest.radprepd_bin(), rptest.radprep_bin())
    files = rptest.data_files("seg_with_source_ct", "ct_3slice", pattern="*.dcm")
    tmp = rptest.tempdir("rp_results_e2e")
    orth = rptest.Orthanc(os.path.join(tmp, "orthanc"), "results").start()
    scp, scp_port = start_sc_only(tmp)
    node = rptest.Radprepd(
        workdir=tmp, node={"workers": 1},
        peers={"scanner": {"ae_title": "STORESCU"},
               "archive": {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orth.port,
                           "destination": True, "results": "seg overlay sr"},
               "sconly": {"ae_title": "SCONLY", "host": "127.0.0.1", "port": scp_port,
                          "destination": True, "results": "seg"}},
        extra={"completion CT": {"quiet_s": QUIET_S},
               "rule results": {"modality": "CT", "steps": "hu bodymask",
                                "outputs": "nifti json seg overlay sr",
                                "send_to": "archive sconly", "priority": 100}})
    node.start()
    try:
        src = pydicom.dcmread(files[0], stop_before_pixels=True)
        r = rptest.storescu(node.port, files, aet="STORESCU", no_halt=False)
        t_last = time.time()
        check(r.rc == 0, "storescu into radprepd failed: " + r.out[-800:])
        rest = orth.rest
        want = {"SEG", "SR", "OVERLAY"}
        got = {}
        recv = os.path.join(tmp, "recv")
        deadline = t_last + float(os.environ.get("RP_E2E_WAIT_S", "180"))
        while time.time() < deadline:
            got = {}
            for s in rest("/series"):
                ser = rest("/series/%s" % s)
                mod = ser["MainDicomTags"].get("Modality")
                if ser["Instances"]:
                    tags = rest("/instances/%s/simplified-tags" % ser["Instances"][0])
                    if tags.get("SOPClassUID") == MF_TRUE_COLOR_SC:
                        mod = "OVERLAY"
                    got[mod] = (ser, tags)
            if want <= set(got) and os.listdir(recv):
                break
            time.sleep(0.3)
        check(want <= set(got), "Orthanc holds %s, want SEG, SR and the overlay" % sorted(got))
        t_found = time.time()
        for kind in sorted(want & set(got)):
            ser, tags = got[kind]
            study = rest("/studies/%s" % ser["ParentStudy"])
            check(study["MainDicomTags"]["StudyInstanceUID"] == src.StudyInstanceUID,
                  "%s stored in the source study" % kind)
        if "OVERLAY" in got:
            t = got["OVERLAY"][1]
            check(t.get("BurnedInAnnotation") == "YES", "overlay: Burned In Annotation YES")
            check("overlay [radprep: results]" in t.get("SeriesDescription", ""),
                  "overlay series description: %r" % t.get("SeriesDescription"))
        if "SR" in got:
            t = got["SR"][1]
            check(t.get("SOPClassUID", "").startswith("1.2.840.10008.5.1.4.1.1.88."), "SR class")
        print("Orthanc: %s in the source study, %.2f s after the last source instance"
              % (", ".join(sorted(got)), t_found - t_last))

        # the SC-only destination: the overlay instead of the SEG, once
        time.sleep(2.0)  # let a (wrong) second substitution show up, if there were one
        rec = sorted(os.listdir(recv))
        check(len(rec) == 1, "SC-only destination got %d files, want 1 (the overlay): %s"
              % (len(rec), rec))
        for fn in rec:
            ds = pydicom.dcmread(os.path.join(recv, fn), stop_before_pixels=True)
            check(ds.SOPClassUID == MF_TRUE_COLOR_SC, "SC-only got %s" % ds.SOPClassUID)
        out = rptest.run_radprep("-c", node.config_path, "outbox")
        check(out.returncode == 0, "radprep outbox failed: " + out.stderr[-500:])
        lines = out.stdout.splitlines()
        dead = [l for l in lines if " dead " in l]
        pending = [l for l in lines if " pending " in l or " sending " in l]
        check(len(dead) == 1 and "sconly" in dead[0], "one dead row, for sconly: %s" % dead)
        check(len(pending) == 0, "nothing left pending: %s" % pending)
        text = node.log()
        subs = re.findall(r"outbox: result substituted destination=(\S+) refused=(\S+) "
                          r"substitute=overlay", text)
        check(subs == [("sconly", "seg")], "one substitution logged: %s" % subs)
        check("substituted by overlay" in open(node.log_path, errors="replace").read(),
              "the dead row's reason says substituted by overlay")
        print("sconly: received %s; dead rows: %d; substitutions: %s" % (rec, len(dead), subs))
    finally:
        node.stop()
        orth.stop()
        rptest.stop_process(scp)
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
