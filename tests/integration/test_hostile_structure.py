#!/usr/bin/python3
"""Integration: files with hostile structure never crash `radprep process`.

Sequences nested 10,000 deep (explicit VR with undefined lengths, implicit VR raw dataset with
defined lengths, an undefined-length UN) overflow the stack of dcmtk's recursive reader;
radprep refuses them before dcmtk sees them: exit 1, the reason in qc.json, no signal. A
file nested within the bound (20 levels) is read normally. The same bound guards the header
reader of the node (dicom/header.cc, tested in tests/dicom): sent by C-STORE, such datasets
get a failure status, a log line with the reason, and the node stays up and keeps storing.
"""
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_badinput import make_dataset  # noqa: E402

SOP_CLASS = b"1.2.840.10008.5.1.4.1.1.7"


def el_ex(g, e, vr, val):
    if len(val) % 2:
        val += b"\0" if vr == "UI" else b" "
    return struct.pack("<HH", g, e) + vr.encode() + struct.pack("<H", len(val)) + val


def el_im(g, e, val):
    if len(val) % 2:
        val += b"\0"
    return struct.pack("<HHI", g, e, len(val)) + val


def part10(ts, dataset):
    body = (struct.pack("<HH", 2, 1) + b"OB\0\0" + struct.pack("<I", 2) + b"\0\1" +
            el_ex(2, 2, "UI", SOP_CLASS) + el_ex(2, 3, "UI", b"1.2.3.4.5.6") +
            el_ex(2, 0x10, "UI", ts))
    meta = struct.pack("<HH", 2, 0) + b"UL" + struct.pack("<HI", 4, len(body)) + body
    return b"\0" * 128 + b"DICM" + meta + dataset


