"""radprepd as a program: command line, configuration errors, overrides, systemd
notifications (READY=1 after the port is open, WATCHDOG=1 pings, STOPPING=1), association
events in the index, one log line per association with its facts.
"""
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

BIN = rptest.radprepd_bin()


def run(args, timeout=20):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=timeout)


class TestCommandLine(unittest.TestCase):
    def test_help(self):
        p = run(["--help"])
        self.assertEqual(p.returncode, 0)
        for opt in ("--config", "--port", "--ae-title", "--data-dir", "--foreground"):
            self.assertIn(opt, p.stdout)

    def test_bad_config_one_line_reason(self):
        d = rptest.tempdir("badconf")
        ini = rptest.write_ini(os.path.join(d, "bad.ini"), {"node": {"port": 11112,
                                                                      "no_such_key": 1}})
        p = run(["--config", ini, "--data-dir", d])
        self.assertEqual(p.returncode, 2, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertRegex(lines[0], r"bad\.ini:\d+")
        p = run(["--config", os.path.join(d, "missing.ini")])
        self.assertEqual(p.returncode, 2)
        p = run(["--port", "abc"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("--port", p.stderr)
        p = run(["--ae-title", "THIS_IS_FAR_TOO_LONG_FOR_AN_AE"])
        self.assertEqual(p.returncode, 2)

    def test_port_in_use(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        d = rptest.tempdir("inuse")
        ini = rptest.write_ini(os.path.join(d, "c.ini"), {"node": {"bind": "127.0.0.1"}})
        p = run(["--config", ini, "--port", str(port), "--data-dir", d + "/data"])
        s.close()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("bind", p.stderr)

    def test_one_node_per_data_dir(self):
        first = rptest.Radprepd().start()
        try:
            p = run(["--config", first.config_path, "--port", str(rptest.free_port())])
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("another radprepd (pid %d)" % first.pid, p.stderr)
            self.assertEqual(rptest.echoscu(first.port).returncode, 0)
        finally:
            self.assertEqual(first.stop(), 0)

    def test_command_line_overrides_file(self):
        node = rptest.Radprepd(ae="FILEAE")
        port = rptest.free_port()
        node.args = ["--port", str(port), "--ae-title", "CLIAE"]
        node.port = port
        node.start()
        try:
            self.assertEqual(rptest.echoscu(port, aec="CLIAE").returncode, 0)
            self.assertNotEqual(rptest.echoscu(port, aec="FILEAE").returncode, 0)
            node.wait_log(r"association rejected .*called_ae=FILEAE")
        finally:
            self.assertEqual(node.stop(), 0)


class TestMaxPdu(unittest.TestCase):
    def test_max_pdu_extremes_still_receive(self):
        f = os.path.join(rptest.SHARED_DATA, "ct_chest_lidc0001", "000002.dcm")
        for pdu in (0, 4096, 131072):
            node = rptest.Radprepd(node={"max_pdu": pdu}).start()
            try:
                self.assertEqual(rptest.storescu(node.port, [f]).ok(), [f], (pdu, node.log_tail()))
            finally:
                self.assertEqual(node.stop(), 0)


class TestSystemd(unittest.TestCase):
    def test_ready_watchdog_stopping(self):
        sockdir = tempfile.mkdtemp(prefix="notify_")
        path = os.path.join(sockdir, "notify.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(path)
        srv.settimeout(0.2)
        node = rptest.Radprepd(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        node.start(wait_ready=False)
        msgs = []
        end = time.time() + 20
        ready_at = None
        try:
            while time.time() < end:
                try:
                    m = srv.recv(4096).decode()
                except socket.timeout:
                    continue
                msgs.append(m)
                if "READY=1" in m and ready_at is None:
                    ready_at = time.time()
                    # READY means the port accepts and reconciliation is done
                    self.assertEqual(rptest.echoscu(node.port).returncode, 0)
                    self.assertIn("reconcile done", node.log())
                if ready_at and sum("WATCHDOG=1" in x for x in msgs) >= 3:
                    break
            self.assertIsNotNone(ready_at, msgs)
            self.assertGreaterEqual(sum("WATCHDOG=1" in x for x in msgs), 3, msgs)
            node.proc.send_signal(15)
            end = time.time() + 20
            while time.time() < end and not any("STOPPING=1" in x for x in msgs):
                try:
                    msgs.append(srv.recv(4096).decode())
                except socket.timeout:
                    pass
            self.assertTrue(any("STOPPING=1" in x for x in msgs), msgs)
        finally:
            self.assertEqual(node.stop(), 0)
            srv.close()
            os.unlink(path)
            os.rmdir(sockdir)


class TestEventsAndLogs(unittest.TestCase):
    def test_association_events_and_log_lines(self):
        node = rptest.Radprepd(peers={"ct": {"ae_title": "CTSCU"}}).start()
        try:
            f = os.path.join(rptest.SHARED_DATA, "ct_chest_lidc0001", "000001.dcm")
            r = rptest.storescu(node.port, [f], aet="CTSCU")
            self.assertEqual(r.ok(), [f], r.out)
            self.assertNotEqual(rptest.echoscu(node.port, aet="STRANGER").returncode, 0)
            acc = node.log_kv(r"association accepted")[-1]
            self.assertEqual((acc["calling_ae"], acc["called_ae"]), ("CTSCU", "RADPREP"))
            self.assertRegex(acc["peer"], r"^127\.0\.0\.1:\d+$")
            st = node.log_kv(r"scp: stored sop=")[-1]
            for k in ("sop", "series", "study", "bytes", "ts"):
                self.assertIn(k, st)
            self.assertEqual(st["ts"], "1.2.840.10008.1.2.1")
            rel = node.wait_log(r"association released calling_ae=CTSCU .*stored=1 failed=0 "
                                r"bytes=\d+ seconds=[0-9.]+")
            self.assertTrue(rel)
            self.assertNotIn("NO [peer] CONFIGURED", node.log())
        finally:
            self.assertEqual(node.stop(), 0)
        ev = [d for (d,) in node.query("SELECT detail FROM events WHERE kind = 'association'")]
        self.assertTrue(any("result=released" in d and "calling_ae=CTSCU" in d and
                            "stored=1" in d for d in ev), ev)
        self.assertTrue(any("result=rejected" in d and "calling_ae=STRANGER" in d for d in ev), ev)

    def test_no_peers_is_loud(self):
        node = rptest.Radprepd().start()
        try:
            node.wait_log(r"WARN .*NO \[peer\] CONFIGURED: accepting associations from ANY")
        finally:
            self.assertEqual(node.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
