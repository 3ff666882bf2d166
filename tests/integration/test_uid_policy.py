#!/usr/bin/python3
"""Integration: [node] uid_policy.

A UID with a leading zero in a component (999.999.01.23.45.6789, as real CRs send) breaks
PS3.5 but is safe as a path component: uid_policy=lenient (the default) stores it, logs a
uid_not_ps35 warning, records it in the index as an event of that kind (once per series and
association: `radprep events --kind uid_not_ps35` shows it) and keeps the study reachable;
uid_policy=strict refuses it with 0xC000 and says why. Empty, non-numeric and overlong UIDs are refused under both. Sent by storescu.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402
from rptest import check  # noqa: E402
from test_badinput import make_dataset  # noqa: E402

LEADING_ZERO = "999.999.01.23.45.6789"


def main():
    rptest.require_built(rptest.radprepd_bin())
    tmp = rptest.tempdir("rp_uidpol_")
    good = make_dataset(os.path.join(tmp, "lz.dcm"), LEADING_ZERO, LEADING_ZERO + ".1",
                        LEADING_ZERO + ".1.1")
    bad = [make_dataset(os.path.join(tmp, "b%d.dcm" % i), *c) for i, c in enumerate([
        ("", "1.2.3.4", "1.2.3.4.6"), ("1.2.3", "1.2.3.4", "1.2.3.4.abc"),
        ("1." + "1" * 70, "1.2.3.4", "1.2.3.4.9")])]
    for policy in ("lenient", "strict", None):
        node_conf = {"uid_policy": policy} if policy else {}
        with rptest.Radprepd(workdir=os.path.join(tmp, policy or "default"),
                             node=node_conf) as node:
            res = rptest.storescu(node.port, [good] + bad)
            st = res.status[good]
            def lz_stored():
                return [p for p in node.files_in_store() if LEADING_ZERO + ".1.1.dcm" in p]
            # an accepted instance reaches store/ when promoted (receiving paused)
            stored = lz_stored() if policy == "strict" else node.wait_store(lz_stored)
            if policy == "strict":
                check(st == "Error: CannotUnderstand", f"strict: leading zero got {st} (want 0xC000)")
                check(not stored, "strict: the leading-zero instance was stored")
                check(not node.query("SELECT id FROM events WHERE kind = 'uid_not_ps35'"),
                      "strict: a uid_not_ps35 event for a refused instance")
                check(node.log_kv(r"store failed .*leading zero"),
                      "strict: no log line with the reason")
            else:
                check(st == "Success", f"{policy or 'default'}: leading zero got {st}")
                check(len(stored) == 1, f"{policy or 'default'}: stored {stored}")
                check(node.log_kv(r"uid_not_ps35"), f"{policy or 'default'}: no warning logged")
                # and indexed: the events table, as the CLI shows it
                p = rptest.run_radprep("--config", node.config_path, "events", "--kind",
                                       "uid_not_ps35", "--json", timeout=120)
                ev = json.loads(p.stdout) if p.returncode == 0 else []
                check(len(ev) == 1 and "series=" + LEADING_ZERO + ".1 " in ev[0].get("detail", ""),
                      f"{policy or 'default'}: uid_not_ps35 events in the index: {ev} "
                      f"(rc {p.returncode}: {p.stderr[-200:]})")
            for f in bad:
                check("Error" in res.status[f],
                      f"{policy or 'default'}: {os.path.basename(f)} got {res.status[f]}")
    return rptest.finish()


if __name__ == "__main__":
    sys.exit(main())
