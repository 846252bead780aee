"""`invoke logs`: a service's container logs from every app host at once, merged in time order.

Each app host (in parallel, one thread and SSH connection per host) lists the service's
containers by compose labels (rolling `<project>`, the colors `<project>-blue|green`; for
`traefik` the edge project), then runs `docker logs --timestamps` on each. Lines of stdout and
stderr of every container of every host are merged by their timestamps and printed as
`<host> <container> <timestamp> <line>`. `--grep` keeps lines containing the text (here, not in
a shell on the host). `--follow` streams every container's `docker logs --follow` (in a pty,
so closing the channel on Ctrl-C ends the remote command too) and prints lines as they come.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cerniq_ops import compose, hosts
from cerniq_ops.errors import BadInput
from cerniq_ops.settings import HostSpec, Settings

DEFAULT_LINES = 100  # without --since or --lines: the last 100 lines of each container
FOLLOW_LINES = 10  # --follow starts from each container's last lines
SINCE_RE = re.compile(
    r"(?:\d+(?:ns|us|ms|s|m|h))+|\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:\d{2})?)?|\d{9,10}",
    re.ASCII,
)
TIMESTAMP_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class Source:
    """A container whose logs are read: on which host, its id and its (display) name."""

    host: str
    id: str
    name: str


@dataclass(frozen=True)
class Line:
    key: tuple[str, str]  # (seconds part, nanoseconds zero-padded): sorts in time order
    host: str
    container: str
    stamp: str
    text: str

    def render(self) -> str:
        return f"{self.host} {self.container} {self.stamp} {self.text}"


@dataclass(frozen=True)
class Query:
    service: str
    since: str | None
    lines: int | None
    grep: str | None
    follow: bool


# -- pure ------------------------------------------------------------------------------------
def check_query(
    s: Settings,
    service: str,
    since: str | None,
    lines: object,
    grep: str | None,
    follow: bool,
) -> Query:
    """The options, checked (BadInput before anything connects)."""
    from cerniq_ops.deploy_inputs import number

    known = [*s.services, "traefik"]
    if service not in known:
        raise BadInput(f"unknown service {service!r}; choose one of: {', '.join(known)}")
    if since is not None and not SINCE_RE.fullmatch(since):
        raise BadInput(
            f"invalid --since {since!r}: a duration like 10m or 1h30m, or a time like "
            "2026-12-03T10:00:00Z"
        )
    count = None if lines is None else int(number("lines", lines, kind=int, minimum=1))
    if grep is not None and (not grep or "\n" in grep):
        raise BadInput("invalid --grep: a non-empty text on one line")
    return Query(service, since, count, grep, follow)


def projects(s: Settings, service: str) -> set[str]:
    """The compose projects whose containers of SERVICE are read."""
    if service == "traefik":
        return {compose.edge_stack(s).project}
    return {s.compose_project, f"{s.compose_project}-blue", f"{s.compose_project}-green"}


def list_command(service: str) -> list[str]:
    fmt = '{{.ID}} {{.Label "com.docker.compose.project"}} {{.Names}}'
    return [
        *("docker", "ps", "-a", "--filter", f"label=com.docker.compose.service={service}"),
        *("--format", fmt),
    ]


def parse_sources(host: str, output: str, wanted: set[str]) -> list[Source]:
    found = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in wanted:
            found.append(Source(host, parts[0], parts[2]))
    return sorted(found, key=lambda src: src.name)


def logs_command(container: str, q: Query) -> list[str]:
    """`docker logs --timestamps` of CONTAINER for Q (an argument list: never shell text)."""
    argv = ["docker", "logs", "--timestamps"]
    if q.since:
        argv += ["--since", q.since]
    lines = q.lines
    if lines is None and not q.since:
        lines = FOLLOW_LINES if q.follow else DEFAULT_LINES
    if lines is not None:
        argv += ["--tail", str(lines)]
    if q.follow:
        argv.append("--follow")
    return [*argv, container]


def time_key(stamp: str) -> tuple[str, str]:
    """A sort key of Docker's RFC 3339 timestamp (its fraction has no trailing zeros, so the
    text alone does not sort): (seconds, nanoseconds padded to 9 digits). Docker writes UTC."""
    m = TIMESTAMP_RE.fullmatch(stamp)
    if not m:
        return ("", "")
    return (m.group(1), (m.group(2) or "").ljust(9, "0"))


def parse_lines(source: Source, output: str) -> list[Line]:
    """`<timestamp> <text>` lines of one container; a line without a timestamp (a message
    continued over lines) takes its predecessor's."""
    parsed: list[Line] = []
    last = ("", "")
    last_stamp = ""
    for raw in output.splitlines():
        stamp, _, text = raw.partition(" ")
        key = time_key(stamp)
        if key == ("", ""):
            key, stamp, text = last, last_stamp, raw
        last, last_stamp = key, stamp
        parsed.append(Line(key, source.host, source.name, stamp, text.rstrip("\r")))
    return parsed


