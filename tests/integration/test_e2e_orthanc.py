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
import os
import re
import sys
import time

import pydicom

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

QUIET_S = 2


def run_case(tmp, name, files, steps):
    d = os.path.join(tmp, name)
    orth = rptest.Orthanc(os.path.join(d, "orthanc"), name).start()
    node = rptest.Radprepd(
        workdir=d, node={"workers": 1},
        peers={"scanner": {"ae_title": "STORESCU"},
               "archive": {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orth.port,
                           "destination": True}},
        extra={"completion CT": {"quiet_s": QUIET_S},
               "rule e2e_ct": {"modality": "CT", "steps": steps,
                               "outputs": "nifti json dicom seg", "send_to": "archive",
                               "priority": 100}})
    node.start()
    try:
        run_checks(d, name, files, orth, node)
    finally:
        node.stop()
        orth.stop()
    # where the time went, from the node's own log lines
    text = node.log()
    job = re.findall(r"supervisor: job done .*?wall_s=([0-9.]+)", text)
    sent = re.findall(r"outbox: sent .*?instances=(\d+).*?seconds=([0-9.]+)", text)
    print("%s: job wall %s s; outbox batches (instances, s): %s" %
          (name, ",".join(job) or "?", ", ".join("(%s, %s)" % x for x in sent) or "?"))
    out = rptest.run_radprep("-c", node.config_path, "outbox", "--state", "dead")
    check(out.returncode == 0, "radprep outbox failed")
    check(len([l for l in out.stdout.splitlines() if " dead " in l]) == 0, "no dead rows")


def run_checks(d, name, files, orth, node):
    rest = orth.rest
    t0 = time.time()
    r = rptest.storescu(node.port, files, aet="STORESCU", no_halt=False)
    t_last = time.time()
    check(r.rc == 0, "storescu into radprepd failed: " + r.out[-800:])
    src = pydicom.dcmread(files[0], stop_before_pixels=True)
    found = None
    deadline = t_last + float(os.environ.get("RP_E2E_WAIT_S", "180"))
    while time.time() < deadline and found is None:
        try:
            series = [rest("/series/%s" % s) for s in rest("/series")]
        except OSError:
            series = []
        ct = [s for s in series if s["MainDicomTags"].get("Modality") == "CT"]
        seg = [s for s in series if s["MainDicomTags"].get("Modality") == "SEG"]
        if ct and seg and ct[0].get("Status") != "Missing" and len(ct[0]["Instances"]) > 0:
            # wait until the count stops growing (a series arrives instance by instance)
            n1 = len(ct[0]["Instances"])
            time.sleep(0.3)
            if len(rest("/series/%s" % ct[0]["ID"])["Instances"]) == n1:
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
                  "log: %s)" % (os.environ.get("RP_E2E_WAIT_S", "180"), node.log_path))
    if found:
        t_found, ct, seg = found
        study = rest("/studies/%s" % ct["ParentStudy"])
        check(study["MainDicomTags"]["StudyInstanceUID"] == src.StudyInstanceUID, "same study")
        check(seg["ParentStudy"] == ct["ParentStudy"], "SEG in the same study")
        check(study["PatientMainDicomTags"].get("PatientID", "") == str(src.get("PatientID", "")),
              "same patient")
        check("radprep" in ct["MainDicomTags"].get("SeriesDescription", ""),
              "series description says radprep")
        inst = rest("/instances/%s/simplified-tags" % ct["Instances"][0])
        check(inst.get("ImageType", "").startswith("DERIVED\\SECONDARY"), "DERIVED\\SECONDARY")
        segt = rest("/instances/%s/tags?simplify" % seg["Instances"][0])
        check(segt["ReferencedSeriesSequence"][0]["SeriesInstanceUID"] == src.SeriesInstanceUID,
              "SEG references the source series")
        print("%s: %d source instances -> derived CT %d instances + SEG in Orthanc; "
              "store %.2f s, last source instance -> derived in Orthanc %.2f s "
              "(quiet_s = %d)" % (name, len(files), len(ct["Instances"]), t_last - t0,
                                  t_found - t_last, QUIET_S))


def main():
    rptest.require_built(rptest.radprepd_bin(), rptest.radprep_bin())
    tmp = rptest.tempdir("rp_e2e")
    run_case(tmp, "ct3", rptest.data_files("seg_with_source_ct", "ct_3slice", pattern="*.dcm"),
             "hu bodymask lungmask")
    run_case(tmp, "lidc", rptest.data_files("ct_chest_lidc0001", pattern="*.dcm", count=133),
             "hu bodymask lungmask")
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
