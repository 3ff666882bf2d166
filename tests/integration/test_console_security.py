#!/usr/bin/python3
"""The console's safety rules against a running radprepd:

- binding beyond loopback without TLS, or with TLS but without authentication, or with a
  token file others can read: radprepd refuses to start (exit 2) and says why;
- bound beyond loopback (0.0.0.0, kept on 127.0.0.1 by the bind_loopback shim) with TLS
  and a token: plain HTTP gets nothing, pages redirect to /login, the API and /metrics say
  401 without the token and answer with it; metrics_open = yes opens /metrics alone;
- an action without the token, or with the token and a wrong CSRF token, gets 403 and
  changes nothing (the series stays receiving, no job appears); with both it works, and the
  audit events record the refusal and the action;
- path traversal (plain, percent-encoded, encoded NUL) and oversized requests (URL, header,
  body) are refused, and a foreign Host header on a loopback bind too (DNS rebinding).
"""
import os
import socket
import ssl
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import console_lib as cl  # noqa: E402
import rptest  # noqa: E402

CT3 = os.path.join(rptest.SHARED_DATA, "seg_with_source_ct", "ct_3slice")


def self_signed(workdir):
    cert, key = os.path.join(workdir, "node.crt"), os.path.join(workdir, "node.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=radprep-console-test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.chmod(key, 0o600)
    return cert, key


def ca_and_certs(workdir):
    """A CA, a node certificate and a client certificate signed by it, and a client
    certificate from another CA. Returns a dict of paths."""
    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, timeout=60)
    p = {k: os.path.join(workdir, k) for k in (
        "ca.key", "ca.crt", "node.key", "node.csr", "node.crt", "client.key", "client.csr",
        "client.crt", "other.key", "other.crt")}
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=test-ca",
        "-keyout", p["ca.key"], "-out", p["ca.crt"])
    for who in ("node", "client"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % who,
            "-keyout", p[who + ".key"], "-out", p[who + ".csr"])
        run("x509", "-req", "-in", p[who + ".csr"], "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
            "-CAcreateserial", "-days", "30", "-out", p[who + ".crt"])
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=intruder",
        "-keyout", p["other.key"], "-out", p["other.crt"])
    for k in ("ca.key", "node.key", "client.key", "other.key"):
        os.chmod(p[k], 0o600)
    return p


def run_refused(sections):
    """radprepd with this config must exit 2 at once; returns its stderr."""
    w = rptest.tempdir("console_refuse")
    cfg = {"node": {"port": rptest.free_port(), "bind": "127.0.0.1",
                    "data_dir": os.path.join(w, "data"), "min_free_mb": 1}}
    cfg.update(sections)
    path = rptest.write_ini(os.path.join(w, "r.ini"), cfg)
    p = subprocess.run([rptest.radprepd_bin(), "--config", path], capture_output=True,
                       text=True, timeout=60)
    return p.returncode, p.stderr


class RefuseToStart(unittest.TestCase):
    def test_remote_bind_needs_tls_and_auth(self):
        rc, err = run_refused({"http": {"port": rptest.free_port(), "bind": "0.0.0.0"}})
        self.assertEqual(rc, 2, err)
        self.assertIn("[http] bind 0.0.0.0 is not loopback", err)
        self.assertIn("tls = yes", err)
        w = rptest.tempdir("console_cert")
        cert, key = self_signed(w)
        rc, err = run_refused({"tls": {"cert": cert, "key": key},
                               "http": {"port": rptest.free_port(), "bind": "0.0.0.0",
                                        "tls": True}})
        self.assertEqual(rc, 2, err)
        self.assertIn("needs authentication", err)
        tok = cl.token_file(w, mode=0o644)
        rc, err = run_refused({"tls": {"cert": cert, "key": key},
                               "http": {"port": rptest.free_port(), "bind": "0.0.0.0",
                                        "tls": True, "token_file": tok}})
        self.assertEqual(rc, 2, err)
        self.assertIn("chmod 600", err)
        os.chmod(tok, 0o600)
        with open(tok, "w") as f:
            f.write("short\n")
        rc, err = run_refused({"http": {"port": rptest.free_port(), "token_file": tok}})
        self.assertEqual(rc, 2, err)
        self.assertIn("at least 16 characters", err)


