"""
Run the Spartan benchmarks: one command, a table and JSON of medians over several runs.

    .venv/bin/python benchmarks/run.py               # full: 5 runs, 10,000 connections
    .venv/bin/python benchmarks/run.py --quick       # small counts, about 30 s
    .venv/bin/python benchmarks/run.py --db fresh    # a new database file per server start
    .venv/bin/python benchmarks/run.py --protocol irc   # only over IRC (default: native,irc,ws)
    .venv/bin/python benchmarks/run.py --with-metrics   # also Spartan with --metrics-port

Each scenario of each run, over each protocol, starts a fresh server (a real ``twistd -n
spartan``, and the bare relay measured alongside in the same run: ``benchmarks/relay.py``
for the native protocol, ``benchmarks/irc_relay.py`` for IRC; over the WebSocket of
``--web-port`` there is no bare relay), drives it from this process with
`benchmarks.loadgen` and that protocol's codec, and stops it.  Where the machine has
two CPUs or more, the server is pinned to one and this process to another.  See
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
# The load generator is one address holding thousands of connections that send as fast as
# the server takes: flood control and connection limits are off, as for a trusted LAN.
LIMITS_OFF = [
    "--burst", "0", "--max-connections", "0", "--max-per-address", "0",
    "--login-timeout", "0", "--idle-timeout", "0",
]  # fmt: skip
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks import loadgen  # noqa: E402

FANOUT_MEMBERS, SENDERS, PAIRS = 50, 5, 50
SCENARIOS = ("fanout", "direct", "held", "light", "register", "pingpong")
PROTOCOLS = tuple(loadgen.CODECS)  # native, irc, ws
RELAYED = ("native", "irc")  # the protocols a bare relay speaks


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: str, held: int) -> None:
    fan = [f"f{i}" for i in range(FANOUT_MEMBERS)]
    users = fan + [f"d{i}" for i in range(2 * PAIRS)] + ["l0", "l1"] + [f"h{i}" for i in range(held)]
    with open(path, "w") as f:
        f.write("users = [" + ", ".join(f'"{u}"' for u in users) + "]\n\n[groups]\n")
        f.write("fan = [" + ", ".join(f'"{u}"' for u in fan) + "]\n")


def _has_limits(checkout: str) -> bool:
    """Whether the Spartan in ``checkout`` has the limit options (else it would refuse
    the generator's connections past its default per-address limit)."""
    try:
        with open(os.path.join(checkout, "spartan", "tap.py")) as f:
            return "max-per-address" in f.read()
    except OSError:
        return False


def cpu_plan(pin: bool):
    """(server CPUs, generator CPUs): different CPUs when there are two, else None."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


class Server:
    """A server process this runner started (and alone stops, by its PID)."""

    def __init__(self, kind: str, protocol: str, args, tmp: str, cpus, db: str, message_log: str,
                 serial: int):
        self.kind = kind
        self.port = free_port()  # the port the load goes to: native or IRC
        self.log_path = os.path.join(tmp, f"{kind}-{serial}.log")
        python = args.python or sys.executable
        config = os.path.join(tmp, "users.toml")
        env = dict(os.environ)
        if kind == "relay_alt":
            python = args.relay_python
        if kind == "spartan_alt":
            python = args.spartan_python
        if kind in ("relay", "relay_alt") and protocol == "irc":
            cmd = [python, os.path.join(HERE, "irc_relay.py"), "--port", str(self.port)]
        elif kind in ("relay", "relay_alt"):
            cmd = [python, os.path.join(HERE, "relay.py"), "--port", str(self.port), "--config", config]
        else:
            if kind == "baseline":  # another checkout of Spartan, e.g. before a change
                env["PYTHONPATH"] = args.baseline + os.pathsep + env.get("PYTHONPATH", "")
            if db == "fresh":
                db = os.path.join(tmp, f"spartan-{serial}.sqlite3")
            native_port = self.port if protocol == "native" else free_port()
            cmd = [
                python, "-c", "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "--logfile", self.log_path, "spartan",
                "--port", f"tcp:{native_port}:interface=127.0.0.1:backlog=1024",
                "--config", config, "--message-log", message_log, "--db", db,
            ]
            if protocol == "irc":
                cmd += ["--irc-port", f"tcp:{self.port}:interface=127.0.0.1:backlog=1024"]
            elif protocol == "ws":  # the web page's port: the load speaks to its /ws
                cmd += ["--web-port", f"tcp:{self.port}:interface=127.0.0.1:backlog=1024"]
            if args.sync:
                cmd += ["--sync", args.sync]
            if kind == "spartan_metrics":  # an ephemeral port: nobody scrapes it here
                cmd += ["--metrics-port", "tcp:0:interface=127.0.0.1"]
            if kind != "baseline" or _has_limits(args.baseline):
                cmd += LIMITS_OFF  # a checkout from before the limits has no such options

        def prepare():
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.output = open(os.path.join(tmp, f"{kind}-{serial}.out"), "wb")
        self.proc = subprocess.Popen(
            cmd, stdout=self.output, stderr=subprocess.STDOUT, preexec_fn=prepare, cwd=tmp, env=env
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        with open(self.output.name, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        raise loadgen.BenchError(f"{self.kind} did not start:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.output.close()


def server_cpu_seconds(pid: int) -> float:
    """User and system CPU time the process ``pid`` has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_scenario(name: str, protocol: str, port: int, pid: int, sizes: dict) -> dict:
    if name not in ("fanout", "direct"):
        return _run_scenario(name, protocol, port, pid, sizes)
    # The server's CPU time per delivery: unlike throughput, hardly moved by what else the
    # machine runs, so it shows a small difference between two servers on a busy machine.
    cpu = server_cpu_seconds(pid)
    result = _run_scenario(name, protocol, port, pid, sizes)
    result["server_cpu_us"] = (server_cpu_seconds(pid) - cpu) * 1e6 / max(1, result["deliveries"])
    return result


def _run_scenario(name: str, protocol: str, port: int, pid: int, sizes: dict) -> dict:
    host = "127.0.0.1"
    codec = loadgen.CODECS[protocol]
    if name == "fanout":
        return loadgen.fanout(host, port, FANOUT_MEMBERS, SENDERS, sizes["window"], sizes["count"],
                              sizes["seconds"], codec=codec)
    if name == "direct":
        return loadgen.direct(host, port, PAIRS, sizes["dm_window"], sizes["count"], sizes["seconds"],
                              codec=codec)
    if name == "light":
        # A server that has run a while has met this path before: a first round, not
        # counted, lets a JIT (PyPy) compile it, as the throughput runs' first second does.
        loadgen.light(host, port, sizes["light_warmup"], codec=codec)
        return loadgen.light(host, port, sizes["light"], codec=codec)
    if name == "pingpong":
        loadgen.pingpong(host, port, sizes["light_warmup"], codec=codec)
        return loadgen.pingpong(host, port, sizes["light"], codec=codec)
    if name == "held":
        return loadgen.held(host, port, pid, sizes["held"], source_hosts=sizes["sources"], codec=codec)
    if name == "register":
        return loadgen.register(host, port, sizes["held"], sizes["register_seconds"], codec=codec)
    raise ValueError(name)


# figure key, label, unit, format, better
FIGURES = {
    "fanout": [("deliveries_per_s", "fan-out deliveries/s", "{:,.0f}", "high"),
               ("p50_ms", "fan-out p50 latency (ms)", "{:.2f}", "low"),
               ("p99_ms", "fan-out p99 latency (ms)", "{:.2f}", "low"),
               ("server_cpu_us", "fan-out server CPU per delivery (µs)", "{:.3f}", "low")],
    "direct": [("messages_per_s", "one-to-one messages/s", "{:,.0f}", "high"),
               ("p50_ms", "one-to-one p50 latency (ms)", "{:.2f}", "low"),
               ("p99_ms", "one-to-one p99 latency (ms)", "{:.2f}", "low"),
               ("server_cpu_us", "one-to-one server CPU per message (µs)", "{:.3f}", "low")],
    "held": [("reached", "connections held", "{:,.0f}", "high"),
             ("bytes_per_conn", "server memory per connection (bytes)", "{:,.0f}", "low")],
    "light": [("p50_ms", "light-load round trip p50 (ms)", "{:.3f}", "low"),
              ("p99_ms", "light-load round trip p99 (ms)", "{:.3f}", "low")],
    "register": [("registrations_per_s", "registrations/s (login to welcome)", "{:,.0f}", "high")],
    "pingpong": [("p50_ms", "ping-pong round trip p50 (ms)", "{:.3f}", "low"),
                 ("p99_ms", "ping-pong round trip p99 (ms)", "{:.3f}", "low")],
    "fanout_logtext": [("deliveries_per_s", "fan-out deliveries/s, --message-log text", "{:,.0f}", "high")],
}


def median(values):
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def _by_run(results: list[dict], key: str, protocol: str, server: str, field: str) -> dict:
    return {r["run"]: r[field] for r in results
            if r["key"] == key and r["protocol"] == protocol and r["server"] == server}


def _ratio(top: dict, bottom: dict):
    """Median of the ratios taken within each run (same machine load)."""
    ratios = [top[run] / bottom[run] for run in top if run in bottom and bottom[run]]
    return median(ratios) if ratios else None


def summarise(results: list[dict], servers: list[str], protocols=("native",)) -> list[dict]:
    rows = []
    for protocol in protocols:
        for key, figures in FIGURES.items():
            for field, label, fmt, _ in figures:
                if protocol != "native":
                    label = f"{protocol.upper()} {label}"
                row = {"scenario": key, "protocol": protocol, "figure": field, "label": label,
                       "format": fmt}
                for kind in servers:
                    vals = list(_by_run(results, key, protocol, kind, field).values())
                    row[kind] = median(vals) if vals else None
                    row[kind + "_runs"] = vals
                for top, bottom, name, _ in RATIOS:
                    if top in servers and bottom in servers:
                        row[name] = _ratio(_by_run(results, key, protocol, top, field),
                                           _by_run(results, key, protocol, bottom, field))
                # The same server over another protocol against the native one, same runs.
                for kind, other, name, _ in PROTOCOL_RATIOS:
                    if kind in servers and other in protocols and "native" in protocols:
                        row[name] = None if protocol != other else _ratio(
                            _by_run(results, key, other, kind, field),
                            _by_run(results, key, "native", kind, field))
                if any(row.get(k) is not None for k in servers):
                    rows.append(row)
    return rows


# (numerator, denominator, JSON key, column): ratio columns, each taken within a run.
RATIOS = [
    ("spartan", "relay", "ratio", "Spartan / relay"),
    ("spartan", "baseline", "ratio_baseline", "Spartan / baseline"),
    ("spartan_alt", "spartan", "ratio_alt", "--spartan-python / Spartan"),
    ("spartan_metrics", "spartan", "ratio_metrics", "with metrics / Spartan"),
]
# (server, protocol, JSON key, column): that server over that protocol / over native.
PROTOCOL_RATIOS = [
    ("spartan", "irc", "ratio_irc_native", "Spartan IRC / native"),
    ("relay", "irc", "ratio_relay_irc_native", "relay IRC / native"),
    ("spartan", "ws", "ratio_ws_native", "Spartan WS / native"),
]
ALL_RATIOS = [(key, label) for *_, key, label in RATIOS + PROTOCOL_RATIOS]


def table(rows: list[dict], servers: list[str]) -> str:
    names = {"spartan": "Spartan", "relay": "bare relay", "baseline": "baseline Spartan",
             "relay_alt": "bare relay, --relay-python", "spartan_alt": "Spartan, --spartan-python",
             "spartan_metrics": "Spartan, --metrics-port"}
    head = ["figure"] + [names[k] for k in servers]
    first = rows[0] if rows else {}
    ratios = [key for key, _ in ALL_RATIOS if key in first]
    head += [label for key, label in ALL_RATIOS if key in first]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["label"]]
        for kind in servers:
            v = row.get(kind)
            cells.append("—" if v is None or v != v else row["format"].format(v))
        for k in ratios:
            cells.append("—" if row.get(k) is None else f"{row[k]:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Spartan benchmarks (see docs/performance.md)")
    parser.add_argument("--quick", action="store_true", help="small counts, about 30 s in all")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 5, quick 1)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--servers", default="spartan,relay", help="spartan,relay or one of them")
    parser.add_argument("--protocol", default=",".join(PROTOCOLS),
                        help=f"comma-separated subset of {','.join(PROTOCOLS)}: the protocols the "
                             "load speaks (the relay column is the bare relay of that protocol)")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run the Spartan found in DIR (e.g. `git archive` of an older "
                             "commit) in the same runs, as a 'baseline' column")
    parser.add_argument("--db", default=":memory:",
                        help="passed to twistd spartan --db; 'fresh' = a new file per server start")
    parser.add_argument("--message-log", default="off", help="--message-log for the main figures")
    parser.add_argument("--no-logtext", action="store_true",
                        help="skip the extra fan-out figure with --message-log text")
    parser.add_argument("--connections", type=int, help="idle connections to hold (default 10000)")
    parser.add_argument("--seconds", type=float, help="sending time per throughput run (default 3)")
    parser.add_argument("--python", help="interpreter for the servers (e.g. a PyPy venv's python)")
    parser.add_argument("--spartan-python", metavar="PYTHON",
                        help="also run Spartan under this interpreter (e.g. PyPy), in the same runs")
    parser.add_argument("--sync", choices=["full", "normal"],
                        help="passed to twistd spartan --sync (with --db fresh or a file)")
    parser.add_argument("--with-metrics", action="store_true",
                        help="also run Spartan with --metrics-port, in the same runs")
    parser.add_argument("--relay-python", metavar="PYTHON",
                        help="also run the bare relay under this interpreter (e.g. PyPy)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--cluster", action="store_true",
                        help="then one SQLite node, one Redis node and two Redis nodes "
                             "(benchmarks/cluster_bench.py)")
    args = parser.parse_args(argv)

    quick = args.quick
    runs = args.runs or (1 if quick else 5)
    held = args.connections or (500 if quick else 10_000)
    sizes = {
        "seconds": args.seconds or (1.0 if quick else 3.0),
        "count": 20_000 if quick else 1_000_000,
        "window": 64,
        "dm_window": 32,
        "light": 300 if quick else 5000,
        "light_warmup": 100 if quick else 5000,
        "held": held,
        "register_seconds": 3.0 if quick else 20.0,  # registrations stop here if not all through
        "sources": [f"127.0.0.{i}" for i in range(2, 2 + (held // 20_000) + 1)],
    }
    scenarios = [s for s in args.scenarios.split(",") if s]
    servers = [s for s in args.servers.split(",") if s]
    protocols = [p for p in args.protocol.split(",") if p]
    unknown = [p for p in protocols if p not in PROTOCOLS] + [s for s in scenarios if s not in SCENARIOS]
    if unknown or not protocols:
        parser.error(f"unknown protocol or scenario: {', '.join(unknown) or '(none given)'}")
    if args.baseline:
        args.baseline = os.path.abspath(args.baseline)
        servers.insert(1 if "spartan" in servers else 0, "baseline")
    for option in ("python", "spartan_python", "relay_python"):  # servers run in a temp dir
        value = getattr(args, option)
        if value and os.sep in value:
            setattr(args, option, os.path.abspath(value))
    if args.spartan_python:
        servers.insert(servers.index("spartan") + 1 if "spartan" in servers else 0, "spartan_alt")
    if args.with_metrics:
        servers.insert(servers.index("spartan") + 1 if "spartan" in servers else 0, "spartan_metrics")
    if args.relay_python:
        servers.append("relay_alt")
    limit = loadgen.raise_file_limit()
    if limit < held + 100:
        print(f"warning: file limit {limit} < {held} connections", file=sys.stderr)
    server_cpus, gen_cpus = cpu_plan(not args.no_pin)
    if gen_cpus:
        os.sched_setaffinity(0, gen_cpus)

    results = []
    failures = []
    serial = 0
    with tempfile.TemporaryDirectory(prefix="spartan-bench-") as tmp:
        write_config(os.path.join(tmp, "users.toml"), held)
        plan = [(s, args.message_log) for s in scenarios]
        if "fanout" in scenarios and not args.no_logtext and "spartan" in servers and "native" in protocols:
            plan.append(("fanout_logtext", "text"))
        for run in range(runs):
            for key, message_log in plan:
                scenario = "fanout" if key == "fanout_logtext" else key
                kinds = ["spartan"] if key == "fanout_logtext" else servers
                if key == "fanout_logtext" and run >= max(1, runs // 2):
                    continue  # a figure for reference: fewer runs
                for protocol in ["native"] if key == "fanout_logtext" else protocols:
                    for kind in kinds:
                        if kind.startswith("relay") and protocol not in RELAYED:
                            continue
                        serial += 1
                        what = f"run {run + 1} {key} {protocol} {kind}"
                        try:
                            server = Server(kind, protocol, args, tmp, server_cpus, args.db, message_log,
                                            serial)
                        except loadgen.BenchError as e:
                            failures.append(f"{what}: {e}")
                            print(f"FAILED {what}: {e}", file=sys.stderr, flush=True)
                            continue
                        try:
                            result = run_scenario(scenario, protocol, server.port, server.proc.pid, sizes)
                        except (loadgen.BenchError, OSError) as e:
                            failures.append(f"{what}: {e}")
                            print(f"FAILED {what}: {e}", file=sys.stderr, flush=True)
                            continue
                        finally:
                            server.stop()
                        result.update(key=key, protocol=protocol, server=kind, run=run)
                        results.append(result)
                        brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()
                                 if k in ("deliveries_per_s", "messages_per_s", "p50_ms", "p99_ms",
                                          "server_cpu_us",
                                          "reached", "bytes_per_conn", "registrations_per_s", "registered",
                                          "exactly_once", "generator_cpu")}
                        print(f"run {run + 1}/{runs} {key:15} {protocol:6} {kind:8} {brief}",
                              file=sys.stderr, flush=True)

    rows = summarise(results, servers, protocols)
    # PYTHONPATH decides which Spartan the servers import: part of the command.
    pythonpath = [f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else []
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": " ".join(pythonpath + ["benchmarks/run.py"]
                            + (argv if argv is not None else sys.argv[1:])),
        "server_python": args.python or sys.executable,
        "db": args.db,
        "protocols": protocols,
        "pinned": {"server": sorted(server_cpus) if server_cpus else None,
                   "generator": sorted(gen_cpus) if gen_cpus else None},
        "runs": runs,
        "sizes": sizes,
        "table": [{k: v for k, v in r.items() if k != "format"} for r in rows],
        "results": results,
        "failures": failures,
        "exactly_once": not failures and bool(results),
    }
    print(f"Spartan benchmarks, {report['date']}, {report['machine']}")
    print(f"command: {report['command']}; medians of {runs} run(s); db {args.db}")
    print()
    print(table(rows, servers))
    print()
    print("exactly-once: " + ("every message delivered exactly once" if report["exactly_once"]
                              else "FAILED: " + "; ".join(failures)))
    print()
    print("JSON " + json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.cluster:
        import cluster_bench  # benchmarks/ is this script's directory

        print()
        print("One SQLite node, one Redis node and two Redis nodes, in the same runs:", flush=True)
        os.sched_setaffinity(0, range(os.cpu_count()))  # the nodes share both CPUs
        cluster_bench.main(["--messages", "4000" if quick else "20000", "--runs", str(runs)])
    return 0 if report["exactly_once"] else 1


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({model}), {mem:.0f} GiB, Linux {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")


if __name__ == "__main__":
    sys.exit(main())
