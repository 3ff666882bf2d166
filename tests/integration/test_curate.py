#!/usr/bin/python3
"""`radprep curate`: datasets with manifests from real outputs.

From an outputs folder (`radprep process` on three real series: the GE head CT with tilt,
the 3-slice CT of the SEG set, a Siemens MR field map; processed with --privacy sidecar so
the sidecars DO carry patient name/ID):
  - plain layout: one case per series, manifest.json/.csv rows (modality, recipe hash, shape,
    spacing from the NIfTI, mask volumes from the sidecar), every sha256 right, files are
    hard links (same inode) by default and copies with --copy;
  - pseudonymity: case ids are salted hashes (same salt -> same ids), no patient name/ID in
    any file of the dataset (sidecars rewritten), --deidentify drops every UID too;
  - determinism: two runs with --no-timestamp give byte-identical trees, also into another
    folder with --salt-file; no temporary folder is left;
  - nnU-Net v2 layout: imagesTr/<case>_0000.nii.gz, labelsTr/<case>.nii.gz on the same grid,
    dataset.json (channel_names, labels, numTraining, file_ending), seeded splits;
  - errors: usage (exit 2), refusing to overwrite a folder that is not a dataset, nothing
    matching (exit 1), one line on stderr each.
From the index of a running node (storescu -> radprepd -> jobs): the done version of each
series, rule name from the job, checksums equal to the outputs table; a file changed after
the job recorded it makes curate fail (exit 1) with a checksum message.
"""
import csv
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import jobs_lib as rp  # noqa: E402
import rptest  # noqa: E402 (tests/lib, on the path through jobs_lib)
CT_RECIPE = "hu resample(2,2,2) bodymask clip(-1000,1000) normalize(minmax)"
SERIES = {  # key: (folder, recipe)
    "head": ("ct_head_gantry_tilt_uneven_ge", CT_RECIPE),
    "ct3": ("seg_with_source_ct/ct_3slice", CT_RECIPE),
    "mr": ("mr_brain_siemens_xa30/9001_gre_field_mapping", "foreground normalize(zscore)"),
}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_json(path):
    with open(path) as f:
        return json.load(f)


def read_text(path):
    with open(path) as f:
        return f.read()


def tree(root):
    """{relative path: sha256} of every file below root (hidden ones included)."""
    out = {}
    for dp, _, fns in os.walk(root):
        for fn in fns:
            p = os.path.join(dp, fn)
            out[os.path.relpath(p, root)] = sha256(p)
    return out


def expected_split(seed, case, splits):
    """The documented rule: u = sha256("seed:case")[:16 hex] / 2^64, first cumulative > u."""
    u = int(hashlib.sha256(("%d:%s" % (seed, case)).encode()).hexdigest()[:16], 16) / 2.0**64
    cum = 0.0
    for name, frac in splits[:-1]:
        cum += frac
        if u < cum:
            return name
    return splits[-1][0]


