#!/usr/bin/python3
"""Integration: stacks follow the frames' positions, not their labels.

A generated enhanced MR whose Dimension Index and Temporal Position Index say "19 temporal
positions", but whose 19 frames lie at 19 positions 6 mm apart (and are stored out of
position order), converts to one 19-slice 3-D volume with 6 mm slices, frames sorted by
position; labels only break ties between frames at the same position.
"""
import glob
import os
import sys

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

def make_enhanced(out):
    n, rows, cols = 19, 32, 24
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset(); ds.file_meta = meta
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID; ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(); ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "MR"; ds.SeriesNumber = 7; ds.InstanceNumber = 1; ds.SeriesDescription = "labels temporal"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n
    ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16; ds.BitsStored = 16; ds.HighBit = 15; ds.PixelRepresentation = 0
    dim_org = generate_uid()
    ds.DimensionOrganizationSequence = Sequence([Dataset()]); ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = dim_org
    d1 = Dataset(); d1.DimensionOrganizationUID = dim_org; d1.DimensionIndexPointer = 0x00209128; d1.FunctionalGroupPointer = 0x00209111
    ds.DimensionIndexSequence = Sequence([d1])
    sh = Dataset()
    po = Dataset(); po.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    pm = Dataset(); pm.PixelSpacing = [1.5, 1.25]; pm.SliceThickness = 6
    sh.PlaneOrientationSequence = Sequence([po]); sh.PixelMeasuresSequence = Sequence([pm])
    ds.SharedFunctionalGroupsSequence = Sequence([sh])
    pf = []
    order = [(7 * k) % n for k in range(n)]  # frames not in position order
    for k in order:
        f = Dataset()
        pp = Dataset(); pp.ImagePositionPatient = [-20.0, -30.0, -50.0 + 6.0 * k]
        fc = Dataset(); fc.TemporalPositionIndex = k + 1; fc.DimensionIndexValues = [k + 1]
        fc.StackID = "1"; fc.InStackPositionNumber = 1
        f.PlanePositionSequence = Sequence([pp]); f.FrameContentSequence = Sequence([fc])
        pf.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(pf)
    ds.NumberOfTemporalPositions = n
    px = np.zeros((n, rows, cols), np.uint16)
    for k in range(n):
        px[k] = 100 + order[k]
    ds.PixelData = px.tobytes()
    ds.save_as(out, write_like_original=False)


def main():
    rptest.require_built(rptest.radprep_bin())
    tmp = rptest.tempdir("rp_poslabels_")
    src = os.path.join(tmp, "in")
    os.makedirs(src)
    make_enhanced(os.path.join(src, "enhanced_mr.dcm"))
    out = os.path.join(tmp, "out")
    p = rptest.run_radprep("process", src, "--out", out, "--no-gzip")
    check(p.returncode == 0, f"exit {p.returncode}: {p.stderr[-300:]}")
    niis = glob.glob(os.path.join(out, "*.nii"))
    if check(len(niis) == 1, f"one output expected, got {niis}"):
        img = nib.load(niis[0])
        data = np.asanyarray(img.dataobj)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        check(data.shape == (24, 32, 19), f"shape {data.shape}, want a 19-slice volume")
        check(abs(np.linalg.norm(img.affine[:3, 2]) - 6.0) < 1e-4,
              f"slice step {np.linalg.norm(img.affine[:3, 2])} mm, want 6")
        check(abs(img.affine[2, 3] - -50.0) < 1e-3, f"first slice at z {img.affine[2, 3]}")
        if data.shape == (24, 32, 19):
            vals = [int(data[0, 0, k]) for k in range(19)]
            check(vals == [100 + k for k in range(19)], f"slices not in position order: {vals}")
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
