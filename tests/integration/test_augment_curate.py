"""`radprep curate --augment "SPEC" --copies N --seed S`: reproducible offline augmentation of the
training split.

An outputs folder of phantom cases as `radprep process` writes them (image NIfTI, a label mask
`_mask-lesion`, a sidecar whose recipe resampled with bspline3) is curated with a split:
  - only training cases get copies (N each, "<case>_augNN", split train); val and test never;
  - the manifest lists every copy's drawn parameters (and the sidecar of the copy too);
  - for the spatial transforms (rotation, zoom, flips, elastic), the mask of the augmented image
    (threshold of the phantom, whose label is known) equals the augmented mask: Dice >= 0.99;
  - two runs with the same seed give byte-identical datasets; another seed gives other copies;
  - the nnU-Net layout puts the copies in imagesTr/labelsTr and in the training fold;
  - bad usage is refused with a reason.
"""
import glob
import hashlib
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

SPATIAL = "rotate(12) scale(0.1) flip(x) elastic(5,25)"
FULL = SPATIAL + " gamma(0.8,1.25) noise(3) bias(0.2)"


def make_case(root, k, rng):
    """A blob phantom: image 100 inside the label, 0 outside (+ a smooth background ramp so the
    image is not binary), 1.2x1.2x2 mm, the label as `_mask-lesion`."""
    d = os.path.join(root, "study%d" % k, "series", "v1")
    os.makedirs(d)
    nx, ny, nz = 64, 72, 40
    zz, yy, xx = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    c = np.array([nx / 2, ny / 2, nz / 2]) + rng.uniform(-4, 4, 3)
    ax = rng.uniform(12, 20, 3)
    r = ((xx - c[0]) / ax[0]) ** 2 + ((yy - c[1]) / ax[1]) ** 2 + ((zz - c[2]) / (ax[2] / 1.7)) ** 2
    lab = (r < 1).astype(np.uint8)
    lab[(xx > c[0]) & (r < 1) & (zz > c[2])] = 1  # keep it one label, one blob
    img = 100.0 * lab
    aff = np.diag([1.2, 1.2, 2.0, 1.0])
    aff[:3, 3] = [-38.0, -43.0, -40.0]
    stem = "%d_MR" % (k + 1)
    nib.save(nib.Nifti1Image(img.transpose(2, 1, 0).astype(np.float32), aff),
             os.path.join(d, stem + ".nii.gz"))
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), aff),
             os.path.join(d, stem + "_mask-lesion.nii.gz"))
    side = {"Modality": "MR",
            "Provenance": {"StudyInstanceUID": "1.2.826.0.1.3680043.2.1125.7.%d" % k,
                           "SeriesInstanceUID": "1.2.826.0.1.3680043.2.1125.8.%d" % k,
                           "Recipe": {"text": "resample(1.2,1.2,2,bspline3)", "hash": "x" * 64,
                                      "steps": [{"step": "resample",
                                                 "params": {"interpolation": "bspline3"}}]}}}
    json.dump(side, open(os.path.join(d, stem + ".json"), "w"))


def run(args):
    return subprocess.run([rptest.radprep_bin(), "curate"] + args, capture_output=True,
                          text=True, timeout=900)