def curate(*args, check=None):
    r = rptest.run_radprep("curate", *args)
    if check is not None and r.returncode != check:
        raise AssertionError("radprep curate %s: rc=%d\n%s%s" % (
            " ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def header_info(folder):
    import pydicom
    d = rptest.data_path(folder)
    f = sorted(os.path.join(d, x) for x in os.listdir(d))[0]
    ds = pydicom.dcmread(f, stop_before_pixels=True)
    return {"study": str(ds.StudyInstanceUID), "series": str(ds.SeriesInstanceUID),
            "pid": str(ds.PatientID), "pname": str(ds.PatientName)}


class CurateFromDir(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="rp_curate_")
        cls.outputs = os.path.join(cls.tmp, "outputs")
        cls.info = {}
        for key, (folder, recipe) in SERIES.items():
            r = rptest.run_radprep("process", rptest.data_path(folder), "--out",
                                   os.path.join(cls.outputs, key), "--privacy", "sidecar",
                                   "--recipe", recipe)
            assert r.returncode == 0, (folder, r.stderr)
            cls.info[key] = header_info(folder)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("RP_KEEP_TMP") != "1":
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def ds(self, name):
        return os.path.join(self.tmp, name)

    def manifest(self, d):
        with open(os.path.join(d, "manifest.json")) as f:
            m = json.load(f)
        with open(os.path.join(d, "manifest.csv"), newline="") as f:
            rows = list(csv.DictReader(f))
        return m, rows

    def test_plain_rows_checksums_links(self):
        d = self.ds("plain")
        r = curate("--from-dir", self.outputs, "--out", d, "--no-timestamp", check=0)
        self.assertIn("3 cases", r.stdout)
        m, rows = self.manifest(d)
        self.assertEqual(m["format"], "radprep-dataset-manifest")
        self.assertEqual((m["n_cases"], len(m["cases"]), len(rows)), (3, 3, 3))
        self.assertNotIn("created", m)
        self.assertEqual([c["case"] for c in m["cases"]], sorted(c["case"] for c in m["cases"]))
        self.assertEqual([c["case"] for c in m["cases"]], [r["case"] for r in rows])
        by_series = {c["series_uid"]: c for c in m["cases"]}
        rows_by_case = {r["case"]: r for r in rows}
        salt = read_text(os.path.join(d, ".salt")).strip()
        self.assertEqual(len(salt), 64)
        self.assertEqual(oct(os.stat(os.path.join(d, ".salt")).st_mode & 0o777), "0o600")
        import nibabel as nib
        for key, info in self.info.items():
            c = by_series[info["series"]]
            row = rows_by_case[c["case"]]
            self.assertEqual(c["study_uid"], info["study"])
            want = "case_" + hashlib.sha256(("%s\n%s\n%s" % (salt, info["study"], info["series"]))
                                            .encode()).hexdigest()[:16]
            self.assertEqual(c["case"], want)
            self.assertEqual(c["modality"], "MR" if key == "mr" else "CT")
            self.assertEqual(row["modality"], c["modality"])
            recipe = SERIES[key][1]
            self.assertEqual(c["recipe"], recipe)
            side = load_json(os.path.join(d, c["sidecar"]["path"]))
            self.assertEqual(c["recipe_sha256"], side["Provenance"]["Recipe"]["hash"])
            self.assertEqual(row["recipe_sha256"], c["recipe_sha256"])
            # image: shape and spacing as nibabel sees them, checksum, a hard link to the output
            img_path = os.path.join(d, c["image"]["path"])
            img = nib.load(img_path)
            self.assertEqual(list(img.shape[:3]), c["image"]["shape"][:3])
            self.assertEqual(row["shape"], "x".join(str(x) for x in img.shape[:3]))
            for a, b in zip(img.header.get_zooms()[:3], c["image"]["spacing_mm"]):
                self.assertAlmostEqual(float(a), b, places=5)
            src = [os.path.join(dp, f) for dp, _, fns in os.walk(os.path.join(self.outputs, key))
                   for f in fns if f.endswith(".nii.gz") and "_mask-" not in f]
            self.assertEqual(len(src), 1)
            self.assertEqual(os.stat(src[0]).st_ino, os.stat(img_path).st_ino)
            self.assertEqual(sha256(img_path), c["image"]["sha256"])
            self.assertEqual(row["image_sha256"], c["image"]["sha256"])
            # masks: every one listed, its checksum, its volume (ml) from the sidecar
            want_masks = {"mr": {"foreground"}}.get(key, {"body"})
            self.assertTrue(want_masks <= set(c["masks"]), c["masks"])
            for name, mk in c["masks"].items():
                self.assertEqual(sha256(os.path.join(d, mk["path"])), mk["sha256"])
                self.assertEqual(row["mask_%s_sha256" % name], mk["sha256"])
                ml = side["Provenance"]["Recipe"]["masks"][name]["volume_ml"]
                self.assertAlmostEqual(c["qc"]["mask_volume_ml"][name], ml, places=3)
            if key == "head":
                self.assertGreater(c["qc"]["mask_volume_ml"]["body"], 500)  # a head: > 0.5 l
            self.assertEqual(sha256(os.path.join(d, c["sidecar"]["path"])), c["sidecar"]["sha256"])
            self.assertEqual(sha256(os.path.join(d, c["qc_png"]["path"])), c["qc_png"]["sha256"])
            with open(os.path.join(d, c["qc_png"]["path"]), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertEqual([x for x in os.listdir(self.tmp) if ".tmp-" in x], [])

        # --copy: the same bytes, own inodes; the same salt, so the same case ids
        d2 = self.ds("plain_copy")
        curate("--from-dir", self.outputs, "--out", d2, "--copy", "--no-timestamp",
               "--salt-file", os.path.join(d, ".salt"), check=0)
        m2, _ = self.manifest(d2)
        self.assertEqual([c["case"] for c in m2["cases"]], [c["case"] for c in m["cases"]])
        for c in m2["cases"]:
            p = os.path.join(d2, c["image"]["path"])
            self.assertEqual(os.stat(p).st_nlink, 1)
            self.assertEqual(sha256(p), c["image"]["sha256"])

    def test_pseudonymous_and_deidentified(self):
        secrets = set()
        for info in self.info.values():
            secrets |= {info["pid"], info["pname"]}
        # the sources really carry them (processed with --privacy sidecar)
        src_sides = [os.path.join(dp, f) for dp, _, fns in os.walk(self.outputs) for f in fns
                     if f.endswith(".json") and f != "qc.json"]
        self.assertTrue(any(self.info["head"]["pid"] in read_text(p) for p in src_sides))
        for flags in ([], ["--deidentify"]):
            d = self.ds("pseudo" + "".join(flags))
            curate("--from-dir", self.outputs, "--out", d, *flags, check=0)
            texts = {}
            for rel in tree(d):
                p = os.path.join(d, rel)
                if rel.endswith(".gz"):
                    with gzip.open(p, "rb") as f:
                        texts[rel] = f.read(352).decode("latin-1")  # NIfTI header + extension flag
                else:
                    with open(p, "rb") as f:
                        texts[rel] = f.read().decode("latin-1")
            for rel, text in texts.items():
                for s in secrets:
                    if len(s) >= 6:
                        self.assertNotIn(s, text, (flags, rel))
                if rel.endswith(".json") and rel != ".salt":
                    def walk(o):
                        if isinstance(o, dict):
                            for k, v in o.items():
                                self.assertFalse(k.startswith("Patient") and k != "PatientPosition",
                                                 (rel, k))
                                self.assertNotEqual(k, "AccessionNumber")
                                walk(v)
                        elif isinstance(o, list):
                            for v in o:
                                walk(v)
                        else:
                            self.assertNotIn(o, secrets, rel)
                    walk(json.loads(texts[rel]))
            uids = {i["study"] for i in self.info.values()} | {i["series"] for i in
                                                               self.info.values()}
            leaked = [rel for rel, t in texts.items() if any(u in t for u in uids)]
            if flags:
                self.assertEqual(leaked, [])
                m, rows = self.manifest(d)
                self.assertFalse(m["privacy"]["uids"])
                self.assertNotIn("series_uid", rows[0])
            else:
                self.assertIn("manifest.json", leaked)  # UIDs are kept by default (provenance)

    def test_deterministic(self):
        a, b = self.ds("det/a/ds"), self.ds("det/b/ds")
        curate("--from-dir", self.outputs, "--out", a, "--no-timestamp", "--split",
               "train=0.67,val=0.33", "--seed", "7", check=0)
        first = tree(a)
        curate("--from-dir", self.outputs, "--out", a, "--no-timestamp", "--split",
               "train=0.67,val=0.33", "--seed", "7", check=0)  # replaces a in place
        self.assertEqual(tree(a), first)
        curate("--from-dir", self.outputs, "--out", b, "--no-timestamp", "--split",
               "train=0.67,val=0.33", "--seed", "7", "--salt-file", os.path.join(a, ".salt"),
               check=0)
        self.assertEqual(tree(b), first)
        m, rows = self.manifest(a)
        for r in rows:
            self.assertEqual(r["split"], expected_split(7, r["case"],
                                                        [("train", 0.67), ("val", 0.33)]))
        # stable: a case keeps its split when the dataset changes (here: one series less)
        c = self.ds("det/c/ds")
        curate("--from-dir", self.outputs, "--out", c, "--no-timestamp", "--split",
               "train=0.67,val=0.33", "--seed", "7", "--salt-file", os.path.join(a, ".salt"),
               "--modality", "CT", check=0)
        _, rows_c = self.manifest(c)
        self.assertEqual(len(rows_c), 2)
        before = {r["case"]: r["split"] for r in rows}
        for r in rows_c:
            self.assertEqual(r["split"], before[r["case"]])
        self.assertEqual(m["split"], {"train": 0.67, "val": 0.33})
        # with a timestamp, only `created` differs
        curate("--from-dir", self.outputs, "--out", b, "--split", "train=0.67,val=0.33",
               "--seed", "7", "--salt-file", os.path.join(a, ".salt"), check=0)
        mb, _ = self.manifest(b)
        self.assertRegex(mb.pop("created"), r"^\d{4}-\d\d-\d\dT")
        self.assertEqual(mb, m)
        leftovers = [x for dp, dns, _ in os.walk(self.ds("det")) for x in dns if ".tmp-" in x]
        self.assertEqual(leftovers, [])

    def test_nnunet_layout(self):
        import nibabel as nib
        import numpy as np
        d = self.ds("Dataset501_Head")
        curate("--from-dir", self.outputs, "--out", d, "--layout", "nnunet", "--modality", "CT",
               "--label", "body", "--split", "train=0.5,val=0.5", "--seed", "3",
               "--no-timestamp", check=0)
        m, rows = self.manifest(d)
        self.assertEqual(len(m["cases"]), 2)
        self.assertEqual({c["modality"] for c in m["cases"]}, {"CT"})
        with open(os.path.join(d, "dataset.json")) as f:
            dj = json.load(f)
        self.assertEqual(dj["channel_names"], {"0": "CT"})
        self.assertEqual(dj["labels"], {"background": 0, "body": 1})
        self.assertEqual(dj["numTraining"], 2)
        self.assertEqual(dj["file_ending"], ".nii.gz")
        ids = sorted(c["case"] for c in m["cases"])
        self.assertEqual(sorted(os.listdir(os.path.join(d, "imagesTr"))),
                         [i + "_0000.nii.gz" for i in ids])
        self.assertEqual(sorted(os.listdir(os.path.join(d, "labelsTr"))),
                         [i + ".nii.gz" for i in ids])
        for i in ids:
            img = nib.load(os.path.join(d, "imagesTr", i + "_0000.nii.gz"))
            lab = nib.load(os.path.join(d, "labelsTr", i + ".nii.gz"))
            self.assertEqual(img.shape, lab.shape)
            self.assertTrue(np.allclose(img.affine, lab.affine, atol=1e-4))
            self.assertTrue(set(np.unique(np.asarray(lab.dataobj))) <= {0, 1})
            # nnU-Net normalises CT itself: the image reads back HU (the recipe clipped to
            # [-1000, 1000] and normalised to [0, 1]; the dataset gets the HU view)
            hu = np.asarray(img.dataobj, dtype=np.float64)
            self.assertGreaterEqual(hu.min(), -1000.1)
            self.assertLessEqual(hu.max(), 1000.1)
            self.assertGreater(hu.max() - hu.min(), 1000)
            with open(os.path.join(d, "radprep", i, "sidecar.json")) as f:
                st = json.load(f)["Provenance"]["Storage"]
            self.assertIn("HU", st["dataset_values"])
        self.assertEqual(m["images_in_hu"], 2)
        # --values processed keeps the recipe's values
        dp = self.ds("Dataset502_Processed")
        curate("--from-dir", self.outputs, "--out", dp, "--layout", "nnunet", "--modality", "CT",
               "--values", "processed", "--no-timestamp", check=0)
        mp, _ = self.manifest(dp)
        self.assertEqual(mp["images_in_hu"], 0)
        for c in mp["cases"]:
            v = np.asarray(nib.load(os.path.join(dp, "imagesTr", c["case"] + "_0000.nii.gz")).dataobj,
                           dtype=np.float64)
            self.assertGreaterEqual(v.min(), -1e-3)
            self.assertLessEqual(v.max(), 1 + 1e-3)
        r = curate("--values", "raw", "--out", self.ds("e_values"), check=2)
        self.assertIn("--values", r.stderr)
        with open(os.path.join(d, "splits_final.json")) as f:
            splits = json.load(f)
        self.assertEqual(len(splits), 1)
        self.assertEqual(sorted(splits[0]["train"] + splits[0]["val"]), ids)
        for name in ("train", "val"):
            self.assertEqual(splits[0][name], [i for i in ids if expected_split(
                3, i, [("train", 0.5), ("val", 0.5)]) == name])
        # mixing modalities in one nnU-Net dataset is refused
        r = curate("--from-dir", self.outputs, "--out", self.ds("nn_mixed"), "--layout", "nnunet",
                   check=2)
        self.assertIn("one modality", r.stderr)

    def test_errors(self):
        r = curate("--from-dir", self.outputs, check=2)
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
        self.assertIn("--out", r.stderr)
        curate("--from-dir", self.outputs, "--out", self.ds("e1"), "--split", "train=0.9",
               check=2)
        curate("--from-dir", self.outputs, "--out", self.ds("e1"), "--since", "yesterday",
               check=2)
        curate("--from-dir", self.outputs, "--out", self.ds("e1"), "--bogus", check=2)
        r = curate("--from-dir", self.outputs, "--out", self.ds("e1"), "--modality", "PT",
                   check=1)
        self.assertIn("no processed series match", r.stderr)
        self.assertFalse(os.path.exists(self.ds("e1")))
        # a folder with other files is never replaced
        other = self.ds("not_a_dataset")
        os.makedirs(other)
        with open(os.path.join(other, "thesis.tex"), "w") as f:
            f.write("precious")
        r = curate("--from-dir", self.outputs, "--out", other, check=1)
        self.assertIn("not a radprep dataset", r.stderr)
        self.assertEqual(os.listdir(other), ["thesis.tex"])
        # --since in the future selects nothing
        curate("--from-dir", self.outputs, "--out", self.ds("e2"), "--since", "2999-01-01",
               check=1)


class CurateFromIndex(unittest.TestCase):
    def test_index_mode(self):
        tmp = tempfile.mkdtemp(prefix="rp_curate_node_")
        rule = ("[rule curate_ct]\nmodality = CT\nsteps = %s\noutputs = nifti json qc png\n"
                "priority = 200\n" % CT_RECIPE)
        node = rp.Node(os.path.join(tmp, "n"), quiet_s=1, extra=rule).start()
        try:
            uids = {}
            for key in ("head", "ct3"):
                folder = rptest.data_path(SERIES[key][0])
                files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
                rc, ok, out = rp.storescu(node.port, files)
                self.assertEqual((rc, ok), (0, len(files)), out[-2000:])
                uids[key] = header_info(SERIES[key][0])["series"]
            jobs = {k: node.wait_job(u, 1, states=("done", "dead"), timeout=300)
                    for k, u in uids.items()}
            for k, j in jobs.items():
                self.assertEqual(j["state"], "done", (k, j, node.log()[-3000:]))
            d = os.path.join(tmp, "dataset")
            r = node.cli("curate", "--out", d, "--modality", "ct", "--rule", "curate_ct",
                         "--no-timestamp")
            self.assertIn("2 cases", r.stdout)
            with open(os.path.join(d, "manifest.json")) as f:
                m = json.load(f)
            self.assertEqual(m["source"], "index")
            recorded = {}
            for j in jobs.values():
                for kind, path, sha in node.outputs(j["id"]):
                    recorded[sha] = path
            for c in m["cases"]:
                self.assertEqual(c["rule"], "curate_ct")
                self.assertEqual(c["version"], 1)
                self.assertIn(c["series_uid"], uids.values())
                for f in [c["image"], c["qc_png"]] + list(c["masks"].values()):
                    self.assertIn(f["sha256"], recorded)  # what the worker recorded
                    self.assertEqual(sha256(os.path.join(d, f["path"])), f["sha256"])
            # another rule's name selects nothing
            r = node.cli("curate", "--out", os.path.join(tmp, "none"), "--rule", "other",
                         check=False)
            self.assertEqual(r.returncode, 1, r.stderr)
            # an output changed after the worker recorded it: curate refuses
            img = [p for p in recorded.values() if p.endswith(".nii.gz") and "_mask-" not in p][0]
            with open(img, "ab") as f:
                f.write(b"\0")
            r = node.cli("curate", "--out", os.path.join(tmp, "bad"), check=False)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("checksum mismatch", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "bad")))
        finally:
            node.stop()
            if os.environ.get("RP_KEEP_TMP") != "1":
                shutil.rmtree(tmp, ignore_errors=True)


class CurateTimerUnits(unittest.TestCase):
    """systemd/radprep-curate@.service + .timer (nightly curation) pass systemd-analyze verify
    as an instance, and the same check notices a mistake."""

    def verify(self, service_text, timer_text):
        d = tempfile.mkdtemp(prefix="rp_curate_units_")
        try:
            svc = os.path.join(d, "radprep-curate@chest.service")
            tim = os.path.join(d, "radprep-curate@chest.timer")
            with open(svc, "w") as f:
                f.write(service_text.replace("/usr/bin/radprep ", rp.RADPREP + " "))
            with open(tim, "w") as f:
                f.write(timer_text)
            r = subprocess.run(["systemd-analyze", "verify", "--man=no", svc, tim],
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning",
                                        SYSTEMD_COLORS="0", SYSTEMD_PAGER=""))
            return r.returncode, [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_units(self):
        with open(os.path.join(rp.SRC, "systemd", "radprep-curate@.service")) as f:
            svc = f.read()
        with open(os.path.join(rp.SRC, "systemd", "radprep-curate@.timer")) as f:
            tim = f.read()
        self.assertEqual(self.verify(svc, tim), (0, []))
        self.assertIn(" curate --out /var/lib/radprep/datasets/%i $CURATE_ARGS", svc)
        self.assertIn("Persistent=true", tim)
        rc, noise = self.verify(svc.replace("IOSchedulingClass=idle", "IOSchedulingClas=idle"),
                                tim)
        self.assertTrue(any("IOSchedulingClas" in x for x in noise), noise)


if __name__ == "__main__":
    unittest.main(verbosity=2)
