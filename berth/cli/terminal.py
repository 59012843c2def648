"""``berth container exec -it``: a command with a TTY in a container, on the session websocket.

The same session ``openstack appcontainer exec --interactive`` opens: ``execute`` with
``run=false&interactive=true`` answers a single-use websocket URL (subprotocol
``binary``); this terminal is put in raw mode, its keys go to the command and the
command's output comes back, and its size (now and on every SIGWINCH) is sent with
``execute_resize``. The session ends when the command exits, when stdin ends, or with
Berth's escape ``~.`` typed after Enter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from berth.cli.client import BerthClient, CliError

__all__ = ["interactive_exec"]


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """The terminal in raw mode (keys go through as typed), restored afterwards."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)  # keep what was typed ahead
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.columns, size.lines


def _pump_stdin(ws: ClientConnection, fd: int) -> None:
    """Send what is typed until stdin ends or the session does."""
    with contextlib.suppress(ConnectionClosed, OSError):
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            ws.send(data)
    with contextlib.suppress(Exception):
        ws.close()


def interactive_exec(client: BerthClient, name: str, command: str) -> None:
    """Run ``command`` with a TTY in container ``name``, wired to this terminal."""
    session: dict[str, Any] = client.call(
        "POST",
        f"/containers/{name}/execute",
        params={"run": "false", "interactive": "true"},
        json={"command": command},
        what=f"container {name}",
    )
    exec_id, url = str(session["exec_id"]), str(session["proxy_url"])
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()

    def resize(*_: object) -> None:
        size = _size(stdout) or _size(stdin)
        if size is None:
            return
        with contextlib.suppress(CliError):
            client.call(
                "POST",
                f"/containers/{name}/execute_resize",
                params={"exec_id": exec_id, "w": size[0], "h": size[1]},
                what=f"container {name}",
            )

    try:
        ws = connect(url, subprotocols=["binary"], open_timeout=30, max_size=None)  # type: ignore[list-item]
    except InvalidStatus as exc:
        raise CliError(
            f"the session on container {name} was refused ({exc.response.status_code}): "
            f"{exc.response.body.decode(errors='replace')[:300]} Try again; the container must "
            "be Running."
        ) from exc
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        raise CliError(
            f"cannot open the session at {url.split('?')[0]} ({exc}): check that Berth's "
            "public_url is reachable from here."
        ) from exc
    previous = signal.signal(signal.SIGWINCH, resize) if os.isatty(stdout) else None
    try:
        resize()
        with _raw(stdin):
            threading.Thread(target=_pump_stdin, args=(ws, stdin), daemon=True).start()
            with contextlib.suppress(ConnectionClosed):
                for message in ws:
                    data = message.encode() if isinstance(message, str) else message
                    os.write(stdout, data)
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        with contextlib.suppress(Exception):
            ws.close()
