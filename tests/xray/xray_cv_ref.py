#!/usr/bin/python3
"""Reference results for the X-ray kernel unit tests (tests/xray/test_clahe.c,
test_xray_resize.c), computed with Debian's python3-opencv and python3-skimage on the very
arrays the C test wrote. Raw files are little-endian, row-major, no header.

usage: xray_cv_ref.py OP ARGS... IN OUT
  clahe8  W H CLIP TX TY IN OUT     cv2.createCLAHE(CLIP, (TX, TY)).apply(uint8)
  clahe16 W H CLIP TX TY IN OUT     same on uint16
  area8   W H OW OH IN OUT          cv2.resize(uint8, (OW, OH), INTER_AREA)
  areaf   W H OW OH IN OUT          cv2.resize(float32, (OW, OH), INTER_AREA)
  linearf W H OW OH IN OUT          cv2.resize(float32, (OW, OH), INTER_LINEAR)
  meanf   W H F IN OUT              skimage.measure.block_reduce(float32, (F, F), mean)
  png     PNG OUT                   cv2.imread(PNG, IMREAD_UNCHANGED) -> raw (+ OUT.txt: w h dtype)
"""
import sys

import cv2
import numpy as np


def main(a):
    op = a[0]
    if op == "png":
        img = cv2.imread(a[1], cv2.IMREAD_UNCHANGED)
        img.tofile(a[2])
        with open(a[2] + ".txt", "w") as f:
            f.write("%d %d %d\n" % (img.shape[1], img.shape[0], img.dtype.itemsize * 8))
        return
    w, h = int(a[1]), int(a[2])
    if op in ("clahe8", "clahe16"):
        dt = np.uint8 if op == "clahe8" else np.uint16
        img = np.fromfile(a[6], dtype=dt).reshape(h, w)
        out = cv2.createCLAHE(clipLimit=float(a[3]),
                              tileGridSize=(int(a[4]), int(a[5]))).apply(img)
        out.astype(dt).tofile(a[7])
    elif op in ("area8", "areaf", "linearf"):
        dt = np.uint8 if op == "area8" else np.float32
        img = np.fromfile(a[5], dtype=dt).reshape(h, w)
        interp = cv2.INTER_LINEAR if op == "linearf" else cv2.INTER_AREA
        out = cv2.resize(img, (int(a[3]), int(a[4])), interpolation=interp)
        out.astype(dt).tofile(a[6])
    elif op == "meanf":
        from skimage.measure import block_reduce
        f = int(a[3])
        img = np.fromfile(a[4], dtype=np.float32).reshape(h, w)
        block_reduce(img, (f, f), np.mean).astype(np.float32).tofile(a[5])
    else:
        raise SystemExit("unknown op " + op)


if __name__ == "__main__":
    main(sys.argv[1:])