class RemoteTls(unittest.TestCase):
    def start(self, metrics_open):
        w = rptest.tempdir("console_tls")
        cert, key = self_signed(w)
        d = cl.console_node(workdir=w,
                            http={"bind": "0.0.0.0", "tls": True, "metrics_open": metrics_open},
                            extra={"tls": {"cert": cert, "key": key}},
                            env={"LD_PRELOAD": rptest.bind_loopback_shim()}).start()
        self.assertTrue(rptest.wait_for_port(d.http_port, 15, d.proc))
        return d

    def test_tls_token(self):
        d = self.start(False)
        try:
            port = d.http_port
            # plain HTTP on the TLS port gets no page
            r = cl.raw_http(port, "GET", "/api/v1/status", timeout=10)
            self.assertNotEqual(r.status, 200)
            # TLS without the token
            r = cl.raw_http(port, "GET", "/", tls=True)
            self.assertEqual(r.status, 303)
            self.assertEqual(r.headers["location"], "/login")
            self.assertIn("max-age", r.headers.get("strict-transport-security", ""))
            for path in ("/api/v1/status", "/metrics", "/api/v1/series"):
                self.assertEqual(cl.raw_http(port, "GET", path, tls=True).status, 401, path)
            self.assertEqual(cl.raw_http(port, "GET", "/login", tls=True).status, 200)
            self.assertEqual(cl.raw_http(port, "GET", "/static/console.css", tls=True).status,
                             200)
            auth = {"Authorization": "Bearer " + cl.TOKEN}
            r = cl.raw_http(port, "GET", "/api/v1/status", auth, tls=True)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.json()["node"]["ae_title"], "RADPREP")
            self.assertEqual(cl.raw_http(port, "GET", "/metrics", auth, tls=True).status, 200)
            wrong = {"Authorization": "Bearer " + cl.TOKEN[:-1] + "x"}
            self.assertEqual(cl.raw_http(port, "GET", "/api/v1/status", wrong, tls=True).status,
                             401)
            # the login form sets a Secure session cookie
            r = cl.raw_http(port, "POST", "/login",
                            {"Content-Type": "application/x-www-form-urlencoded"},
                            "token=%s&next=/series" % cl.TOKEN, tls=True)
            self.assertEqual(r.status, 303)
            self.assertIn("Secure", r.headers["set-cookie"])
            cookie = r.headers["set-cookie"].split(";")[0]
            self.assertEqual(cl.raw_http(port, "GET", "/series", {"Cookie": cookie},
                                         tls=True).status, 200)
        finally:
            d.stop()

    def test_metrics_open(self):
        d = self.start(True)
        try:
            self.assertEqual(cl.raw_http(d.http_port, "GET", "/metrics", tls=True).status, 200)
            self.assertEqual(cl.raw_http(d.http_port, "GET", "/api/v1/status", tls=True).status,
                             401)
        finally:
            d.stop()


class ClientCert(unittest.TestCase):
    def test_client_certificate(self):
        w = rptest.tempdir("console_mtls")
        p = ca_and_certs(w)
        port = rptest.free_port()
        d = rptest.Radprepd(workdir=w, extra={
            "tls": {"cert": p["node.crt"], "key": p["node.key"], "ca_file": p["ca.crt"]},
            "http": {"port": port, "bind": "0.0.0.0", "tls": True, "client_cert": True}},
            env={"LD_PRELOAD": rptest.bind_loopback_shim()}).start()
        try:
            self.assertTrue(rptest.wait_for_port(port, 15, d.proc))

            def get(path, cert=None):
                ctx = ssl.create_default_context(cafile=p["ca.crt"])
                ctx.check_hostname = False
                if cert:
                    ctx.load_cert_chain(p[cert + ".crt"], p[cert + ".key"])
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20))
                s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close"
                           "\r\n\r\n" % (path, port)).encode())
                data = b""
                try:
                    while True:
                        c = s.recv(65536)
                        if not c:
                            break
                        data += c
                except (ssl.SSLError, OSError):
                    pass
                s.close()
                return cl.Resp(data)

            r = get("/api/v1/session", "client")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["auth"], "client_cert")
            self.assertTrue(r.json()["csrf"])
            self.assertEqual(get("/api/v1/status", "client").status, 200)
            self.assertEqual(get("/api/v1/status").status, 401)
            self.assertEqual(get("/api/v1/status", "other").status, 401)
        finally:
            d.stop()


