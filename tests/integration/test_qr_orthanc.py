#!/usr/bin/python3
"""Query/retrieve against Orthanc as the PACS: radprep find, pull, scheduled pulls.

Orthanc (under the loopback shim, radprep registered in its DicomModalities) is loaded through
its own C-STORE with four studies from the shared data: the 3-slice CT (20030417), the Siemens
brain MR (6 series, 173 instances, 20230113), the GE head CT with gantry tilt (no date; one
file held back) and a DX chest radiograph. radprepd runs with quiet periods of 120 s and no
header-based expected counts, so a series that completes within seconds completed on the
count C-FIND announced. Checks, in order:
  1. find: studies and series with the right counts (table and JSON), a date filter.
  2. pull --study (with --rule): every instance arrives, the series completes by the announced
     count, the pull's rule runs (series.json names it).
  3. the same study again ([pull ct3], by accession, dataset=ct3): nothing is retrieved, the
     dataset is curated.
  4. [pull nightly] (study_date = yesterday, --now 2023-01-14T03:00): Orthanc is stopped after
     the first series: the run reports the PACS's reason and exits 1; after a restart the next
     run retrieves only what is missing; only the matching study was ever retrieved.
  5. a series that changes on the PACS between C-FIND and C-MOVE is reported as changed.
  6. a move to an AE Orthanc does not know: a clear error naming it; C-GET still works.
  7. a scheduled C-GET pull whose window ends 3 s after it starts stops cleanly (exit 0,
     series left, run 'stopped'); the next run retrieves exactly what was left.
Everything is recorded: `radprep pulls` shows each run and each series.
"""
import glob
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rptest  # noqa: E402
from qr_orthanc import Orthanc  # noqa: E402

DATA = rptest.SHARED_DATA
failures = []


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)
    return cond


