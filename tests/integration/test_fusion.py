"""Study-level fusion in the node: the real Siemens XA30 study (T1 MPRAGE 5001 and the gre field
map 9001, one frame of reference) sent with storescu to radprepd with two [fusion] rules:
  t1fmap  = T1 + FIELDMAP, layout both: when both series complete, one job "fuse:t1fmap" runs
            and writes outputs/<study>/fusion-t1fmap/v1/ (4-D NIfTI + nnU-Net channels +
            sidecar naming the member series and versions); every channel has the T1's own
            affine (as `radprep process` writes the T1 alone) and holds data;
  t1t2      = T1 + T2 (the study has no T2): reported once as "fuse: missing sequence T2"
            (event fuse_missing), nothing guessed, no job.
Then: the operator trigger (`radprep fuse`) on the same versions queues nothing new; an
instance that reopens the field map gives, once complete again, version 2; `radprep process
DIR --fusion` on the folder gives the same image as the node; bad [fusion] keys are
FILE:LINE errors."""
import json
import os
import sys
import time

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

STUDY = rptest.data_path("mr_brain_siemens_xa30")
T1 = os.path.join(STUDY, "5001_anat-T1w_acq-tfl")
FMAP = os.path.join(STUDY, "9001_gre_field_mapping")

FUSIONS = {
    "fusion t1fmap": {"sequences": "T1 FIELDMAP", "reference": "T1", "layout": "both"},
    "fusion t1t2": {"sequences": "T1 T2"},
}


def run(args):
    return rptest.run_radprep(*args)


def wait_for(fn, timeout, what, node):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.3)
    raise AssertionError("timed out waiting for %s\n%s" % (what, node.log_tail(60)))


def check_config_errors(tmp):
    cases = [
        ("sequences = T1 T2\nT3.te_ms = 1..2\n", ":3: T3.te_ms: sequence 'T3' is not in"),
        ("sequences = T1 T2\nT2.te_ms = 9..2\n", ":3: T2.te_ms: expected LO..HI"),
        ("sequences = T1 FOO\n", ":1: fusion x: sequence FOO has no built-in matcher"),
        ("sequences = T1\nlayout = zip\n", ":3: layout: 'zip' is not one of"),
        ("sequences = T1\nreference = T2\n", ":3: reference: 'T2' is not one of"),
        ("sequences = T1\nnormalize = foreground nosuchstep\n", ":3: fusion x: normalize:"),
    ]
    for body, want in cases:
        p = os.path.join(tmp, "bad.ini")
        with open(p, "w") as f:
            f.write("[fusion x]\n" + body)
        r = run(["check-config", p])
        assert r.returncode == 2 and want in r.stderr, (body, r.stderr)
    p = os.path.join(tmp, "good.ini")
    with open(p, "w") as f:
        f.write("[fusion x]\nsequences = T1:*tfl* B0\nB0.description = *field*\n"
                "B0.te_ms = 1..20\nlayout = nnunet\nnormalize = none\n")
    r = run(["check-config", p])
    assert r.returncode == 0, r.stderr


