"""`radprep fit nyul` on synthetic MR series with known tissue classes, each "scanned" with a
different gain and a non-linear intensity response (value = gain * I^gamma): the model fitted
over four training series (--dir form, and the RULE form over the same series received by
radprepd: both give the same model), applied by `radprep process DIR --recipe "foreground
nyul(model=...)"` to a held-back series with another gain/response, puts its white-matter mean
within 5% of the standard-scale target (the WM mean of the standardised training series),
while the raw WM mean is far from it."""
import json
import os
import sys
import time

import nibabel as nib
import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

NX, NY, NZ = 64, 64, 40
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
# label: 0 background, 1 scalp, 2 CSF, 3 GM, 4 WM ; T1-like base intensities
BASE = {1: 0.55, 2: 0.22, 3: 0.5, 4: 0.8}


def phantom(seed):
    rng = np.random.default_rng(seed)
    s = 1.0 + 0.04 * rng.standard_normal(3)  # a slightly different head per subject
    z, y, x = np.meshgrid(np.arange(NZ), np.arange(NY), np.arange(NX), indexing="ij")
    cz, cy, cx = NZ / 2, NY / 2, NX / 2
    r = np.sqrt(((x - cx) / (28 * s[0])) ** 2 + ((y - cy) / (26 * s[1])) ** 2 +
                ((z - cz) / (17 * s[2])) ** 2)
    lab = np.zeros((NZ, NY, NX), np.uint8)
    lab[r < 1.0] = 1
    lab[r < 0.88] = 2
    lab[r < 0.82] = 3
    lab[r < 0.62] = 4
    vent = np.sqrt(((x - cx) / 5) ** 2 + ((y - cy) / 8) ** 2 + ((z - cz) / 5) ** 2) < 1
    lab[vent] = 2
    img = np.zeros(lab.shape)
    for k, v in BASE.items():
        img[lab == k] = v
    img *= 1 + 0.03 * rng.standard_normal(img.shape)
    return lab, np.clip(img, 0, None)


def write_series(folder, img, gain, gamma, study_uid, number, desc, seed):
    rng = np.random.default_rng(seed + 1000)
    os.makedirs(folder, exist_ok=True)
    vals = gain * np.power(img, gamma) * 1000.0
    vals[img > 0] += 0  # no offset: background stays dark
    vals = np.abs(vals + 4.0 * rng.standard_normal(vals.shape))  # Rician-like floor
    vals = np.clip(np.round(vals), 0, 65535).astype(np.uint16)
    series_uid = generate_uid()
    frame_uid = generate_uid()
    for k in range(NZ):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_STORAGE
        sop = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MR_STORAGE
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName = "Phantom^%d" % seed
        ds.PatientID = "PH%d" % seed
        ds.Modality = "MR"
        ds.SeriesNumber = number
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = desc
        ds.RepetitionTime = 2000
        ds.EchoTime = 3
        ds.InversionTime = 900
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-NX / 2.0, -NY / 2.0, float(k) * 2.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.SliceThickness = 2.0
        ds.Rows, ds.Columns = NY, NX
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = vals[k].tobytes()
        ds.save_as(os.path.join(folder, "IM%04d.dcm" % k), write_like_original=False)
    return folder


def to_output(a):
    """phantom array [z, row, col] -> radprep's NIfTI array [x, y, z] (rows written bottom-up)."""
    return np.transpose(a, (2, 1, 0))[:, ::-1, :]


def run(args, **kw):
    return rptest.run_radprep(*args, **kw)


def wm_mean(nifti, lab_out):
    v = nib.load(nifti).get_fdata()
    return float(v[lab_out == 4].mean())


