"""A single-node Slurm cluster on loopback for integration tests: munge with its own key and
socket, slurmctld and slurmd from Debian's packages with a generated slurm.conf in a temp
dir, free ports. Needs root (slurmd runs jobs as their submitting user). Clients find the
cluster through SLURM_CONF (env())."""
import os
import shutil
import socket
import subprocess
import time

TOOLS = ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch",
         "/usr/bin/scontrol", "/usr/bin/squeue", "/usr/bin/scancel", "/usr/bin/sacct"]


def missing_tools():
    return [t for t in TOOLS if not os.access(t, os.X_OK)]


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Cluster:
    def __init__(self, root, mem_mb=4096, cpus=None):
        self.root = root
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb
        self.procs = {}
        os.makedirs(root, exist_ok=True)
        self.conf = os.path.join(root, "slurm.conf")
        self.sock = os.path.join(root, "munge.sock")
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        for d in ("state", "spool", "spool/localhost", "log"):
            os.makedirs(os.path.join(root, d), exist_ok=True)

    def env(self):
        e = dict(os.environ)
        e["SLURM_CONF"] = self.conf
        return e

    def _write_conf(self):
        r = self.root
        text = f"""ClusterName=rptest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.sock}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={r}/log/jobcomp.txt
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
OverTimeLimit=0
MessageTimeout=5
SchedulerParameters=sched_interval=1
PrologFlags=NoHold
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb} State=UNKNOWN
PartitionName=rp Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(text)

    def _spawn(self, name, argv):
        log = open(os.path.join(self.root, "log", name + ".out"), "ab")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                             start_new_session=True)
        self.procs[name] = p
        return p

    def start_munge(self):
        key = os.path.join(self.root, "munge.key")
        if not os.path.exists(key):
            with open(key, "wb") as f:
                f.write(os.urandom(1024))
            os.chmod(key, 0o400)
        self._spawn("munged", ["/usr/sbin/munged", "--foreground", "--force",
                               "--socket=" + self.sock, "--key-file=" + key,
                               "--pid-file=" + os.path.join(self.root, "munged.pid"),
                               "--log-file=" + os.path.join(self.root, "log", "munged.log"),
                               "--seed-file=" + os.path.join(self.root, "munge.seed")])
        for _ in range(100):
            if os.path.exists(self.sock):
                return
            time.sleep(0.05)
        raise RuntimeError("munged did not start: " + self.logs())

    def start_ctld(self):
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-i", "-f", self.conf])

    def stop_ctld(self):
        self._stop("slurmctld")

    def start_slurmd(self):
        self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-f", self.conf, "-N", "localhost"])

    def start(self, timeout=60):
        self._write_conf()
        self.start_munge()
        self.start_ctld()
        self.start_slurmd()
        self.wait_ready(timeout)

    def wait_ready(self, timeout=60):
        t0 = time.time()
        out = ""
        while time.time() - t0 < timeout:
            r = subprocess.run(["/usr/bin/sinfo", "-h", "-o", "%T", "-n", "localhost"],
                               capture_output=True, text=True, env=self.env())
            out = r.stdout + r.stderr
            if r.returncode == 0 and out.strip() in ("idle", "mixed", "allocated"):
                return
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{n} exited {p.returncode}: " + self.logs())
            time.sleep(0.3)
        raise RuntimeError("slurm not ready: " + out + self.logs())

    def run(self, *argv):
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env())

    def job(self, jid):
        """scontrol's view of one job as a dict ({} when unknown)."""
        r = self.run("/usr/bin/scontrol", "-o", "show", "job", str(jid))
        d = {}
        for tok in r.stdout.split():
            if "=" in tok:
                k, v = tok.split("=", 1)
                d.setdefault(k, v)
        return d

    def logs(self):
        out = []
        for n in ("slurmctld.log", "slurmd.log", "munged.log", "slurmctld.out", "slurmd.out",
                  "munged.out"):
            p = os.path.join(self.root, "log", n)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append(f"--- {n}\n" + "".join(f.readlines()[-15:]))
        return "\n".join(out)

    def _stop(self, name):
        p = self.procs.pop(name, None)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def _kill_job_processes(self):
        """Kill what jobs of this cluster left running (their environment names our conf):
        slurmstepd ends with them."""
        mark = ("SLURM_CONF=" + self.conf).encode()
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if mark in env and int(pid) not in [p.pid for p in self.procs.values()]:
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass

    def stop(self):
        # cancel what is left so that no job outlives the test (the controller may be the
        # thing a failed test left stopped)
        if "slurmctld" not in self.procs:
            self.start_ctld()
            time.sleep(2)
        self.run("/usr/bin/scancel", "--full", "-p", "rp")
        time.sleep(1)
        self._kill_job_processes()
        for n in ("slurmd", "slurmctld", "munged"):
            self._stop(n)
        self._kill_job_processes()