def main():
    tmp = rptest.tempdir("rp_fusion")
    check_config_errors(tmp)
    t1_files = rptest.dicom_files(T1)
    fm_files = rptest.dicom_files(FMAP)
    study_uid = pydicom.dcmread(t1_files[0], stop_before_pixels=True).StudyInstanceUID
    fm_uid = pydicom.dcmread(fm_files[0], stop_before_pixels=True).SeriesInstanceUID

    # the reference affine: the T1 alone through `radprep process`
    ref_dir = os.path.join(tmp, "t1alone")
    r = run(["process", T1, "--out", ref_dir])
    assert r.returncode == 0, r.stderr
    ref_nii = [f for f in os.listdir(ref_dir) if f.endswith(".nii.gz")][0]
    ref = nib.load(os.path.join(ref_dir, ref_nii))

    extra = {"completion MR": {"quiet_s": 2, "use_expected_count": "no"}}
    extra.update(FUSIONS)
    node = rptest.Radprepd(extra=extra)
    node.start()
    try:
        res = rptest.storescu(node.port, t1_files + fm_files)
        assert res.rc == 0, res.out[-2000:]
        out_root = os.path.join(node.data_dir, "outputs", study_uid, "fusion-t1fmap")
        v1 = os.path.join(out_root, "v1")
        wait_for(lambda: os.path.exists(os.path.join(v1, "t1fmap.json")), 120, "fusion v1", node)
        jobs = node.query("SELECT id, state, rule, study_uid, version FROM jobs"
                          " WHERE kind = 'fuse'")
        assert len(jobs) == 1 and jobs[0][2] == "t1fmap" and jobs[0][3] == study_uid, jobs
        wait_for(lambda: node.query("SELECT state FROM jobs WHERE id=?", (jobs[0][0],))[0][0]
                 == "done", 60, "fusion job done", node)
        # `radprep jobs` shows the fusion job as it always has: kind fuse:RULE, on the study
        r = run(["--config", node.config_path, "jobs", "--series", study_uid, "--json"])
        listed = [j for j in json.loads(r.stdout) if j["id"] == jobs[0][0]]
        assert r.returncode == 0 and len(listed) == 1, (r.stdout, r.stderr)
        assert listed[0]["kind"] == "fuse:t1fmap" and listed[0]["series_uid"] == study_uid, listed
        assert listed[0]["state"] == "done" and listed[0]["version"] == 1, listed

        img = nib.load(os.path.join(v1, "t1fmap.nii.gz"))
        data = img.get_fdata()
        assert data.shape == ref.shape + (2,), (data.shape, ref.shape)
        assert np.allclose(img.affine, ref.affine, atol=1e-4), (img.affine, ref.affine)
        for c, name in enumerate(["T1", "FIELDMAP"]):
            ch = nib.load(os.path.join(v1, "nnunet", "t1fmap_%04d.nii.gz" % c))
            assert np.allclose(ch.affine, ref.affine, atol=1e-4), name
            assert np.array_equal(ch.get_fdata(), data[..., c]), name
            nz = int((data[..., c] != 0).sum())
            print("channel %d (%s): %d voxels with data, mean %.3f sd %.3f" % (
                c, name, nz, data[..., c].mean(), data[..., c].std()))
            assert nz > 10000, name
        side = json.load(open(os.path.join(v1, "t1fmap.json")))
        members = side["Node"]["members"]
        assert [m["sequence"] for m in members] == ["T1", "FIELDMAP"], members
        assert members[1]["series_uid"] == fm_uid and members[1]["series_version"] == 1
        assert [c["SeriesNumber"] for c in side["Channels"]] == [5001, 9001], side["Channels"]
        assert side["Channels"][0]["steps"][0]["step"] == "foreground"
        assert side["Reference"] == "T1" and side["FrameOfReferenceUID"]
        outs = node.query("SELECT COUNT(*) FROM outputs WHERE job_fk=?", (jobs[0][0],))[0][0]
        assert outs == 4, outs  # 4-D, two channels, sidecar

        # the rule whose T2 is absent: reported once, no job
        miss = node.query("SELECT detail FROM events WHERE kind='fuse_missing'")
        assert len(miss) == 1 and "rule=t1t2" in miss[0][0] and "missing=T2" in miss[0][0], miss
        assert "fuse: missing sequence T2" in node.log()
        assert not node.query("SELECT id FROM jobs WHERE kind='fuse' AND rule='t1t2'")

        # operator trigger on the same versions: nothing new; for t1t2: the reason, exit 1
        r = run(["--config", node.config_path, "fuse", "--rule", "t1fmap", "--study", study_uid])
        assert r.returncode == 0 and "already" in r.stdout, (r.stdout, r.stderr)
        r = run(["--config", node.config_path, "fuse", "--rule", "t1t2", "--study", study_uid])
        assert r.returncode == 1 and "missing sequence T2" in r.stderr, r.stderr
        assert len(node.query("SELECT id FROM jobs WHERE kind = 'fuse'")) == 1

        # a new field map instance reopens that series: once complete again, version 2
        ds = pydicom.dcmread(fm_files[0])
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = 9999
        extra_file = os.path.join(tmp, "extra.dcm")
        ds.save_as(extra_file)
        res = rptest.storescu(node.port, [extra_file])
        assert res.rc == 0, res.out[-2000:]
        v2 = os.path.join(out_root, "v2")
        wait_for(lambda: os.path.exists(os.path.join(v2, "t1fmap.json")), 120, "fusion v2", node)
        side2 = json.load(open(os.path.join(v2, "t1fmap.json")))
        assert side2["Node"]["members"][1]["series_version"] == 2, side2["Node"]
        assert os.path.exists(os.path.join(v1, "t1fmap.nii.gz")), "v1 must stay"
    finally:
        node.stop()

    # the same rule on the folder, without a node: the same image as v1
    ini = os.path.join(tmp, "folder.ini")
    rptest.write_ini(ini, FUSIONS)
    out = os.path.join(tmp, "folder")
    r = run(["--config", ini, "process", T1, FMAP, "--fusion", "t1fmap", "--out", out])
    assert r.returncode == 0, r.stderr
    a = nib.load(os.path.join(out, "t1fmap.nii.gz")).get_fdata()
    assert np.array_equal(a, data), "folder fusion differs from the node's"
    r = run(["--config", ini, "process", STUDY, "--fusion", "t1t2", "--out",
             os.path.join(tmp, "f2")])
    assert r.returncode == 1 and "missing sequence T2" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(tmp, "f2", "t1t2.nii.gz"))
    print("ok")


if __name__ == "__main__":
    main()