class LoopbackRules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        files = rptest.dicom_files(CT3)
        assert len(files) == 3, "test data missing: %s" % CT3
        cls.d = cl.console_node(extra={"completion CT": {"quiet_s": 3600}}).start()
        r = rptest.storescu(cls.d.port, files)
        assert len(r.ok()) == 3, r.out[-2000:]
        end = time.time() + 30
        while time.time() < end and not cls.d.query("SELECT series_uid FROM series"):
            time.sleep(0.1)
        cls.uid = cls.d.query("SELECT series_uid FROM series")[0][0]
        cls.port = cls.d.http_port

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def snapshot(self):
        return (self.d.query("SELECT state, version, completed_reason FROM series"),
                self.d.query("SELECT * FROM jobs"), self.d.query("SELECT * FROM outbox"))

    def test_actions_need_token_and_csrf(self):
        path = "/api/v1/series/%s/trigger" % self.uid
        before = self.snapshot()
        self.assertEqual(before[0][0][0], "receiving")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        auth = {"Authorization": "Bearer " + cl.TOKEN}
        tries = [
            ({}, ""),                                               # no token
            (dict(form), "csrf=whatever"),                          # no token, a CSRF guess
            ({"Authorization": "Bearer not-the-token-0000000"}, ""),  # wrong token
            (dict(auth), ""),                                       # token, no CSRF token
            (dict(auth, **{"X-CSRF-Token": "0" * 32}), ""),         # token, wrong CSRF token
            (dict(auth, **form), "csrf=" + "f" * 32),               # token, wrong form field
        ]
        for headers, body in tries:
            r = cl.raw_http(self.port, "POST", path, headers, body)
            self.assertEqual(r.status, 403, (headers, r.body))
        for p in ("/api/v1/jobs/1/retry", "/api/v1/outbox/1/retry"):
            self.assertEqual(cl.raw_http(self.port, "POST", p, {}, "").status, 403)
        self.assertEqual(self.snapshot(), before)
        # GET never acts
        self.assertEqual(cl.raw_http(self.port, "GET", path, auth).status, 404)
        self.assertEqual(self.snapshot(), before)
        refused = self.d.query("SELECT detail FROM events WHERE kind = 'console'")
        self.assertEqual(len(refused), 3, refused)  # the token holders with a bad CSRF token
        self.assertTrue(all("result=refused" in x[0] and "CSRF" in x[0] for x in refused))
        # with both tokens it works
        h = dict(auth, **{"X-CSRF-Token": cl.csrf(self.port)})
        r = cl.raw_http(self.port, "POST", path, h, "")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.d.query("SELECT state, completed_reason FROM series")[0],
                         ("complete", "operator"))
        self.assertTrue(self.d.query("SELECT 1 FROM events WHERE kind = 'console' AND detail "
                                     "LIKE 'action=trigger series=%s result=ok by=token%%'"
                                     % self.uid))

    def test_traversal_and_host(self):
        for p in ("/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
                  "/static/..%2f..%2f..%2fetc%2fpasswd", "/outputs/../../etc/passwd",
                  "/static/console.css%00.png", "/jobs/1/log/../../../etc/passwd",
                  "//etc/passwd", "/static/\\..\\..\\etc\\passwd"):
            r = cl.raw_http(self.port, "GET", p)
            self.assertIn(r.status, (400, 404), p)
            self.assertNotIn(b"root:", r.body)
        r = cl.raw_http(self.port, "GET", "/api/v1/status", {"Host": "attacker.example"})
        self.assertEqual(r.status, 403)
        self.assertEqual(cl.raw_http(self.port, "GET", "/api/v1/status",
                                     {"Host": "localhost:%d" % self.port}).status, 200)

    def test_oversized(self):
        big = "a" * (100 * 1024)
        r = cl.raw_http(self.port, "GET", "/series?q=" + big)
        self.assertIn(r.status, (414, 431, 413))
        r = cl.raw_http(self.port, "GET", "/", {"X-Filler": big})
        self.assertIn(r.status, (431, 413, 414))
        r = cl.raw_http(self.port, "POST", "/api/v1/series/%s/trigger" % self.uid,
                        {"Authorization": "Bearer " + cl.TOKEN,
                         "Content-Type": "application/x-www-form-urlencoded"},
                        "csrf=" + "x" * (64 * 1024))
        self.assertEqual(r.status, 413)
        # the server is still there
        self.assertEqual(cl.raw_http(self.port, "GET", "/api/v1/status").status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
