"""A fork server for the stock ``openstack`` CLI: its code, without its start-up.

Each ``openstack`` run costs about a second of CPU before it sends a request
(the interpreter, ~800 ms of imports, the plug-ins' entry points), and the compat
suite runs the CLI over a thousand times, on the same two cores as the servers
under test. This process imports the CLI and its plug-ins once, then forks a
child per connection that runs exactly what the ``openstack`` script runs,
``openstackclient.shell.main(argv)``, with the caller's environment, working
directory, stdin from /dev/null and stdout/stderr into the caller's files, and
reports the exit status. Each run is a fresh copy of the warmed-up process, so no
state passes from one run to the next. ``tests/compat/oscli.py`` is the client;
``BERTH_TEST_OSC_FORK=0`` runs every command as its own process instead, and
tests/compat/test_osc_forkserver.py checks both give the same answers.

Protocol, one connection per run: the client sends one JSON line
``{"argv": [...], "env": {...}, "cwd": ..., "stdout": path, "stderr": path}``; the
server's child answers ``{"pid": N}`` at once and ``{"rc": N}`` when done.
Usage: ``python osc_forkserver.py OPENSTACK_SCRIPT SOCKET_PATH`` (prints ``ready`` when
listening; the script's path is ``sys.argv[0]`` from the start, as the CLI takes its
name from it at import time).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from importlib.metadata import entry_points

# What the `openstack` script imports, and the command and auth plug-ins it would
# load on its way to a command: imported here once, inherited by every child.
_PRELOAD_GROUPS = ("openstack.cli.base", "openstack.cli.extension")


def _preload() -> None:
    import openstackclient.shell  # noqa: F401  (the CLI itself)
    from keystoneauth1 import loading

    for group in _PRELOAD_GROUPS:
        for ep in entry_points(group=group):
            _load(ep)
    # The command modules of every API the suite drives (each group is one API's
    # commands, e.g. openstack.container.v1), and keystoneauth's password plug-in.
    for group in entry_points().groups:
        if group.startswith("openstack.") and group not in _PRELOAD_GROUPS:
            for ep in entry_points(group=group):
                _load(ep)
    loading.get_plugin_loader("password")


def _load(ep: object) -> None:
    # A plug-in that cannot load fails the same way again in the child, as it would.
    with contextlib.suppress(Exception):
        ep.load()  # type: ignore[attr-defined]


def _run(conn: socket.socket) -> int:
    """In the forked child: run one ``openstack`` command as the request says."""
    request = json.loads(conn.makefile("rb").readline())
    conn.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_TRUNC)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_TRUNC)
    for fd, target in ((devnull, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    sys.argv = list(request["argv"])
    from openstackclient.shell import main

    try:
        rc = main(sys.argv[1:])
    except SystemExit as exc:  # argparse's errors, --help: as the interpreter would
        if exc.code is None:
            rc = 0
        elif isinstance(exc.code, int):
            rc = exc.code
        else:
            print(exc.code, file=sys.stderr)
            rc = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return int(rc or 0)


def _die_with(parent: int, home: str) -> None:
    """Exit once the test process that started this server is gone, its socket's
    directory removed: pytest-xdist's workers end without running ``atexit`` (where
    ``oscli`` stops the server), and a killed run runs nothing at all."""
    while os.getppid() == parent:
        time.sleep(1)
    if os.path.basename(home).startswith("berth-osc-"):
        shutil.rmtree(home, ignore_errors=True)
    os._exit(0)


def serve(script: str, path: str) -> None:
    sys.argv = [script]
    # Started before the imports: a parent that dies meanwhile is still noticed. Only
    # this process has the thread (fork copies the calling thread alone).
    watch = (os.getppid(), os.path.dirname(os.path.abspath(path)))
    threading.Thread(target=_die_with, args=watch, daemon=True).start()
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children reap themselves
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            conn.close()
            continue
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the CLI may wait on its own children
        rc = 1
        try:
            rc = _run(conn)
        except BaseException:  # reported as the interpreter would, exit 1
            traceback.print_exc()
        finally:
            try:
                conn.sendall(json.dumps({"rc": rc}).encode() + b"\n")
            finally:
                os._exit(rc)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