def deep_explicit_dataset(depth, vr=b"SQ", sop_uid=b"1.2.3.4.5.6"):
    """Explicit VR LE dataset, (0040,A730) nested `depth` deep, undefined lengths."""
    ds = (el_ex(8, 0x16, "UI", SOP_CLASS) + el_ex(8, 0x18, "UI", sop_uid) +
          el_ex(0x10, 0x10, "PN", b"Deep^Nest") + el_ex(0x20, 0x0D, "UI", b"1.2.3.4.5.1.1") +
          el_ex(0x20, 0x0E, "UI", b"1.2.3.4.5.1.2"))
    sq = struct.pack("<HH", 0x0040, 0xA730) + vr + b"\0\0" + struct.pack("<I", 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return ds + (sq + item) * depth + end * depth


def deep_explicit(depth, vr=b"SQ"):
    return part10(b"1.2.840.10008.1.2.1", deep_explicit_dataset(depth, vr))


def deep_un(depth):
    """Explicit VR LE with one undefined-length UN (0040,A730): its content is implicit VR,
    where the same tag nests `depth` deep with undefined lengths."""
    ds = (el_ex(8, 0x16, "UI", SOP_CLASS) + el_ex(8, 0x18, "UI", b"1.2.3.4.5.8") +
          el_ex(0x10, 0x10, "PN", b"Deep^UN"))
    outer = struct.pack("<HH", 0x0040, 0xA730) + b"UN\0\0" + struct.pack("<I", 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    inner = struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF)
    end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return part10(b"1.2.840.10008.1.2.1",
                  ds + outer + item + (inner + item) * depth + end * (depth + 1))


def deep_implicit_defined(depth, sop_uid=b"1.2.3.4.5.7"):
    """Raw implicit VR LE dataset (no Part-10 header), defined-length nested sequences."""
    inner = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        inner = struct.pack("<HHI", 0x0040, 0xA730, len(item)) + item
    return (el_im(8, 0x16, SOP_CLASS) + el_im(8, 0x18, sop_uid) +
            el_im(0x10, 0x10, b"Deep^Implicit") + el_im(0x20, 0x0D, b"1.2.3.4.5.1.1") +
            el_im(0x20, 0x0E, b"1.2.3.4.5.1.2") + inner)


def raw_cstore_fragmented(port, data, sop_class, sop_uid, ts, timeout=60):
    """rptest.raw_cstore, with the dataset cut into P-DATA PDUs of 16 KB (the node's default
    maximum PDU is smaller than these datasets). Returns the DIMSE status, None without one."""
    a = rptest.RawAssociation(port, contexts=((1, sop_class, (ts,)),)).open()
    try:
        if a.result != "accepted":
            raise AssertionError("association %s %s" % (a.result, a.reject))
        a.send(rptest.pdata_pdu(1, rptest.cstore_rq_command(sop_class, sop_uid), command=True))
        step = 16000
        for i in range(0, len(data), step):
            a.send(rptest.pdata_pdu(1, data[i:i + step], command=False,
                                    last=i + step >= len(data)))
        t, body = rptest.recv_pdu(a.sock, timeout)
        if t != 0x04:
            return None
        status = rptest.dimse_status(body)
        a.send(struct.pack(">BBI", 0x05, 0, 4) + b"\0\0\0\0")  # A-RELEASE-RQ
        rptest.recv_pdu(a.sock, timeout)
        return status
    finally:
        a.close()


def over_c_store(tmp):
    """The same structures sent to radprepd by C-STORE (a hand-made association: storescu's
    own dcmtk reader overflows on such a file before it could send it). The node answers a
    failure status, says why in its log, stays up, and stores a normal instance afterwards."""
    with rptest.Radprepd(workdir=os.path.join(tmp, "node")) as node:
        cases = (
            ("explicit_undefined", deep_explicit_dataset(10000, sop_uid=b"1.2.3.4.5.16"),
             rptest.EXPLICIT_LE, "1.2.3.4.5.16"),
            ("implicit_defined", deep_implicit_defined(10000, sop_uid=b"1.2.3.4.5.17"),
             rptest.IMPLICIT_LE, "1.2.3.4.5.17"),
        )
        for name, data, ts, uid in cases:
            try:
                st = raw_cstore_fragmented(node.port, data, SOP_CLASS.decode(), uid, ts)
            except (OSError, AssertionError) as e:
                st = None
                check(False, f"C-STORE {name}: the association broke: {e}")
            check(node.alive(), f"C-STORE {name}: radprepd died: {node.log_tail()}")
            if not node.alive():
                return
            check(st is not None and st >= 0xA000,
                  f"C-STORE {name}: status {st if st is None else hex(st)}, want a failure")
        check(node.log_kv(r"nested deeper"), "no log line gives the nesting reason")
        check(not [p for p in node.files_in_store() if "1.2.3.4.5.1" in p],
              f"a hostile instance was stored: {node.files_in_store()}")
        good = make_dataset(os.path.join(tmp, "good.dcm"), "1.2.3.4.5.2.1", "1.2.3.4.5.2.2",
                            "1.2.3.4.5.2.3")
        res = rptest.storescu(node.port, [good])
        check(res.status.get(good) == "Success",
              f"after the hostile stores, a normal instance got {res.status.get(good)}")
        check(rptest.echoscu(node.port).returncode == 0, "C-ECHO failed after the hostile stores")


def main():
    rptest.require_built(rptest.radprep_bin())
    tmp = rptest.tempdir("rp_hostile_")
    cases = {
        "deep_explicit_10000.dcm": (deep_explicit(10000), True),
        "deep_un_10000.dcm": (deep_un(10000), True),
        "deep_implicit_raw_10000.dcm": (deep_implicit_defined(10000), True),
        "nested_20_ok.dcm": (deep_explicit(20), False),
    }
    for name, (data, hostile) in cases.items():
        d = os.path.join(tmp, name + ".in")
        os.makedirs(d)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        out = os.path.join(tmp, name + ".out")
        p = rptest.run_radprep("process", d, "--out", out, timeout=120)
        check(0 <= p.returncode < 128, f"{name}: radprep died (rc {p.returncode}): "
                                       f"{p.stderr[-300:]}")
        qc = {}
        if os.path.exists(os.path.join(out, "qc.json")):
            with open(os.path.join(out, "qc.json")) as f:
                qc = json.load(f)
        failed = qc.get("failed_inputs", [])
        if hostile:
            check(p.returncode == 1, f"{name}: exit {p.returncode}, want 1")
            check(len(failed) == 1 and "nested deeper" in failed[0].get("error", ""),
                  f"{name}: qc.json does not give the nesting reason: {failed}")
            check("nested deeper" in p.stderr, f"{name}: stderr lacks the reason: {p.stderr}")
        else:
            # within the bound: read by dcmtk; no pixel data, so skipped as not an image
            check(not any("nested deeper" in x.get("error", "") for x in failed),
                  f"{name}: a 20-level file was refused: {failed}")
    rptest.require_built(rptest.radprepd_bin())
    over_c_store(tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
