"""tls_lib — throw-away PKI for the TLS tests and the TLS benchmark, made with `openssl` at run
time: a CA, a server certificate (CN=localhost, SAN 127.0.0.1), client certificates from that
CA, from another CA, and an expired one. Keys are 0600 (radprepd refuses readable keys).
"""

import os
import subprocess


def _run(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" % (" ".join(args), p.stderr))
    return p.stdout


def _key(path):
    _run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    os.chmod(path, 0o600)


def make_ca(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    _key(key)
    _run("req", "-x509", "-new", "-key", key, "-sha256", "-days", "30", "-subj",
         "/O=radprep test/CN=%s" % name, "-out", crt,
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, crt


def make_cert(d, name, ca_key, ca_crt, cn, days=30, expired=False, server=False):
    """Certificate signed by ca; expired=True gives one whose validity ended yesterday."""
    key, csr, crt = (os.path.join(d, name + ext) for ext in (".key", ".csr", ".crt"))
    _key(key)
    _run("req", "-new", "-key", key, "-subj", "/O=radprep test/CN=%s" % cn, "-out", csr)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("keyUsage=digitalSignature,keyEncipherment\n")
        f.write("extendedKeyUsage=%s\n" % ("serverAuth,clientAuth" if server else "clientAuth"))
        if server:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    if expired:
        # `openssl x509 -req` cannot backdate; `openssl ca` can, with a minimal ca config.
        cadir = os.path.join(d, name + "_ca")
        os.makedirs(cadir, exist_ok=True)
        open(os.path.join(cadir, "index.txt"), "w").close()
        with open(os.path.join(cadir, "serial"), "w") as f:
            f.write("1000\n")
        cnf = os.path.join(cadir, "ca.cnf")
        with open(cnf, "w") as f:
            f.write("[ca]\ndefault_ca=t\n[t]\ndir=%s\ndatabase=$dir/index.txt\n"
                    "serial=$dir/serial\nnew_certs_dir=$dir\ndefault_md=sha256\n"
                    "policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
                    "organizationName=optional\n" % cadir)
        _run("ca", "-batch", "-config", cnf, "-cert", ca_crt, "-keyfile", ca_key, "-in", csr,
             "-out", crt, "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
             "-extfile", ext, "-notext")
    else:
        _run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
             "-days", str(days), "-sha256", "-extfile", ext, "-out", crt)
    return key, crt


def fingerprint(crt):
    """SHA-256 of the certificate, lower-case hex without colons."""
    out = _run("x509", "-in", crt, "-noout", "-fingerprint", "-sha256")
    return out.strip().split("=", 1)[1].replace(":", "").lower()


class PKI:
    """Everything the tests need, in directory d."""

    def __init__(self, d):
        self.dir = d
        self.ca_key, self.ca = make_ca(d, "ca")
        self.other_ca_key, self.other_ca = make_ca(d, "otherca")
        self.server_key, self.server = make_cert(d, "server", self.ca_key, self.ca, "localhost",
                                                 server=True)
        self.client_key, self.client = make_cert(d, "client", self.ca_key, self.ca, "CT1 client")
        self.client2_key, self.client2 = make_cert(d, "client2", self.ca_key, self.ca,
                                                   "CT2 client")
        self.rogue_key, self.rogue = make_cert(d, "rogue", self.other_ca_key, self.other_ca,
                                               "CT1 client")
        self.expired_key, self.expired = make_cert(d, "expired", self.ca_key, self.ca,
                                                   "CT1 client", expired=True)

    def tls_section(self, port, **kw):
        s = {"port": port, "cert": self.server, "key": self.server_key, "ca_file": self.ca}
        s.update(kw)
        return s


def tls_args(key, crt, ca):
    """dcmtk storescu/echoscu options for an authenticated TLS connection trusting ca."""
    return ["+tls", key, crt, "-pw", "+cf", ca] if key else ["+tla", "+cf", ca]