def merge(groups: Iterable[list[Line]], grep: str | None = None) -> list[Line]:
    """Every group's lines in time order (stable: equal times keep host, then container
    order), only those containing GREP when given."""
    merged = sorted((line for group in groups for line in group), key=lambda line: line.key)
    return [line for line in merged if grep is None or grep in line.text]


# -- reading hosts ---------------------------------------------------------------------------
def choose_hosts(s: Settings, host: str | None) -> list[HostSpec]:
    """The app hosts to read (all, or the one named); BadInput for a name not an app host."""
    if host is None:
        return list(s.app_hosts)
    names = [h.name for h in s.app_hosts]
    if host not in names:
        raise BadInput(f"no app host '{host}' in {s.env}; app hosts: {', '.join(names)}")
    return [h for h in s.app_hosts if h.name == host]


def sources_on(host, s: Settings, service: str) -> list[Source]:
    _, out, _ = hosts.sh(host, list_command(service))
    return parse_sources(host.name, out, projects(s, service))


def read_host(host, s: Settings, q: Query) -> list[Line]:
    """Every container's lines on HOST (stdout and stderr: both carry timestamps)."""
    lines: list[Line] = []
    for source in sources_on(host, s, q.service):
        _, out, err = hosts.sh(host, logs_command(source.id, q), timeout=300)
        lines += parse_lines(source, out) + parse_lines(source, err)
    return lines


def collect(state, specs: list[HostSpec], s: Settings, q: Query) -> list[Line]:
    """Every host at once; the lines merged in time order (and filtered by --grep)."""
    chosen = [state.inventory.get_host(spec.name) for spec in specs]
    with ThreadPoolExecutor(max_workers=max(1, len(chosen)), thread_name_prefix="logs") as pool:
        groups = list(pool.map(lambda h: read_host(h, s, q), chosen))
    return merge(groups, q.grep)


def follow(
    state,
    specs: list[HostSpec],
    s: Settings,
    q: Query,
    emit: Callable[[str], None],
    stop: threading.Event | None = None,
) -> int:
    """Stream every container's logs until STOP is set or Ctrl-C (then the channels close,
    which ends the remote `docker logs`); returns how many lines were printed."""
    stop = stop or threading.Event()
    printed = [0]
    guard = threading.Lock()
    channels: list = []
    threads: list[threading.Thread] = []
    found = []  # every host's containers first: then only our own threads read the channels
    for spec in specs:
        host = state.inventory.get_host(spec.name)
        found += [(host, source) for source in sources_on(host, s, q.service)]
    try:  # Ctrl-C at any point (also while the channels open) ends it the same way
        for host, source in found:
            hosts.reconnect(host)
            channel = host.connector.client.get_transport().open_session()
            channels.append(channel)
            channel.get_pty()
            channel.exec_command(shlex.join(logs_command(source.id, q)))
            thread = threading.Thread(
                target=_pump, args=(channel, source, q, emit, guard, printed), daemon=True
            )
            thread.start()
            threads.append(thread)
        while not stop.is_set() and any(t.is_alive() for t in threads):
            stop.wait(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        for channel in channels:
            channel.close()
        for thread in threads:
            thread.join(timeout=5)
    return printed[0]


def _pump(channel, source: Source, q: Query, emit, guard: threading.Lock, printed: list[int]):
    reader = channel.makefile("r")
    try:
        for raw in reader:
            for line in parse_lines(source, raw.rstrip("\n")):
                if q.grep is None or q.grep in line.text:
                    with guard:
                        emit(line.render())
                        printed[0] += 1
    except (OSError, EOFError, ValueError):  # the channel closed under us: we are stopping
        return
