#!/usr/bin/python3
"""Integration: elements encoded as VR UN (explicit VR LE, as a forwarding node that did not
know the tags sends them) are read through the data dictionary.

A copy of the shared LIDC CT with every top-level element except Pixel Data and sequences
re-encoded as UN (value bytes as in implicit VR) converts to the same file names, the same
NIfTI bytes (volume and affine) and the same sidecar values as the original. Names in
ISO_IR 100 (Latin-1) come out as UTF-8 in the sidecar.
"""
import glob
import json
import os
import struct
import sys

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402


def un_copy(src, dst):
    os.makedirs(dst, exist_ok=True)
    for f in rptest.data_files(src):
        ds = pydicom.dcmread(f)
        out = DicomBytesIO()
        out.is_little_endian, out.is_implicit_VR = True, False
        out.write(b"\0" * 128 + b"DICM")
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        write_file_meta_info(out, ds.file_meta, enforce_standard=True)
        for elem in ds:
            if elem.tag.group == 2:
                continue
            if elem.tag == 0x7FE00010 or elem.VR == "SQ":
                write_data_element(out, elem)
                continue
            fp = DicomBytesIO()
            fp.is_little_endian, fp.is_implicit_VR = True, True
            write_data_element(fp, elem)
            raw = fp.getvalue()[8:]
            out.write(struct.pack("<HH", elem.tag.group, elem.tag.element) + b"UN\0\0" +
                      struct.pack("<I", len(raw)) + raw)
        with open(os.path.join(dst, os.path.basename(f)), "wb") as g:
            g.write(out.getvalue())


def outputs(d):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(d, "*.nii*")))


def main():
    rptest.require_built(rptest.radprep_bin())
    tmp = rptest.tempdir("rp_vr_un_")
    src = rptest.data_path("ct_chest_lidc0001")
    un = os.path.join(tmp, "un")
    un_copy(src, un)
    first = sorted(glob.glob(os.path.join(un, "*")))[0]
    with open(first, "rb") as f:
        raw = f.read()
    check(b"\x20\x00\x32\x00UN" in raw, "the copy does not hold Image Position as UN")
    o_ref, o_un = os.path.join(tmp, "ref"), os.path.join(tmp, "out_un")
    for s, o in ((src, o_ref), (un, o_un)):
        p = rptest.run_radprep("process", s, "--out", o, "--no-gzip")
        check(p.returncode == 0, f"{s}: exit {p.returncode}: {p.stderr[-300:]}")
    names_ref, names_un = outputs(o_ref), outputs(o_un)
    check(names_ref and names_ref == names_un, f"names differ: {names_ref} vs {names_un}")
    for n in names_ref:
        if n not in names_un:
            continue
        with open(os.path.join(o_ref, n), "rb") as a, open(os.path.join(o_un, n), "rb") as b:
            check(a.read() == b.read(), f"{n}: NIfTI (volume/affine) differs from the original's")
        stem = n.split(".")[0] + ".json"
        with open(os.path.join(o_ref, stem)) as a, open(os.path.join(o_un, stem)) as b:
            ja, jb = json.load(a), json.load(b)
        for k in sorted(set(ja) | set(jb)):
            if k != "Provenance":
                check(ja.get(k) == jb.get(k), f"{stem}: {k} {ja.get(k)!r} vs {jb.get(k)!r}")

    # Specific Character Set ISO_IR 100 (Latin-1): names decoded to UTF-8 in the sidecar
    cs = os.path.join(tmp, "latin1")
    os.makedirs(cs)
    for f in rptest.data_files("ct_chest_lidc0001")[:3]:
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SeriesDescription = "Gehirn \u00dcbersicht"
        ds.PatientName = "M\u00fcller^J\u00f6rg"
        ds.save_as(os.path.join(cs, os.path.basename(f)))
    o_cs = os.path.join(tmp, "out_latin1")
    p = rptest.run_radprep("process", cs, "--out", o_cs, "--privacy", "sidecar")
    check(p.returncode == 0, f"latin1: exit {p.returncode}: {p.stderr[-300:]}")
    js = [j for j in glob.glob(os.path.join(o_cs, "*.json")) if not j.endswith("qc.json")]
    if check(len(js) == 1, f"latin1: {js}"):
        with open(js[0], encoding="utf-8") as f:
            j = json.load(f)
        check(j.get("SeriesDescription") == "Gehirn \u00dcbersicht",
              f"latin1: SeriesDescription {j.get('SeriesDescription')!r}")
        check(j.get("PatientName") == "M\u00fcller^J\u00f6rg",
              f"latin1: PatientName {j.get('PatientName')!r}")
        check("x_" not in os.path.basename(js[0]), f"latin1: hex name {js[0]}")
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