def main():
    tmp = rptest.tempdir("rp_nyul_fit")
    study = generate_uid()
    # (gain, gamma) per "scanner": four training series and one held back
    scans = [(0.7, 1.0), (1.6, 0.85), (1.1, 1.2), (2.3, 0.95)]
    held = (0.45, 1.3)
    labs, dirs = [], []
    for i, (g, gm) in enumerate(scans + [held]):
        lab, img = phantom(i)
        labs.append(lab)
        d = write_series(os.path.join(tmp, "s%d" % i), img, g, gm, study, 10 + i,
                         "phantom t1 %d" % i, i)
        dirs.append(d)
    train, test_dir = dirs[:4], dirs[4]

    # geometry check of our label mapping against radprep's plain conversion
    r = run(["process", train[0], "--out", os.path.join(tmp, "raw0")])
    assert r.returncode == 0, r.stderr
    raw0 = [f for f in os.listdir(os.path.join(tmp, "raw0")) if f.endswith(".nii.gz")]
    raw = nib.load(os.path.join(tmp, "raw0", raw0[0])).get_fdata()
    assert raw.shape == (NX, NY, NZ), raw.shape
    wm = to_output(labs[0]) == 4
    assert raw[wm].mean() > 1.3 * raw[to_output(labs[0]) == 3].mean(), "label mapping is off"

    # --dir form
    model = os.path.join(tmp, "nyul.json")
    r = run(["fit", "nyul", "--dir"] + train + ["--out", model])
    print(r.stdout.strip())
    assert r.returncode == 0, r.stderr
    m = json.load(open(model))
    assert m["method"] == "nyul" and m["n_train"] == 4, m
    std = m["standard"]
    assert all(b > a for a, b in zip(std, std[1:])), std

    recipe = "foreground nyul(model=%s)" % model
    wm_std = []
    for i, d in enumerate(train + [test_dir]):
        out = os.path.join(tmp, "n%d" % i)
        r = run(["process", d, "--out", out, "--recipe", recipe])
        assert r.returncode == 0, r.stderr
        nii = [f for f in os.listdir(out) if f.endswith(".nii.gz") and "_mask-" not in f][0]
        wm_std.append(wm_mean(os.path.join(out, nii), to_output(labs[i])))
    target = float(np.mean(wm_std[:4]))
    raw_held = os.path.join(tmp, "rawheld")
    r = run(["process", test_dir, "--out", raw_held])
    assert r.returncode == 0, r.stderr
    nii = [f for f in os.listdir(raw_held) if f.endswith(".nii.gz")][0]
    raw_wm = wm_mean(os.path.join(raw_held, nii), to_output(labs[4]))
    got = wm_std[4]
    print("standard WM target %.3f (training %s); held-back raw WM %.1f -> standardised %.3f "
          "(%.2f%% off)" % (target, ["%.3f" % w for w in wm_std[:4]], raw_wm, got,
                            100 * abs(got - target) / target))
    assert abs(raw_wm - target) / target > 0.2, "the held-back series is already on the scale"
    assert abs(got - target) / target < 0.05, (got, target)

    # RULE form: the same series received by the node; the rule's steps before nyul run first
    rule_model = os.path.join(tmp, "rule_nyul.json")
    node = rptest.Radprepd(extra={
        "completion MR": {"quiet_s": 1, "use_expected_count": "no"},
        "rule phantom": {"modality": "MR", "series_description": "phantom*",
                         "steps": "foreground nyul(model=%s)" % rule_model, "priority": 10},
    })
    node.start()
    try:
        files = []
        for d in train:
            files += sorted(os.path.join(d, f) for f in os.listdir(d))
        res = rptest.storescu(node.port, files)
        assert res.rc == 0, res.out[-2000:]
        end = time.time() + 60
        while time.time() < end:
            states = node.query("SELECT state FROM series")
            if len(states) == 4 and all(s[0] != "receiving" for s in states):
                break
            time.sleep(0.3)
        else:
            raise AssertionError("series did not complete: %s" % node.query(
                "SELECT state FROM series"))
        r = run(["--config", node.config_path, "fit", "nyul", "phantom"])
        print(r.stdout.strip())
        assert r.returncode == 0, r.stderr
        m2 = json.load(open(rule_model))
        assert m2["n_train"] == 4, m2
        assert np.allclose(m2["standard"], std, rtol=1e-9, atol=1e-9), (m2["standard"], std)
        r = run(["--config", node.config_path, "fit", "nyul", "phantom", "--max", "2",
                 "--out", os.path.join(tmp, "two.json")])
        assert r.returncode == 0 and json.load(open(os.path.join(tmp, "two.json")))["n_train"] == 2
        # usage errors are exit 2 with a reason
        r = run(["--config", node.config_path, "fit", "nyul", "nosuchrule"])
        assert r.returncode == 2 and "nosuchrule" in r.stderr, r.stderr
    finally:
        node.stop()
    print("ok")


if __name__ == "__main__":
    main()