def dataset_digest(ds):
    h = {}
    for p in sorted(glob.glob(os.path.join(ds, "**", "*"), recursive=True)):
        if os.path.isfile(p) and not p.endswith(".salt"):
            h[os.path.relpath(p, ds)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return h


def load(p):
    return np.asarray(nib.load(p).dataobj)


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def main():
    tmp = rptest.tempdir("rp_augment")
    outputs = os.path.join(tmp, "outputs")
    rng = np.random.default_rng(5)
    for k in range(8):
        make_case(outputs, k, rng)
    salt = os.path.join(tmp, "salt")
    open(salt, "w").write("00112233445566778899aabbccddeeff\n")
    common = ["--from-dir", outputs, "--split", "train=0.5,val=0.25,test=0.25", "--seed", "7",
              "--salt-file", salt, "--no-timestamp"]

    # spatial transforms: image and mask stay aligned
    ds = os.path.join(tmp, "ds_spatial")
    r = run(["--out", ds, "--augment", SPATIAL, "--copies", "2"] + common)
    assert r.returncode == 0, r.stderr
    man = json.load(open(os.path.join(ds, "manifest.json")))
    cases = {c["case"]: c for c in man["cases"]}
    orig = [c for c in man["cases"] if "augmented" not in c]
    aug = [c for c in man["cases"] if "augmented" in c]
    train = [c["case"] for c in orig if c["split"] == "train"]
    other = [c["case"] for c in orig if c["split"] != "train"]
    print("%d cases: %d train, %d val/test; %d augmented copies" %
          (len(orig), len(train), len(other), len(aug)))
    assert len(orig) == 8 and train and other
    assert len(aug) == 2 * len(train), (len(aug), len(train))
    assert man["n_cases"] == len(man["cases"])
    for c in aug:
        a = c["augmented"]
        assert a["from"] in train and c["split"] == "train", c
        assert c["case"] == "%s_aug%02d" % (a["from"], a["copy"])
        p = a["parameters"]
        for key in ("rotate_deg", "scale", "flip", "elastic"):
            assert key in p, p
        assert p["interpolation"] == "bspline3", p  # the rule's interpolation
        assert a["spec"] == SPATIAL
        side = json.load(open(os.path.join(ds, c["sidecar"]["path"])))
        assert side["Augmentation"]["parameters"] == p
        img = load(os.path.join(ds, c["image"]["path"]))
        msk = load(os.path.join(ds, c["masks"]["lesion"]["path"]))
        src = load(os.path.join(ds, cases[a["from"]]["masks"]["lesion"]["path"]))
        assert img.shape == msk.shape == src.shape and msk.dtype == np.uint8
        d = dice(img > 50, msk > 0)
        print("  %s: rotate %s scale %.3f flip %s -> Dice(image > 50, mask) = %.4f, mask "
              "%d -> %d voxels" % (c["case"], p["rotate_deg"], p["scale"], p["flip"], d,
                                   int(src.sum()), int(msk.sum())))
        assert d >= 0.99, d
        assert not np.array_equal(msk, src), "the copy did not move"
    for name in other:
        assert not any(c["augmented"]["from"] == name for c in aug), name
        assert not glob.glob(os.path.join(ds, "cases", name + "_aug*"))

    # the full SPEC twice with the same seed: the same bytes; another seed: other copies
    # (the same --out twice: the dataset's name is its folder's)
    d1, d3 = os.path.join(tmp, "full"), os.path.join(tmp, "full3")
    r = run(["--out", d1, "--augment", FULL, "--copies", "2"] + common)
    assert r.returncode == 0, r.stderr
    h1 = dataset_digest(d1)
    r = run(["--out", d1, "--augment", FULL, "--copies", "2"] + common)
    assert r.returncode == 0, r.stderr
    h2 = dataset_digest(d1)
    assert h1 == h2, "two runs with the same seed differ"
    print("same seed: %d files byte-identical" % len(h1))
    r = run(["--out", d3, "--augment", FULL, "--copies", "2"] +
            [a if a != "7" else "8" for a in common])
    assert r.returncode == 0, r.stderr
    m3 = json.load(open(os.path.join(d3, "manifest.json")))
    p1 = [c["augmented"]["parameters"] for c in json.load(open(os.path.join(d1, "manifest.json")))
          ["cases"] if "augmented" in c]
    p3 = [c["augmented"]["parameters"] for c in m3["cases"] if "augmented" in c]
    assert p1 != p3
    full = json.load(open(os.path.join(d1, "manifest.json")))
    for c in full["cases"]:
        if "augmented" in c:
            p = c["augmented"]["parameters"]
            for key in ("gamma", "noise", "bias"):
                assert key in p, p

    # nnU-Net layout: copies are training images with their label, in the training fold
    dn = os.path.join(tmp, "nnunet")
    r = run(["--out", dn, "--layout", "nnunet", "--label", "lesion", "--augment", SPATIAL] +
            common)
    assert r.returncode == 0, r.stderr
    man = json.load(open(os.path.join(dn, "manifest.json")))
    aug = [c for c in man["cases"] if "augmented" in c]
    split = json.load(open(os.path.join(dn, "splits_final.json")))[0]
    for c in aug:
        assert c["image"]["path"] == "imagesTr/%s_0000.nii.gz" % c["case"], c["image"]
        assert os.path.exists(os.path.join(dn, "labelsTr", c["case"] + ".nii.gz"))
        assert c["case"] in split["train"] and c["case"] not in split["val"]
    dj = json.load(open(os.path.join(dn, "dataset.json")))
    assert dj["numTraining"] == len([c for c in man["cases"] if c["split"] != "test"])

    # bad usage
    r = run(["--out", os.path.join(tmp, "b1"), "--from-dir", outputs, "--augment", SPATIAL])
    assert r.returncode == 2 and "'train' part" in r.stderr, r.stderr
    r = run(["--out", os.path.join(tmp, "b2"), "--augment", "spin(3)"] + common)
    assert r.returncode == 2 and "unknown transform 'spin'" in r.stderr, r.stderr
    r = run(["--out", os.path.join(tmp, "b3"), "--copies", "3"] + common)
    assert r.returncode == 2 and "--copies goes with --augment" in r.stderr, r.stderr
    r = run(["--out", os.path.join(tmp, "b4"), "--augment", SPATIAL, "--copies", "0"] + common)
    assert r.returncode == 2 and "--copies wants 1..99" in r.stderr, r.stderr
    print("ok")


if __name__ == "__main__":
    main()
