#!/usr/bin/python3
"""Write the seed corpora of tests/fuzz/corpus/ (run once by hand; the seeds are committed).

Small files of every shape the readers meet, so that the fuzzers start from valid structure:
DICOM headers in each transfer syntax family (explicit/implicit LE, big endian, deflate, RLE,
JPEG, JPEG-LS, JPEG 2000 via dcmtk's converters when they are installed), an enhanced
multi-frame with functional groups, nested and UN-encoded sequences, Siemens CSA and UIH
mosaic private headers; tiny configurations and recipes. Nothing is copied from real data.
Usage: /usr/bin/python3 tests/fuzz/make_seeds.py [corpus_dir]
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")


def base(sop_class="1.2.840.10008.5.1.4.1.1.2", modality="CT", rows=4, cols=4, inst=1):
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.9.7777.%d" % inst
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.9.7777.100"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9.7777.200"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.9.7777.300"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Fuzz^Seed"
    ds.PatientID = "F1"
    ds.StudyDate = "20240101"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = inst
    ds.SeriesDescription = "seed"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImagePositionPatient = [-10.0, -10.0, float(inst)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 1
    ds.PixelData = (np.arange(rows * cols, dtype=np.int16) * 7).tobytes()
    return ds


def save(ds, name, ts=ExplicitVRLittleEndian):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    ds.file_meta = meta
    ds.is_little_endian = ts != ExplicitVRBigEndian
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian
    path = os.path.join(OUT, "dicom_header", name)
    ds.save_as(path, write_like_original=False)
    return path


def csa_header(entries):
    """Siemens CSA2 ("SV10") header with string items, as the CSA reader parses it."""
    b = b"SV10\x04\x03\x02\x01" + struct.pack("<II", len(entries), 77)
    for name, values in entries:
        b += name.encode().ljust(64, b"\0") + struct.pack("<i4sii", len(values), b"DS\0\0", 3,
                                                          len(values)) + struct.pack("<i", 77)
        for v in values:
            s = v.encode() + b"\0"
            b += struct.pack("<4i", len(s), len(s), 77, len(s))
            b += s.ljust((len(s) + 3) & ~3, b"\0")
    return b


def dicom_seeds():
    d = os.path.join(OUT, "dicom_header")
    os.makedirs(d, exist_ok=True)
    ct = save(base(), "ct_explicit_le.dcm")
    save(base(inst=2), "ct_implicit_le.dcm", ImplicitVRLittleEndian)
    save(base(inst=3), "ct_big_endian.dcm", ExplicitVRBigEndian)

    # raw dataset, no Part-10 header (implicit VR LE)
    ds = base(inst=4)
    ds.is_little_endian, ds.is_implicit_VR = True, True
    with open(os.path.join(d, "raw_implicit.dcm"), "wb") as f:
        pydicom.filewriter.write_dataset(pydicom.filebase.DicomFileLike(f), ds)

    # enhanced MR: shared + per-frame functional groups, dimension indices, 3 frames
    ds = base("1.2.840.10008.5.1.4.1.1.4.1", "MR", inst=5)
    for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
              "SliceThickness", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, k)
    ds.NumberOfFrames = 3
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 15, 0
    ds.PixelData = np.arange(3 * 16, dtype=np.uint16).tobytes()
    shared = Dataset()
    po = Dataset()
    po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([po])
    pm = Dataset()
    pm.PixelSpacing = [1.0, 1.0]
    pm.SliceThickness = 2.0
    shared.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(3):
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [0, 0, 6.0 * k]
        fg.PlanePositionSequence = Sequence([pp])
        fc = Dataset()
        fc.DimensionIndexValues = [1, k + 1]
        fc.TemporalPositionIndex = k + 1
        fc.StackID = "1"
        fc.InStackPositionNumber = k + 1
        fg.FrameContentSequence = Sequence([fc])
        me = Dataset()
        me.EffectiveEchoTime = 30.0
        fg.MREchoSequence = Sequence([me])
        dm = Dataset()
        dm.DiffusionBValue = 1000.0
        gd = Dataset()
        gd.DiffusionGradientOrientation = [0, 0, 1]
        dm.DiffusionGradientDirectionSequence = Sequence([gd])
        fg.MRDiffusionSequence = Sequence([dm])
        frames.append(fg)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    save(ds, "enhanced_mr.dcm")

    # Siemens mosaic (CSA image header) of 4 tiles of 2x2
    ds = base("1.2.840.10008.5.1.4.1.1.4", "MR", inst=6)
    ds.Manufacturer = "SIEMENS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True).add_new(
        0x10, "OB", csa_header([("NumberOfImagesInMosaic", ["4"]),
                                ("SliceNormalVector", ["0", "0", "1"])]))
    save(ds, "siemens_mosaic.dcm")

    # UIH mosaic: tile count, tile size and one position per tile
    ds = base("1.2.840.10008.5.1.4.1.1.4", "MR", inst=7)
    ds.Manufacturer = "UIH"
    blk = ds.private_block(0x0065, "Image Private Header", create=True)
    blk.add_new(0x50, "DS", "4")
    blk.add_new(0x04, "LO", "2*2")
    items = []
    for t in range(4):
        it = Dataset()
        it.ImagePositionPatient = [0, 0, float(t)]
        items.append(it)
    blk.add_new(0x51, "SQ", Sequence(items))
    save(ds, "uih_mosaic.dcm")

    # a Modality LUT and a VOI LUT, windows, padding, MONOCHROME1
    ds = base("1.2.840.10008.5.1.4.1.1.1.1", "DX", inst=8)
    ds.PhotometricInterpretation = "MONOCHROME1"
    del ds.RescaleSlope, ds.RescaleIntercept
    ml = Dataset()
    ml.LUTDescriptor = [4, 0, 16]
    ml.ModalityLUTType = "OD"
    ml.LUTData = np.array([0, 10, 20, 30], np.uint16).tobytes()
    ds.ModalityLUTSequence = Sequence([ml])
    vl = Dataset()
    vl.LUTDescriptor = [4, 0, 16]
    vl.LUTData = np.array([0, 100, 200, 300], np.uint16).tobytes()
    ds.VOILUTSequence = Sequence([vl])
    ds.WindowCenter, ds.WindowWidth = [40, 400], [400, 1500]
    ds.PixelPaddingValue = 0
    ds.PresentationIntentType = "FOR PRESENTATION"
    save(ds, "dx_luts.dcm")

    # nested sequences (within the bound) with one undefined-length UN in explicit VR
    ds = base(inst=9)
    inner = Dataset()
    inner.CodeValue = "1"
    for _ in range(5):
        outer = Dataset()
        outer.ContentSequence = Sequence([inner])
        inner = outer
    ds.ContentSequence = Sequence([inner])
    p = save(ds, "nested5.dcm")
    with open(p, "rb") as f:
        data = f.read()
    # re-tag the top-level (0040,A730) SQ as UN: a forwarding node that did not know it
    i = data.find(struct.pack("<HH", 0x0040, 0xA730) + b"SQ")
    if i > 0:
        with open(os.path.join(d, "nested5_un.dcm"), "wb") as f:
            f.write(data[:i + 4] + b"UN" + data[i + 6:])

    # compressed transfer syntaxes, made by dcmtk's own converters when present
    for tool, args, name in (("dcmconv", ["+td"], "ct_deflate.dcm"),
                             ("dcmcrle", [], "ct_rle.dcm"),
                             ("dcmcjpeg", ["+el"], "ct_jpeg_lossless.dcm"),
                             ("dcmcjpls", [], "ct_jpegls.dcm")):
        if shutil.which(tool):
            subprocess.run([tool] + args + [ct, os.path.join(d, name)], check=False,
                           capture_output=True)


def conf_seeds():
    d = os.path.join(OUT, "conf")
    os.makedirs(d, exist_ok=True)
    seeds = {
        "node.ini": "[node]\nae_title = RADPREP\nport = 11112\ndata_dir = /nonexistent/rp\n"
                    "workers = 2\nuid_policy = lenient\nduplicate_policy = keep_first\n",
        "peers.ini": "[peer pacs]\nae_title = PACS\nhost = 127.0.0.1\nport = 104\n"
                     "results = derived seg\n[completion]\nCT = 30\nMR = 60\n",
        "rule.ini": "[rule lung]\nmodality = CT\nbody_part = CHEST LUNG\n"
                    "series_description = *lung*\nslice_thickness_min = 0.5\n"
                    "slice_thickness_max = 3\npriority = 5\n"
                    "steps = resample(1,1,1) | window(lung) | clip(-1200,600)\n"
                    "outputs = nifti json qc\nsend_to = pacs\n",
        "fusion.ini": "[fusion brain]\nmodality = MR\nsequences = T1 T2 FLAIR\n"
                      "register = rigid\nnormalize = zscore\n",
        "pull.ini": "[peer pacs]\nae_title = PACS\nhost = 127.0.0.1\nport = 104\n"
                    "[pull nightly]\npeer = pacs\nstudy_date = last 3 days\nmodality = CT\n"
                    "window = 22:00-06:00\nmax_series = 10\n",
        "http.ini": "[http]\nport = 8080\nbind = 127.0.0.1\nmax_connections = 8\n"
                    "[executor]\nkind = slurm\npartition = gpu\n[tls]\nport = 0\n",
    }
    for name, text in seeds.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    ex = os.path.join(HERE, "..", "..", "conf", "radprep.ini.example")
    if os.path.exists(ex):
        shutil.copy(ex, os.path.join(d, "example.ini"))


def recipe_seeds():
    d = os.path.join(OUT, "recipe")
    os.makedirs(d, exist_ok=True)
    seeds = ["hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) "
             "normalize(minmax)",
             "foreground n4 normalize(percentile(0.5,99.5))",
             "present crop(background) clahe(2.0,8) resize(1024,keep_aspect) pad(1024) "
             "normalize(minmax) png(8)",
             "window(lung) multiwindow(lung,mediastinal,40/400) clip(soft_tissue)",
             "reorient(RAS) crop(mask,lung,5) crop_or_pad(64,64,32,min) "
             "denoise(edge-preserving,5,0.5) patches(32,16,inside(lung),100,files)",
             "headmask(open=2, close=3, scale=0.5) whitestripe nyul fuse(T1, T2, FLAIR) "
             "register align normalize(zscore_in(brain)) resample(0.5)",
             ""]
    for i, s in enumerate(seeds):
        with open(os.path.join(d, "r%d.txt" % i), "w") as f:
            f.write(s)


def assemble_seeds():
    d = os.path.join(OUT, "assemble")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(13)
    # a first byte for the file count, then each file's bytes: fixed patterns that walk the
    # common paths (axial stacks stepping along the normal), and random ones
    for i in range(8):
        n = 2 + i
        b = bytes([n]) + bytes(rng.integers(0, 256, 40 * n, dtype=np.uint8))
        with open(os.path.join(d, "rand%d.bin" % i), "wb") as f:
            f.write(b)
    # n files, each: shape, rows, cols, frames, inst, acq, thickness(3), no mosaic, frame:
    # flags = axial + ipp + iop + spacing, ipp 3 doubles, spacing 2, thickness, more=0, kind, id
    frame = bytes([0x17 | 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 2, 0, 0, 0, 0, 0])
    for n in (3, 5):
        b = bytes([n])
        for k in range(n):
            b += bytes([0x00, 3, 3, 0, k + 1, 1, 0, 2, 0, 0]) + frame
        with open(os.path.join(d, "axial%d.bin" % n), "wb") as f:
            f.write(b)


if __name__ == "__main__":
    dicom_seeds()
    conf_seeds()
    recipe_seeds()
    assemble_seeds()
    for t in sorted(os.listdir(OUT)):
        files = os.listdir(os.path.join(OUT, t))
        print(t, len(files), "seeds,", sum(os.path.getsize(os.path.join(OUT, t, f))
                                          for f in files), "bytes")
