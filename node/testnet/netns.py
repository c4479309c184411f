"""Hosts in Linux network namespaces on a private bridge, with guaranteed cleanup (root only).

    with Network(["v0", "v1", "v2"]) as network:      # one namespace per host
        host = network.host("v0")                      # Host(name, namespace, address)
        subprocess.Popen(network.exec_args("v0", ["python", "-m", "http.server"]))
        network.blackhole("v0", "v1")                  # drop traffic between the pair
        network.unblackhole("v0", "v1")
        network.link_down("v2")                        # pull v2's cable at the switch
        network.link_up("v2")
        network.mount_tmpfs(path, size_bytes=64 << 20) # a small disk, unmounted at exit
    # every namespace, veth, bridge and tmpfs mount made above is gone here, also after an
    # exception, Ctrl-C (KeyboardInterrupt) or SIGTERM (turned into SystemExit while the
    # network is open in the main thread); processes still inside its namespaces are killed.

Layout: a dedicated *switch* namespace holds the bridge ``br0``; each host namespace holds
``eth0`` (one end of a veth pair whose other end, ``h<index>``, is a port of the bridge)
and ``lo`` (up). Host *i* has the address ``<subnet>.<10 + i>/24`` (default subnet
``10.77.0``). Nothing is created in the root namespace, so the bridge and the addresses
exist only inside the namespaces this network made, and two networks (in this process or
another) never clash: every namespace name starts with a run prefix ``mlt<pid>n<k>-``.

``blackhole(a, b)`` adds a blackhole route to the other's /32 in both hosts (packets are
dropped in the sender's kernel; nothing reaches the other side). ``link_down(host)`` sets
the switch side of the host's veth down (the host loses carrier, its configuration stays),
``link_up`` restores it. ``exec_args(host, argv)`` prefixes argv with ``ip netns exec NS``;
``ip`` execs the command, so the pid of a ``Popen`` of those args is the command's own pid.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

IP_COMMAND_TIMEOUT_S = 10.0  # one `ip` call; they take milliseconds, a hang is a bug
HOSTS_MAX = 200  # addresses .10 .. .209 of one /24
HOST_ADDRESS_OFFSET = 10
DEFAULT_SUBNET = "10.77.0"  # a private /24 that exists only inside our namespaces
BRIDGE_NAME = "br0"
HOST_INTERFACE = "eth0"
PREFIX_LENGTH = 24
NAMESPACE_PREFIX = "mlt"

_network_counter = itertools.count()


class NetnsError(RuntimeError):
    """An `ip` (or mount) command failed; the message holds the command and its stderr."""


@dataclass(frozen=True, slots=True)
class Host:
    name: str  # the caller's name, e.g. "v0"
    namespace: str  # e.g. "mlt4242n0-v0"
    address: str  # e.g. "10.77.0.10"
    index: int


def run_ip(arguments: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGUMENTS``; raise NetnsError with its stderr when ``check`` and it fails."""
    command = ["ip", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True,
                               timeout=IP_COMMAND_TIMEOUT_S, check=False)
    if check and completed.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {completed.stderr.strip()}")
    return completed


