"""Running the API with uvicorn inside a process that also runs delivery workers (`bijli
headend serve --http HOST:PORT`): the server is one more task of the process's asyncio loop,
and the process's own SIGINT / SIGTERM handlers stop it (`server.should_exit = True`)."""
import contextlib
import socket

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process it runs in."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


def bind(address):
    """A listening TCP socket on 'HOST:PORT' (port 0: any free one); ValueError when the
    address is malformed, OSError when it cannot be bound (in use, not this host's)."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("--http must be HOST:PORT (e.g. 127.0.0.1:8080; port 0: any free "
                         "one), got %r" % address)
    port = int(port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle off only on sockets whose proto says TCP (with
    # 0 a keep-alive client waited ~40 ms per answer for a delayed ACK)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def make_server(app):
    """An EmbeddedServer for `app` (then `await server.serve([bound socket])`)."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            server_header=False)
    return EmbeddedServer(config)
