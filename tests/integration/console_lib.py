"""Helpers for the console tests: a headless Chromium driven over the DevTools protocol, a
raw HTTP client (no URL normalisation: traversal tests need the bytes as written), and a
radprepd with the console on a free port and a bearer token.

Not a test itself (the name does not start with test_)."""
import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import rptest  # noqa: E402

TOKEN = "console-test-token-5f1d2a9c44e0b7a3"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def artifacts_dir():
    """Screenshots are kept under the build dir (tests/artifacts/console)."""
    d = os.path.join(rptest.BUILD_DIR, "tests", "artifacts", "console")
    os.makedirs(d, exist_ok=True)
    return d


def token_file(workdir, token=TOKEN, mode=0o600):
    p = os.path.join(workdir, "console.token")
    with open(p, "w") as f:
        f.write(token + "\n")
    os.chmod(p, mode)
    return p


def console_node(http=None, node=None, extra=None, env=None, workdir=None):
    """A Radprepd whose [http] section listens on a free loopback port with a token."""
    workdir = workdir or rptest.tempdir("console")
    sect = {"port": rptest.free_port(), "token_file": token_file(workdir)}
    sect.update(http or {})
    ex = {"http": sect}
    ex.update(extra or {})
    d = rptest.Radprepd(workdir=workdir, node=node, extra=ex, env=env)
    d.http_port = sect["port"]
    return d


# ---- raw HTTP ------------------------------------------------------------------------------

class Resp:
    def __init__(self, data):
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
        self.headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.body = body

    def json(self):
        return json.loads(self.body)


def raw_http(port, method, path, headers=None, body=b"", host="127.0.0.1", tls=False,
             raw_request=None, timeout=30):
    """One request on a fresh connection, bytes exactly as given; returns Resp."""
    s = socket.create_connection((host, port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=host)
    if raw_request is None:
        if isinstance(body, str):
            body = body.encode()
        h = {"Host": "%s:%d" % (host, port), "Connection": "close"}
        h.update(headers or {})
        if body or method == "POST":
            h["Content-Length"] = str(len(body))
        req = "%s %s HTTP/1.1\r\n" % (method, path)
        req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        raw_request = req.encode("latin-1") + body
    try:
        s.sendall(raw_request)
    except OSError:
        pass  # refused before reading everything: the answer is still there
    data = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    except (ConnectionResetError, socket.timeout, ssl.SSLError):
        pass
    s.close()
    return Resp(data)


def get_json(port, path, token=None):
    h = {"Authorization": "Bearer " + token} if token else {}
    r = raw_http(port, "GET", path, h)
    if r.status != 200:
        raise AssertionError("GET %s -> %d %r" % (path, r.status, r.body[:300]))
    return r.json()


def csrf(port, token=TOKEN):
    return get_json(port, "/api/v1/session", token)["csrf"]


def radprep_status(d):
    p = subprocess.run([rptest.radprep_bin(), "--config", d.config_path, "status", "--json"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise AssertionError("radprep status failed: %s" % p.stderr)
    return json.loads(p.stdout)


# ---- Chromium over the DevTools protocol ---------------------------------------------------

class Browser:
    """Headless Chromium with a fresh profile, one page, driven through the DevTools protocol
    (python3-websocket). Screenshots are full-page PNGs."""

    def __init__(self, width=1400, height=1000):
        import websocket
        self.udir = rptest.tempdir("chromium")
        self.port = rptest.free_port()
        self.log = open(os.path.join(self.udir, "chromium.log"), "wb")
        self.proc = subprocess.Popen(
            ["chromium"] + CHROMIUM_FLAGS +
            ["--user-data-dir=" + os.path.join(self.udir, "profile"),
             "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=%d" % self.port,
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        end = time.time() + 60
        ws_url = None
        while time.time() < end and not ws_url:
            if self.proc.poll() is not None:
                raise RuntimeError("chromium exited: %s" % self.log_tail())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port,
                                            timeout=2) as f:
                    pages = [t for t in json.load(f) if t.get("type") == "page"]
                if pages:
                    ws_url = pages[0]["webSocketDebuggerUrl"]
            except OSError:
                time.sleep(0.2)
        if not ws_url:
            raise RuntimeError("no DevTools page target: %s" % self.log_tail())
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.n = 0
        self.events = []
        self.cmd("Page.enable")
        self.cmd("Runtime.enable")

    def log_tail(self):
        try:
            with open(os.path.join(self.udir, "chromium.log"), "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def cmd(self, method, **params):
        self.n += 1
        my = self.n
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, name, timeout=30):
        end = time.time() + timeout
        for i, e in enumerate(self.events):
            if e.get("method") == name:
                del self.events[:i + 1]
                return e
        self.ws.settimeout(timeout)
        while time.time() < end:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == name:
                return msg
        raise AssertionError("no %s within %ss" % (name, timeout))

    def goto(self, url, timeout=30):
        self.events.clear()
        self.cmd("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout)

    def eval(self, expr):
        r = self.cmd("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError("JS error in %r: %s" % (expr, r["exceptionDetails"]))
        return r["result"].get("value")

    def click_and_wait(self, selector, timeout=30):
        """Click an element that submits a form or follows a link; wait for the next page."""
        self.events.clear()
        ok = self.eval("(function(){var e=document.querySelector(%s); if(!e) return false;"
                       " e.click(); return true;})()" % json.dumps(selector))
        if not ok:
            raise AssertionError("no element %s" % selector)
        self.wait_event("Page.loadEventFired", timeout)

    def url(self):
        return self.eval("location.href")

    def screenshot(self, path):
        m = self.cmd("Page.getLayoutMetrics")
        size = m.get("cssContentSize") or m["contentSize"]
        r = self.cmd("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                     clip={"x": 0, "y": 0, "width": size["width"],
                           "height": min(size["height"], 6000), "scale": 1})
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(os.path.join(self.udir, "profile"), ignore_errors=True)