def radprep(conf, *args, timeout=300):
    p = subprocess.run([rptest.radprep_bin(), "--config", conf] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return p


def files(sub):
    out = []
    for f in rptest.dicom_files(os.path.join(DATA, sub)):
        if rptest.file_sop_info(f):
            out.append(f)
    return out


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def main():
    ct3 = files("seg_with_source_ct/ct_3slice")
    mr = files("mr_brain_siemens_xa30")
    gantry = files("ct_head_gantry_tilt_uneven_ge")
    dx = [os.path.join(DATA, "xray", "dx_chest_nih_sc_mono2_8bit.dcm")]
    if len(ct3) != 3 or len(mr) != 173 or len(gantry) != 28 or not os.path.exists(dx[0]):
        print("FAIL: shared data missing under %s (ct3 %d, mr %d, gantry %d)" %
              (DATA, len(ct3), len(mr), len(gantry)))
        return 1
    import pydicom
    hdr = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in ct3 + mr + gantry + dx}
    ct3_study = str(hdr[ct3[0]].StudyInstanceUID)
    mr_study = str(hdr[mr[0]].StudyInstanceUID)
    gantry_study = str(hdr[gantry[0]].StudyInstanceUID)
    gantry_series = str(hdr[gantry[0]].SeriesInstanceUID)
    dx_series = str(hdr[dx[0]].SeriesInstanceUID)
    mr_counts = {}
    for f in mr:
        s = str(hdr[f].SeriesInstanceUID)
        mr_counts[s] = mr_counts.get(s, 0) + 1

    work = rptest.tempdir("qr")
    os.makedirs(os.path.join(work, "node"))
    node = rptest.Radprepd(
        workdir=os.path.join(work, "node"), ae="RADPREP",
        node={"workers": 1},
        peers={"pacs": {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": 1,
                        "find": True, "move": True, "get": True}})
    orth = Orthanc(os.path.join(work, "orthanc"),
                   modalities={"radprep": ["RADPREP", "127.0.0.1", node.port]})
    # the node's config needs Orthanc's port, and Orthanc needs the node's: write both now
    extra = {
        "completion CT": {"quiet_s": 120, "use_expected_count": False},
        "completion MR": {"quiet_s": 120, "use_expected_count": False},
        "completion DX": {"quiet_s": 120, "use_expected_count": False},
        "rule pulltest": {"modality": "XX", "steps": "hu", "outputs": "nifti json",
                          "priority": 100},
        "rule mr_cheap": {"modality": "MR", "steps": "normalize(minmax)",
                          "outputs": "nifti json", "priority": 100},
        "rule dx_cheap": {"modality": "DX CR", "steps": "normalize(minmax)", "outputs": "json",
                          "priority": 100},
        "pull ct3": {"peer": "pacs", "accession": "03086212", "rule": "pulltest",
                     "dataset": "ct3"},
        "pull nightly": {"peer": "pacs", "study_date": "yesterday", "window": "20:00-06:00",
                         "max_concurrent": 1, "max_series": 50, "pause_ms": 1500,
                         "retries": 1, "retry_backoff_s": 1},
    }
    sections = {"node": {"ae_title": "RADPREP", "port": node.port, "bind": "127.0.0.1",
                         "data_dir": node.data_dir, "min_free_mb": 1, "workers": 1,
                         "acse_timeout_s": 10, "dimse_timeout_s": 60},
                "peer pacs": {"ae_title": "ORTHANC", "host": "127.0.0.1", "port": orth.port,
                              "find": True, "move": True, "get": True}}
    sections.update(extra)
    rptest.write_ini(node.config_path, sections)
    conf = node.config_path

    orth.start()
    try:
        orth.load(ct3 + mr + [f for f in gantry if not f.endswith("28.dcm")] + dx)
        check(orth.count_instances() == 3 + 173 + 27 + 1, "Orthanc holds the 4 studies")
        node.start()

        # ---- 1. find --------------------------------------------------------------------
        r = radprep(conf, "find", "--peer", "pacs", "--json")
        check(r.returncode == 0, "find --json exits 0 (%s)" % r.stderr.strip())
        studies = {s["study_uid"]: s for s in json.loads(r.stdout or "[]")}
        check(len(studies) == 4, "find lists 4 studies (got %d)" % len(studies))
        want = {ct3_study: (1, 3), mr_study: (6, 173), gantry_study: (1, 27)}
        for uid, (ns, ni) in want.items():
            s = studies.get(uid, {})
            check((s.get("series"), s.get("instances")) == (ns, ni),
                  "study %s...: %s series, %s instances (want %d, %d)" %
                  (uid[:24], s.get("series"), s.get("instances"), ns, ni))
        r = radprep(conf, "find", "--peer", "pacs", "--level", "series", "--study", mr_study)
        check(r.returncode == 0, "find --level series exits 0")
        rows = [l.split() for l in r.stdout.splitlines()[1:] if l.strip()]
        got = {}
        for row in rows:
            # study_uid series_uid number modality body_part description... instances here
            got[row[1]] = int(row[-2])
        check(got == mr_counts, "series table: the 6 MR series with their instance counts")
        r = radprep(conf, "find", "--peer", "pacs", "--date", "20230113", "--json")
        check([s["study_uid"] for s in json.loads(r.stdout or "[]")] == [mr_study],
              "find --date 20230113: only the MR study")
        r = radprep(conf, "find", "--peer", "pacs", "--level", "series", "--modality", "CT",
                    "--json")
        check(r.returncode == 0 and
              {s["series_uid"] for s in json.loads(r.stdout or "[]")} ==
              {str(hdr[ct3[0]].SeriesInstanceUID), gantry_series},
              "find --level series --modality CT: the two CT series")

        # ---- 2. pull a study ----------------------------------------------------------------
        t0 = time.time()
        r = radprep(conf, "pull", "--peer", "pacs", "--study", ct3_study, "--rule", "pulltest")
        print(r.stdout.strip())
        check(r.returncode == 0, "pull --study exits 0 (%s)" % r.stderr.strip())
        ct3_series = str(hdr[ct3[0]].SeriesInstanceUID)
        # acknowledged means durable; the index follows within a batch
        n = wait_for(lambda: node.query(
            "SELECT count(*) FROM instances i JOIN series s ON s.id = i.series_fk"
            " WHERE s.series_uid = ?", (ct3_series,))[0][0] == 3 and 3, 10) or 0
        check(n == 3, "every instance of the study arrived (%d of 3)" % n)
        done = wait_for(lambda: node.query(
            "SELECT state, completed_reason, completed_at FROM series WHERE series_uid = ?"
            " AND state <> 'receiving'", (ct3_series,)), 30)
        check(bool(done) and done[0][1] == "expected_count" and done[0][2] - t0 < 30,
              "series complete on the announced count within seconds, not the 120 s quiet "
              "period (%s)" % (done,))
        ev = node.query("SELECT detail FROM events WHERE kind = 'series_complete' AND detail"
                        " LIKE ?", ("%" + ct3_series + "%",))
        check(bool(ev) and "announced by C-FIND" in ev[0][0], "event says: announced by C-FIND")
        r = radprep(conf, "pulls", "--last", "--json")
        items = json.loads(r.stdout or "[]")
        check(len(items) == 1 and items[0]["completed"] == "announced_count" and
              items[0]["announced"] == 3 and items[0]["retrieved"] == 3,
              "pulls --last: announced 3, retrieved 3, completed announced_count (%s)" % items)
        job = wait_for(lambda: node.query("SELECT state, output_dir FROM jobs WHERE series_uid = ?"
                                          " AND state IN ('done','dead')", (ct3_series,)), 120)
        check(bool(job) and job[0][0] == "done", "the pulled series was processed (%s)" % job)
        if job and job[0][1]:
            sj = json.load(open(os.path.join(job[0][1], "series.json")))
            check(sj.get("rule") == "pulltest", "processed with the pull's rule (%s)" %
                  sj.get("rule"))

        # ---- 3. the same again: nothing to do; dataset curated ---------------------------
        before = node.query("SELECT count(*) FROM instances")[0][0]
        r = radprep(conf, "pull", "ct3", "--wait-s", "60")
        print(r.stdout.strip())
        check(r.returncode == 0, "pull ct3 exits 0 (%s)" % r.stderr.strip())
        check("1 already here, 0 retrieved" in r.stdout, "second pull retrieves nothing")
        check(node.query("SELECT count(*) FROM instances")[0][0] == before, "no new instance")
        man = os.path.join(node.data_dir, "datasets", "ct3", "manifest.json")
        check(os.path.exists(man), "dataset ct3 curated after the pull")

        # a list of accessions/UIDs, dry run: planned, nothing retrieved, nothing recorded
        lst = os.path.join(work, "list.txt")
        with open(lst, "w") as f:
            f.write("# what the researcher asked for\n03086212\nstudy=%s  # the MR\n" % mr_study)
        runs_before = len(json.loads(radprep(conf, "pulls", "--json").stdout or "[]"))
        r = radprep(conf, "pull", "--peer", "pacs", "--file", lst, "--dry-run")
        check(r.returncode == 0 and r.stdout.count("present, skip") == 1 and
              r.stdout.count("-> retrieve") == 6 and "nothing retrieved" in r.stdout and
              len(json.loads(radprep(conf, "pulls", "--json").stdout or "[]")) == runs_before,
              "--file LIST --dry-run plans 1 present + 6 to retrieve, records nothing")
        r = radprep(conf, "pull", "--peer", "pacs", "--study", "1.2.*")
        check(r.returncode == 2 and "not a UID" in r.stderr, "a wildcard UID is a usage error")

        # ---- 4. scheduled pull, Orthanc stopped mid-run, resumed --------------------------
        p = subprocess.Popen([rptest.radprep_bin(), "--config", conf, "pull", "nightly",
                              "--now", "2023-01-14T03:00:00"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        first = wait_for(lambda: node.query(
            "SELECT count(*) FROM pull_items pi JOIN pulls p ON p.id = pi.pull_fk"
            " WHERE p.name = 'nightly' AND pi.state IN ('moved','complete')")[0][0], 60, 0.05)
        check(first >= 1, "nightly: a first series was moved")
        orth.stop()
        out, err = p.communicate(timeout=120)
        print(out.strip())
        check(p.returncode == 1, "nightly with the PACS down exits 1 (%d)" % p.returncode)
        check("Connection refused" in err or "aborted" in err,
              "nightly reports the reason: %s" % err.strip())
        runs = json.loads(radprep(conf, "pulls", "nightly", "--json").stdout or "[]")
        check(runs and runs[0]["state"] in ("partial", "failed") and runs[0]["left"] >= 1 and
              runs[0]["reason"], "pulls: the run is recorded with what is left and why")
        had = node.query("SELECT count(DISTINCT series_uid) FROM pull_items WHERE study_uid = ?"
                         " AND state IN ('moved','complete')", (mr_study,))[0][0]
        orth.start()
        r = radprep(conf, "pull", "nightly", "--now", "2023-01-14T03:00:00")
        print(r.stdout.strip())
        check(r.returncode == 0, "nightly after the restart exits 0 (%s)" % r.stderr.strip())
        m = re.search(r"(\d+) series found, (\d+) already here, (\d+) retrieved", r.stdout)
        check(m is not None and int(m.group(1)) == 6 and int(m.group(2)) >= had and
              int(m.group(2)) + int(m.group(3)) == 6,
              "the next run retrieves only what was missing (%s)" % ((m.groups() if m else None),))
        mr_count = ("SELECT count(*) FROM instances i JOIN series s ON s.id = i.series_fk"
                    " JOIN studies st ON st.id = s.study_fk WHERE st.study_uid = ?")
        wait_for(lambda: node.query(mr_count, (mr_study,))[0][0] == 173, 10)
        n = node.query(mr_count, (mr_study,))[0][0]
        check(n == 173, "all 173 MR instances are here (%d)" % n)
        others = node.query("SELECT count(*) FROM studies WHERE study_uid IN (?, ?)",
                            (gantry_study, str(hdr[dx[0]].StudyInstanceUID)))[0][0]
        check(others == 0, "the date filter retrieved only the matching study")
        done = wait_for(lambda: node.query(
            "SELECT count(*) FROM series se JOIN studies st ON st.id = se.study_fk"
            " WHERE st.study_uid = ? AND se.state <> 'receiving'", (mr_study,))[0][0] == 6, 60)
        check(done, "the 6 MR series completed (by the announced count: quiet is 120 s)")

        # ---- 5. a series that changes between C-FIND and C-MOVE ---------------------------
        p = subprocess.Popen([rptest.radprep_bin(), "--config", conf, "pull", "--peer", "pacs",
                              "--series", dx_series, "--series", gantry_series,
                              "--pause-ms", "4000"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        wait_for(lambda: node.query("SELECT count(*) FROM pull_items WHERE series_uid = ? AND"
                                    " state IN ('moved','complete')", (dx_series,))[0][0], 60,
                 0.05)
        orth.load([f for f in gantry if f.endswith("28.dcm")])
        out, err = p.communicate(timeout=120)
        print(out.strip())
        check(p.returncode == 1 and "changed on the PACS" in err and "announced 27" in err,
              "a series changed between find and move is reported: %s" % err.strip())
        items = json.loads(radprep(conf, "pulls", "--last", "--json").stdout or "[]")
        st = {i["series_uid"]: i["state"] for i in items}
        check(st.get(gantry_series) == "changed" and st.get(dx_series) in ("moved", "complete"),
              "pulls --last: %s" % st)

        # ---- 6. a move destination Orthanc does not know; C-GET ---------------------------
        bad = os.path.join(work, "bad.ini")
        sec = dict(sections)
        sec["node"] = dict(sections["node"], ae_title="NOBODY",
                           data_dir=os.path.join(work, "bad_data"), port=rptest.free_port())
        os.makedirs(os.path.join(work, "bad_data"))
        rptest.write_ini(bad, sec)
        r = radprep(bad, "pull", "--peer", "pacs", "--study", ct3_study)
        check(r.returncode == 1 and "NOBODY" in r.stderr and "0xC000" in r.stderr,
              "unknown move destination: a clear error: %s" % r.stderr.strip())
        r = radprep(bad, "pull", "--peer", "pacs", "--study", ct3_study, "--get")
        check(r.returncode == 0 and "1 retrieved" in r.stdout, "C-GET retrieves the series (%s %s)" %
              (r.stdout.strip(), r.stderr.strip()))
        stored = glob.glob(os.path.join(work, "bad_data", "store", ct3_study, "*", "*.dcm"))
        check(len(stored) == 3, "C-GET: 3 instances durable in the store (%d)" % len(stored))
        r = radprep(bad, "pulls")
        print(r.stdout)

        # ---- 7. the end of the window: the run stops cleanly, the next one resumes -------
        import datetime
        now = datetime.datetime.now()
        win = "%s-%s" % ((now - datetime.timedelta(minutes=1)).strftime("%H:%M:%S"),
                         (now + datetime.timedelta(seconds=3)).strftime("%H:%M:%S"))
        sec["pull edge"] = {"peer": "pacs", "study_date": "20230113", "method": "get",
                            "window": win, "pause_ms": 5000}
        rptest.write_ini(bad, sec)
        r = radprep(bad, "pull", "edge")
        print(r.stdout.strip())
        m = re.search(r"(\d+) retrieved, (\d+) failed, (\d+) left", r.stdout)
        check(r.returncode == 0 and "window closed" in r.stdout and m is not None and
              int(m.group(1)) >= 1 and int(m.group(3)) >= 1 and
              int(m.group(1)) + int(m.group(3)) == 6,
              "the run stops at the end of its window, exit 0, series left (%s)" %
              r.stderr.strip())
        runs = json.loads(radprep(bad, "pulls", "edge", "--json").stdout or "[]")
        check(runs and runs[0]["state"] == "stopped" and "window closed" in (runs[0]["reason"] or ""),
              "pulls: the run is 'stopped' with the reason")
        r = radprep(bad, "pull", "edge", "--ignore-window")
        m2 = re.search(r"(\d+) already here, (\d+) retrieved, (\d+) failed, (\d+) left",
                       r.stdout)
        check(r.returncode == 0 and m and m2 and int(m2.group(1)) == int(m.group(1)) and
              int(m2.group(2)) == int(m.group(3)) and int(m2.group(4)) == 0,
              "the next run resumes with what was left (%s)" % r.stdout.strip()[-200:])
    finally:
        node.stop()
        orth.stop()
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
