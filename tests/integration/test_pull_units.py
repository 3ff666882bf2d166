#!/usr/bin/python3
"""systemd/radprep-pull@.service and .timer: valid for `systemd-analyze verify` (ExecStart
pointed at the built radprep), hardened (exposure <= 2.0), the service runs `radprep pull %i`
with the installed configuration; and the timer's command works outside a window: a [pull]
section whose window is closed exits 0 at once without asking the PACS (none is running)."""
import datetime
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

ENV = dict(os.environ, SYSTEMD_LOG_LEVEL="warning", SYSTEMD_COLORS="0", SYSTEMD_PAGER="")
failures = []


def check(cond, msg):
    print(("ok: " if cond else "FAIL: ") + msg)
    if not cond:
        failures.append(msg)


def main():
    src = os.path.join(rptest.SOURCE_DIR, "systemd")
    d = rptest.tempdir("pullunits")
    with open(os.path.join(src, "radprep-pull@.service")) as f:
        unit = f.read()
    check(re.search(r"^ExecStart=/usr/bin/radprep --config /etc/radprep/radprep.ini pull %i$",
                    unit, re.M) is not None, "ExecStart runs radprep pull %i")
    check("AF_INET" in unit and "PrivateNetwork" not in unit, "the unit may reach the PACS")
    with open(os.path.join(d, "radprep-pull@.service"), "w") as f:
        f.write(unit.replace("/usr/bin/radprep", rptest.radprep_bin()))
    shutil.copy(os.path.join(src, "radprep-pull@.timer"), d)
    r = subprocess.run(["systemd-analyze", "verify", "radprep-pull@t.service",
                        "radprep-pull@t.timer"], cwd=d, capture_output=True, text=True, env=ENV)
    check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
          "systemd-analyze verify is silent (%s%s)" % (r.stdout, r.stderr))
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                        os.path.join(d, "radprep-pull@.service")], capture_output=True,
                       text=True, env=ENV)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
    check(m is not None and float(m.group(1)) <= 2.0,
          "exposure <= 2.0 (%s)" % (m.group(1) if m else r.stdout[-300:]))

    # outside the window: nothing done, exit 0, no PACS needed
    now = datetime.datetime.now()
    a = (now + datetime.timedelta(hours=2)).strftime("%H:%M")
    b = (now + datetime.timedelta(hours=3)).strftime("%H:%M")
    conf = rptest.write_ini(os.path.join(d, "radprep.ini"), {
        "node": {"data_dir": os.path.join(d, "data"), "port": rptest.free_port()},
        "peer pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": rptest.free_port(),
                      "find": True, "move": True},
        "pull later": {"peer": "pacs", "study_date": "yesterday", "window": "%s-%s" % (a, b)},
    })
    os.makedirs(os.path.join(d, "data"))
    r = subprocess.run([rptest.radprep_bin(), "--config", conf, "pull", "later"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "outside its window" in r.stdout,
          "outside its window: exit 0, nothing done (%s%s)" % (r.stdout, r.stderr))
    r = subprocess.run([rptest.radprep_bin(), "--config", conf, "check-config"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "check-config accepts [pull] sections (%s)" % r.stderr.strip())
    r = subprocess.run([rptest.radprep_bin(), "--config", conf, "pull", "nosuch"],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 2 and "no [pull nosuch]" in r.stderr, "unknown pull: usage error")
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
