#!/usr/bin/python3
"""systemd/: the unit, sysusers and tmpfiles snippets are valid and hardened, and the daemon
speaks the sd_notify protocol the unit relies on (Type=notify READY after the port is open,
WATCHDOG=1 pings, STOPPING=1).

- `systemd-analyze verify` on the unit (ExecStart pointed at the built binaries, since verify
  checks that they exist) must print nothing and exit 0; a deliberately broken copy must make
  it complain, so the check itself is known to work.
- `systemd-analyze security --offline=true` must rate the unit's exposure <= 2.0.
- systemd-sysusers / systemd-tmpfiles --root on a scratch root create the user and the
  directories owned by it.
- radprepd started with NOTIFY_SOCKET/WATCHDOG_USEC pointing at our datagram socket sends
  READY=1 only once its port accepts connections, then WATCHDOG=1 at least twice per
  WatchdogSec, and STOPPING=1 on SIGTERM.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "lib")]
import jobs_lib as rp  # noqa: E402
import rptest  # noqa: E402

SRC = rptest.SOURCE_DIR
UNIT = os.path.join(SRC, "systemd", "radprepd.service")
SYSUSERS = os.path.join(SRC, "systemd", "radprep.sysusers.conf")
TMPFILES = os.path.join(SRC, "systemd", "radprep.tmpfiles.conf")
ENV = dict(os.environ, SYSTEMD_LOG_LEVEL="warning", SYSTEMD_COLORS="0", SYSTEMD_PAGER="")


def unit_text():
    with open(UNIT) as f:
        return f.read()


def unit_keys(text):
    keys = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        k, _, v = line.partition("=")
        keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def built(name):
    """The binary of this build: the unit must name what the tests just built (a missing
    one fails, it is never replaced by another program)."""
    return rptest.require_built(rptest.radprepd_bin() if name == "radprepd"
                                else rptest.radprep_bin())


class TestUnitFile(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rp_systemd_")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def local_copy(self, text, name="radprepd.service"):
        text = text.replace("/usr/bin/radprepd", built("radprepd"))
        text = text.replace("/usr/bin/radprep ", built("radprep") + " ")
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def verify(self, path):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", path], env=ENV,
                           capture_output=True, text=True, timeout=60)
        # verify prints warnings (unknown keys, bad values) without failing: both count.
        noise = [l for l in (r.stdout + r.stderr).splitlines() if l.strip()]
        return r.returncode, noise

    def test_verify_clean(self):
        rc, noise = self.verify(self.local_copy(unit_text()))
        self.assertEqual((rc, noise), (0, []))

    def test_verify_catches_mistakes(self):
        # The same check must see a typo and a bad value: otherwise it proves nothing.
        bad = unit_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
        rc, noise = self.verify(self.local_copy(bad, "bad1.service"))
        self.assertTrue(any("NoNewPrivilege" in l for l in noise), noise)
        bad = unit_text().replace("Type=notify", "Type=notifyy")
        rc, noise = self.verify(self.local_copy(bad, "bad2.service"))
        self.assertTrue(noise, "a bad Type= went unnoticed")

    def test_required_settings(self):
        k = unit_keys(unit_text())
        want = {
            "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure",
            "User": "radprep", "StateDirectory": "radprep", "ProtectSystem": "strict",
            "PrivateTmp": "yes", "NoNewPrivileges": "yes", "ProtectHome": "yes",
            "CapabilityBoundingSet": "", "KillMode": "mixed", "OOMPolicy": "continue",
        }
        for key, val in want.items():
            self.assertIn(key, k, key)
            self.assertEqual(k[key][0], val, key)
        self.assertIn("WatchdogSec", k)
        self.assertGreaterEqual(int(k["WatchdogSec"][0].rstrip("s")), 10)
        fams = k["RestrictAddressFamilies"][0].split()
        self.assertEqual(sorted(fams), ["AF_INET", "AF_INET6", "AF_UNIX"])
        # the worker limits need setrlimit/setpriority: @resources must not be filtered out
        for v in k.get("SystemCallFilter", []):
            if v.startswith("~"):
                self.assertNotIn("@resources", v)
        # an unprivileged port needs no capability
        self.assertEqual(k.get("AmbientCapabilities", [""])[0], "")

    def test_security_exposure(self):
        path = self.local_copy(unit_text())
        r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", path],
                           env=ENV, capture_output=True, text=True, timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout + r.stderr)
        self.assertIsNotNone(m, r.stdout[-2000:] + r.stderr[-2000:])
        score = float(m.group(1))
        print(f"systemd-analyze security exposure: {score}", file=sys.stderr)
        self.assertLessEqual(score, 2.0)

    def test_sysusers_and_tmpfiles(self):
        root = os.path.join(self.tmp, "root")
        os.makedirs(os.path.join(root, "etc"))
        for sub, src in (("sysusers.d", SYSUSERS), ("tmpfiles.d", TMPFILES)):
            d = os.path.join(root, "usr", "lib", sub)
            os.makedirs(d)
            shutil.copy(src, os.path.join(d, "radprep.conf"))
        r = subprocess.run(["systemd-sysusers", f"--root={root}", "radprep.conf"], env=ENV,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(root, "etc", "passwd")) as f:
            pw = [l.split(":") for l in f if l.startswith("radprep:")]
        self.assertEqual(len(pw), 1)
        uid = int(pw[0][2])
        self.assertGreater(uid, 0)
        self.assertLess(uid, 1000, "a system user")
        self.assertEqual(pw[0][5], "/var/lib/radprep")
        self.assertIn("nologin", pw[0][6])
        r = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "radprep.conf"],
                           env=ENV, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        for d in ("var/lib/radprep", "var/lib/radprep/store", "var/lib/radprep/outputs"):
            st = os.stat(os.path.join(root, d))
            self.assertEqual(st.st_mode & 0o777, 0o750, d)
            if os.geteuid() == 0:
                self.assertEqual(st.st_uid, uid, d)
        # the configuration the unit names exists, readable by the service's group only,
        # and is valid (empty = built-in defaults): what ExecStartPre checks
        ini = os.path.join(root, "etc", "radprep", "radprep.ini")
        st = os.stat(ini)
        self.assertEqual(st.st_mode & 0o777, 0o640)
        if os.geteuid() == 0:
            self.assertEqual((st.st_uid, st.st_gid), (0, int(pw[0][3])))
        r = subprocess.run([built("radprep"), "--config", ini, "check-config", "--quiet"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # a second run never overwrites an edited file
        with open(ini, "a") as f:
            f.write("[node]\nport = 11113\n")
        subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "radprep.conf"],
                       env=ENV, capture_output=True, text=True, timeout=60)
        with open(ini) as f:
            self.assertIn("port = 11113", f.read())


class TestNotifyProtocol(unittest.TestCase):
    """The daemon speaks the protocol the unit relies on, checked with our own notify socket
    (no running systemd needed): what `Type=notify` + `WatchdogSec=` would see."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="rp_notify_")
        self.sock_path = os.path.join(self.tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.sock_path)

    def tearDown(self):
        self.sock.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def recv(self, timeout):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(4096).decode()
        except socket.timeout:
            return None

    def test_ready_watchdog_stopping(self):
        rptest.require_built(rp.RADPREPD)
        node = rp.Node(os.path.join(self.tmp, "n"), quiet_s=1)
        # First life: leave a series that goes quiet while the node is down, so that the
        # second start has reconciliation work to do before it may say READY.
        node.start()
        files, _, uid = rp.make_series(os.path.join(self.tmp, "f"), 3)
        rc, ok, out = rp.storescu(node.port, files)
        self.assertEqual((rc, ok), (0, 3), out[-1000:])
        node.stop(signal.SIGKILL)
        time.sleep(1.5)
        off = len(node.log())
        node.start(env={"NOTIFY_SOCKET": self.sock_path, "WATCHDOG_USEC": "1000000"},
                   wait_ready=False)
        try:
            msg, t0 = None, time.time()
            while time.time() - t0 < 30:
                msg = self.recv(1.0)
                if msg and "READY=1" in msg.split("\n"):
                    break
                self.assertIsNone(node.proc.poll(), node.log()[-2000:])
            self.assertIn("READY=1", msg or "", "no READY=1 within 30 s")
            # READY means: the port accepts, reconciliation and overdue completions are done
            with socket.create_connection(("127.0.0.1", node.port), timeout=2):
                pass
            log = node.log()[off:]
            self.assertIn("reconcile done", log)
            self.assertIn("series completed at start n=1", log)
            # watchdog pings at least every WATCHDOG_USEC / 2
            pings, t1 = 0, time.time()
            while time.time() - t1 < 3.0:
                m = self.recv(0.5)
                if m and "WATCHDOG=1" in m.split("\n"):
                    pings += 1
            self.assertGreaterEqual(pings, 4, "watchdog pings in 3 s")
            node.wait_job(uid, 1, timeout=30)
            node.proc.send_signal(signal.SIGTERM)
            got_stopping, t2 = False, time.time()
            while time.time() - t2 < 30 and not got_stopping:
                m = self.recv(1.0)
                got_stopping = bool(m and "STOPPING=1" in m.split("\n"))
            self.assertTrue(got_stopping)
            self.assertEqual(node.proc.wait(timeout=60), 0)
        finally:
            node.stop(signal.SIGKILL)


if __name__ == "__main__":
    unittest.main(verbosity=2)