def namespaces_supported() -> str | None:
    """None when this process can make network namespaces, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{NAMESPACE_PREFIX}{os.getpid()}probe"
    try:
        run_ip(["netns", "add", probe])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as error:
        return f"ip netns add failed: {error}"
    run_ip(["netns", "delete", probe], check=False)
    return None


class Network:
    """N hosts on one bridge; see the module docstring. Use it as a context manager."""

    def __init__(self, host_names: Sequence[str], *, subnet: str = DEFAULT_SUBNET) -> None:
        if not host_names or len(host_names) > HOSTS_MAX:
            raise ValueError(f"need 1..{HOSTS_MAX} hosts, got {len(host_names)}")
        if len(set(host_names)) != len(host_names):
            raise ValueError(f"host names must be unique: {list(host_names)}")
        self.prefix = f"{NAMESPACE_PREFIX}{os.getpid()}n{next(_network_counter)}-"
        self.switch_namespace = self.prefix + "switch"
        self.hosts: dict[str, Host] = {
            name: Host(name=name, namespace=self.prefix + name,
                       address=f"{subnet}.{HOST_ADDRESS_OFFSET + index}", index=index)
            for index, name in enumerate(host_names)
        }
        self._made_namespaces: list[str] = []
        self._mounts: list[Path] = []
        self._blackholes: set[tuple[str, str]] = set()
        self._previous_sigterm: object = None
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Network:
        self._install_sigterm()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _create(self) -> None:
        self._add_namespace(self.switch_namespace)
        run_ip(["-n", self.switch_namespace, "link", "add", BRIDGE_NAME, "type", "bridge"])
        run_ip(["-n", self.switch_namespace, "link", "set", BRIDGE_NAME, "up"])
        run_ip(["-n", self.switch_namespace, "link", "set", "lo", "up"])
        for host in self.hosts.values():
            self._add_host(host)

    def _add_namespace(self, namespace: str) -> None:
        run_ip(["netns", "add", namespace])
        self._made_namespaces.append(namespace)

    def _add_host(self, host: Host) -> None:
        self._add_namespace(host.namespace)
        port = self._switch_port(host)
        run_ip(["-n", self.switch_namespace, "link", "add", port, "type", "veth",
                "peer", "name", HOST_INTERFACE, "netns", host.namespace])
        run_ip(["-n", self.switch_namespace, "link", "set", port, "master", BRIDGE_NAME])
        run_ip(["-n", self.switch_namespace, "link", "set", port, "up"])
        run_ip(["-n", host.namespace, "link", "set", "lo", "up"])
        run_ip(["-n", host.namespace, "addr", "add", f"{host.address}/{PREFIX_LENGTH}",
                "dev", HOST_INTERFACE])
        run_ip(["-n", host.namespace, "link", "set", HOST_INTERFACE, "up"])

    def close(self) -> None:
        """Remove everything this network made (idempotent; never raises for a leftover)."""
        if self._closed:
            return
        self._closed = True
        for mount in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True,
                           timeout=IP_COMMAND_TIMEOUT_S, check=False)
        self._mounts.clear()
        for namespace in reversed(self._made_namespaces):
            self._kill_processes_in(namespace)
            run_ip(["netns", "delete", namespace], check=False)
        self._made_namespaces.clear()
        self._restore_sigterm()

    @staticmethod
    def _kill_processes_in(namespace: str) -> None:
        """SIGKILL what still runs in a namespace we made (only we start processes there)."""
        listed = run_ip(["netns", "pids", namespace], check=False)
        for word in listed.stdout.split():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(word), signal.SIGKILL)

    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return  # the caller handles SIGTERM already; leave it alone

        def _on_sigterm(number: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + number)

        self._previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is None:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self._previous_sigterm = None

    # ------------------------------------------------------------------ queries

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise ValueError(f"no host {name!r}; hosts: {sorted(self.hosts)}") from None

    def exec_args(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv run inside the host's namespace (``ip netns exec NS argv...``)."""
        return ["ip", "netns", "exec", self.host(host).namespace, *argv]

    @staticmethod
    def _switch_port(host: Host) -> str:
        return f"h{host.index}"

    # ------------------------------------------------------------------ faults

    def blackhole(self, first: str, second: str) -> None:
        """Drop all traffic between two hosts (a blackhole route in each, to the other)."""
        pair = self._pair(first, second)
        if pair in self._blackholes:
            return
        for here, there in ((first, second), (second, first)):
            run_ip(["-n", self.host(here).namespace, "route", "add", "blackhole",
                    f"{self.host(there).address}/32"])
        self._blackholes.add(pair)

    def unblackhole(self, first: str, second: str) -> None:
        pair = self._pair(first, second)
        for here, there in ((first, second), (second, first)):
            run_ip(["-n", self.host(here).namespace, "route", "del", "blackhole",
                    f"{self.host(there).address}/32"], check=False)
        self._blackholes.discard(pair)

    def link_down(self, host: str) -> None:
        """Cut the host off the bridge (its switch port down)."""
        run_ip(["-n", self.switch_namespace, "link", "set",
                self._switch_port(self.host(host)), "down"])

    def link_up(self, host: str) -> None:
        run_ip(["-n", self.switch_namespace, "link", "set",
                self._switch_port(self.host(host)), "up"])

    def heal_all(self) -> None:
        """Every link up, every blackhole removed."""
        for pair in sorted(self._blackholes):
            self.unblackhole(*pair)
        for name in self.hosts:
            self.link_up(name)

    def _pair(self, first: str, second: str) -> tuple[str, str]:
        self.host(first), self.host(second)
        if first == second:
            raise ValueError(f"a blackhole needs two different hosts, got {first!r} twice")
        return (first, second) if first < second else (second, first)

    # ------------------------------------------------------------------ disks

    def mount_tmpfs(self, path: Path, *, size_bytes: int) -> Path:
        """Mount a tmpfs of ``size_bytes`` at ``path`` (created); unmounted by close()."""
        path.mkdir(parents=True, exist_ok=True)
        completed = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
            capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S, check=False,
        )
        if completed.returncode != 0:
            raise NetnsError(f"mount tmpfs at {path}: {completed.stderr.strip()}")
        self._mounts.append(path)
        return path


def leftover_namespaces(prefix: str) -> list[str]:
    """Namespaces whose name starts with ``prefix`` (tests: check cleanup)."""
    listed = run_ip(["netns", "list"], check=False).stdout
    names = (line.split()[0] for line in listed.splitlines() if line.strip())
    return [name for name in names if name.startswith(prefix)]


@contextlib.contextmanager
def network(host_names: Sequence[str], *, subnet: str = DEFAULT_SUBNET) -> Iterator[Network]:
    """``with network([...]) as net:`` — the same as ``with Network([...]) as net:``."""
    with Network(host_names, subnet=subnet) as made:
        yield made
