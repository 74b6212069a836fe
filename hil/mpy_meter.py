"""The firmware's board entry (`firmware.main.run`) in real MicroPython, driven from the host.

- `UnixMeter`: a MicroPython unix-port process in a state directory (firmware/hal/unix.py):
  DLMS/HDLC on a TCP port, NVM in a file, the host's clock.
- `QemuMeter`: the Cortex-M3 board QEMU emulates (mps2-an385) running an image with the
  firmware frozen in (hil/mpy_build.py): its serial port on a TCP port; the settings and the
  provisioning go in over the raw REPL (the board has no filesystem; firmware/hal/qemu.py).
- `utility_session()`: one full utility DLMS session over HDLC (HLS-GMAC association,
  ciphered GETs, token entry through IC 115, release) with the bijli host client.

The token key and the DLMS keys used here are INSECURE test keys (the demo keys).
"""
import json
import os
import pathlib
import socket
import subprocess
import time

from firmware import token_codec as tc

ROOT = pathlib.Path(__file__).resolve().parent.parent
INSECURE_TEST_TOKEN_KEY = bytes(range(16))
ENTRY = "from firmware.main import run\nrun(%s)\n"


def free_port():
    """A TCP port free on 127.0.0.1 right now (the process given it binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provisioning(meter_id, token_key=INSECURE_TEST_TOKEN_KEY, keys=None):
    """The provisioning record of a test meter: its id and its token key (revision 0; by
    default the INSECURE test token key), or `keys` {revision: key} when given."""
    keys = keys if keys is not None else {0: token_key}
    return {"meter_id": meter_id, "keys": {str(r): k.hex() for r, k in keys.items()}}



def _end(proc):
    """Terminate `proc` (kill it if it has not gone after 10 s); its (stdout, stderr), or
    ("", "") when there is no process."""
    if proc is None:
        return "", ""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()

class UnixMeter:
    """`firmware.main.run()` in the MicroPython unix port `exe`, in `state_dir`.

    `heap`: -X heapsize; `path`: the import path (default: the project's sources, then the
    image's frozen modules); `board`: extra bijli_board.json settings; `token_key`: the
    meter's token key (default: the INSECURE test token key); `prov`: the whole provisioning
    record instead (a new meter only); `address`: (host, port) its UART listens on (default a
    free loopback port); `output`: where its stdout/stderr go (default: pipes, returned by
    stop(); None: this process's).
    """

    def __init__(self, exe, state_dir, meter_id="BJ00000901", heap=None, path=None, board=None,
                 token_key=INSECURE_TEST_TOKEN_KEY, prov=None, address=None,
                 output=subprocess.PIPE):
        self.exe = exe
        self.state = pathlib.Path(state_dir)
        self.meter_id = meter_id
        self.token_key = token_key
        self.prov = prov
        self.heap = heap
        self.path = path or [str(ROOT), ".frozen"]
        self.host, self.port = address or ("127.0.0.1", free_port())
        self.output = output
        self.board = dict({"hal": "unix", "tcp": "%s:%d" % (self.host, self.port), "wdt_ms": 0},
                          **(board or {}))
        self.proc = None

    @property
    def address(self):
        return (self.host, self.port)

    def start(self):
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "bijli_board.json").write_text(json.dumps(self.board))
        if not (self.state / "bijli.nvm").exists():
            (self.state / "bijli_provision.json").write_text(
                json.dumps(self.prov or provisioning(self.meter_id, self.token_key)))
        cmd = [str(self.exe)] + (["-X", "heapsize=%d" % self.heap] if self.heap else [])
        cmd += ["-c", ENTRY % ""]
        env = dict(os.environ, MICROPYPATH=os.pathsep.join(self.path))
        self.proc = subprocess.Popen(cmd, cwd=self.state, env=env, stdout=self.output,
                                     stderr=self.output, text=True)
        return self

    def stop(self):
        """Stop the process; returns (stdout, stderr)."""
        out, err = _end(self.proc)
        self.proc = None
        return out, err

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def qemu_command(elf, port, host="127.0.0.1", monitor_port=None, log=None):
    """qemu-system-arm running `elf` on mps2-an385, its serial port a TCP server on
    `host`:`port` (and QEMU's monitor one on 127.0.0.1:`monitor_port` when given); `log`: a
    file QEMU copies everything the board sends on its serial port to (its console output
    between the HDLC frames: the firmware's fault lines)."""
    monitor = "tcp:127.0.0.1:%d,server=on,wait=off" % monitor_port if monitor_port else "null"
    serial = "socket,id=serial0,host=%s,port=%d,server=on,wait=off" % (host, port)
    if log is not None:
        serial += ",logfile=%s,logappend=on" % log
    return ["qemu-system-arm", "-machine", "mps2-an385", "-nographic", "-monitor", monitor,
            "-semihosting", "-chardev", serial, "-serial", "chardev:serial0",
            "-kernel", str(elf)]


def _read_until(sock, marker, deadline):
    got = b""
    while marker not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("board did not answer %r (got %r)" % (marker, got[-200:]))
        sock.settimeout(left)
        chunk = sock.recv(512)
        if not chunk:
            raise ConnectionError("board closed the serial port (got %r)" % got[-200:])
        got += chunk
    return got


class QemuBoard:
    """QEMU running the MicroPython image `elf` on mps2-an385; its REPL on a TCP port."""

    def __init__(self, elf, boot_timeout=60, address=None, log=None):
        self.elf = elf
        self.log = log  # a file QEMU copies the serial port's output to (qemu_command)
        self.host, self.port = address or ("127.0.0.1", free_port())
        self.monitor_port = free_port()
        self.boot_timeout = boot_timeout
        self.proc = None
        self.sock = None

    @property
    def address(self):
        return (self.host, self.port)

    def start(self):
        self.proc = subprocess.Popen(qemu_command(self.elf, self.port, self.host,
                                                  self.monitor_port, self.log),
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.sock = self._connect(self.address)
        return self

    def _connect(self, address):
        """A connection to one of QEMU's TCP servers (it opens them shortly after starting)."""
        deadline = time.monotonic() + self.boot_timeout
        while True:
            try:
                return socket.create_connection(address, timeout=1)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("QEMU did not start: %s" % self.stop()[1]) from None
                time.sleep(0.05)  # poll interval while QEMU opens the socket

    def reset(self):
        """Reset the board (QEMU's system_reset: the CPU, the GC heap and MicroPython start
        afresh; RAM outside the image, where the QEMU HAL keeps its NVM, keeps its contents, as
        a board's flash does) and connect to its serial port again."""
        self.release_serial()
        deadline = time.monotonic() + self.boot_timeout
        with self._connect(("127.0.0.1", self.monitor_port)) as mon:
            _read_until(mon, b"(qemu)", deadline)
            mon.sendall(b"system_reset\n")
            _read_until(mon, b"(qemu)", deadline)
        self.sock = self._connect(self.address)

    def raw_exec(self, code, wait=True, timeout=300):
        """Run `code` through the raw REPL. wait: return (stdout, error text) when it ends;
        else return None as soon as the board has accepted it (it keeps running)."""
        deadline = time.monotonic() + timeout
        self.sock.sendall(b"\r\x03\x03\x01")  # interrupt whatever runs, enter the raw REPL
        _read_until(self.sock, b"raw REPL; CTRL-B to exit\r\n>", deadline)
        self.sock.sendall(code.encode() + b"\x04")
        got = _read_until(self.sock, b"OK", deadline)
        if not wait:
            return None
        got = got[got.index(b"OK") + 2:]
        while got.count(b"\x04") < 2:
            got += _read_until(self.sock, b"\x04", deadline)
        out, err = got.split(b"\x04")[:2]
        return out.decode(errors="replace"), err.decode(errors="replace")

    def release_serial(self):
        """Close our connection to the serial port (another client may connect)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def stop(self):
        """Stop QEMU; returns (stdout, stderr) as text."""
        self.release_serial()
        out, err = _end(self.proc)
        self.proc = None
        if isinstance(out, bytes):
            out, err = out.decode(errors="replace"), err.decode(errors="replace")
        return out, err

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class QemuMeter(QemuBoard):
    """`firmware.main.run(board=..., prov=...)` on the QEMU board running `elf`; the serial
    port is left free for a DLMS client (HDLC) once the meter runs.

    `ballast`: bytes allocated (and kept) before the meter starts, to shrink the GC heap the
    meter can use without rebuilding the image (benches bisect it); `token_key`: the meter's
    token key (default: the INSECURE test token key); `log`: see qemu_command.
    """

    def __init__(self, elf, meter_id="BJ00000902", ballast=0, board=None, boot_timeout=60,
                 token_key=INSECURE_TEST_TOKEN_KEY, prov=None, address=None, log=None):
        super().__init__(elf, boot_timeout, address, log)
        self.meter_id = meter_id
        self.token_key = token_key
        self.prov = prov
        self.ballast = ballast
        self.board = dict({"hal": "qemu", "meter_id": meter_id}, **(board or {}))

    def start(self):
        super().start()
        self._run(self.prov or provisioning(self.meter_id, self.token_key))
        return self

    def restart(self):
        """Reset the board and start the meter again, without provisioning: it boots on what
        its NVM kept (a board's reboot)."""
        self.reset()
        self._run(None)

    def _run(self, prov):
        code = "_ballast = bytearray(%d)\n" % self.ballast if self.ballast else ""
        code += ENTRY % ("board=%r, prov=%r" % (self.board, prov))
        try:
            self.raw_exec(code, wait=False, timeout=self.boot_timeout)
        finally:
            self.release_serial()


def credit_token(meter_id, rupees, token_id=1):
    """A credit token's 20 digits for the test meter (INSECURE test key)."""
    cipher = tc.TokenCipher(INSECURE_TEST_TOKEN_KEY, meter_id)
    return cipher.encrypt(tc.TYPE_CREDIT, tc.encode_value(tc.TYPE_CREDIT, rupees), token_id, 0, 0)


def utility_session(address, meter_id, rupees=100, timeout=10.0, connect_timeout=30.0,
                    framing="hdlc", token=None):
    """One utility session over HDLC (or `framing` "wrapper"): associate (HLS-GMAC), read
    balance and energy (ciphered GETs), enter a credit token (`token`: these digits instead),
    read the balance again, release. Returns a dict of results; raises protocol errors
    (LinkError on no answer) when the meter cannot serve it."""
    from protocol.client import DlmsClient
    from protocol.keys import demo_keys
    from protocol.transport import TcpTransport

    retries = max(1, int(connect_timeout / 0.2))
    transport = TcpTransport(address[0], address[1], timeout=timeout, retries=retries,
                             retry_delay=0.2)
    client = DlmsClient(transport, framing=framing, role="utility", keys=demo_keys(),
                        timeout=timeout, retries=1)
    with client:
        before = client.balance()
        energy = client.energy()
        result = client.enter_token(token or credit_token(meter_id, rupees))
        after = client.balance()
    return {"before": before, "after": after, "energy": energy, "token": result}
