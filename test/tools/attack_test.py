#!/usr/bin/env python3
"""Hostile clients against a live `treni serve`: the server must keep answering.

Standard library only; all traffic goes to 127.0.0.1. Starts `treni serve` on
the CPU fixture (or, with --attach PORT, attacks a server already running
there) and runs, one after another:

  slowloris   30 connections that send a request line, then one header line
              every 2 s and never finish their headers;
  slow body   5 connections that send whole headers, then one body byte
              every 2 s;
  burst       200 connections opened as fast as the client can, each asking
              for GET /health;
  deep JSON   chat requests whose tools[0].function.parameters nests 20,000
              arrays deep;
  big bodies  24 clients sending 4 MiB bodies at once, 3 rounds; the
              server's RSS before and after (only when this script started
              the server, or with --pid).

Before them it reads the listen backlog (`ss`, when installed) and checks
what a default server exposes: no POST /v1/agent/run (404), and a POST
that is not application/json answers 415.

Throughout, a prober on its own client address asks for GET /health every
0.2 s and must get 200 within 1 s each time. The attackers connect from other
loopback addresses (127.0.0.2, 127.0.0.3: Linux routes all of 127/8 to lo), so
a per-client connection limit throttles them and not the prober. Every loop
is bounded in count and in time.

Checks (exit 1 on any failure; --measure-only reports without checking):
  - the listen backlog is at least 1024; the agent route is off; text/plain
    POSTs get 415;
  - /health answered within 1 s at every probe, and at the end;
  - the server closed every slowloris and slow-body connection within its
    header/body deadline (plus 2.5 s of slack), those over the per-client
    limit at once;
  - every connection of the burst connected within 1 s and got a complete
    HTTP response (200, or 503 past the per-client limit);
  - deep JSON: the answer's status is --deep-json-status when given (400
    once request bodies are depth-bounded), otherwise anything but a crash;
  - the server process is alive at the end and exits 0 on SIGTERM.

    python3 test/tools/attack_test.py --treni build/bin/treni \
        --model test/fixtures/qwen2 [--json out.json]
"""
import argparse
import errno
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

HEALTH_LIMIT_S = 1.0
HEADER_TIMEOUT_S = 3  # passed to the server this script starts
BODY_TIMEOUT_S = 4
PER_CLIENT = 16
SLACK_S = 2.5
PROBER_ADDRESS = "127.0.0.1"
SLOW_ADDRESS = "127.0.0.2"
BURST_ADDRESS = "127.0.0.3"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def connect_from(source, port, timeout=3.0):
    """A socket connected to 127.0.0.1:port from `source` (a loopback address)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def get_health(port, timeout):
    """(status, seconds); status 0 when nothing came back in time."""
    start = time.monotonic()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                          source_address=(PROBER_ADDRESS, 0))
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status, time.monotonic() - start
    except (OSError, http.client.HTTPException):
        return 0, time.monotonic() - start


class Prober(threading.Thread):
    """GET /health every 0.2 s until stopped (at most `limit_s`)."""

    def __init__(self, port, limit_s):
        super().__init__(daemon=True)
        self.port, self.limit_s = port, limit_s
        self.samples = []  # (phase, status, seconds)
        self.phase = "idle"
        self.stopping = threading.Event()

    def run(self):
        end = time.monotonic() + self.limit_s
        while not self.stopping.is_set() and time.monotonic() < end:
            status, seconds = get_health(self.port, HEALTH_LIMIT_S)
            self.samples.append((self.phase, status, seconds))
            self.stopping.wait(0.2)

    def failures(self):
        return [s for s in self.samples if s[1] != 200 or s[2] > HEALTH_LIMIT_S]


def trickle(port, count, first, line, source, run_s):
    """Opens `count` connections that send `first`, then `line` every 2 s,
    for at most `run_s` seconds. Returns each connection's
    (seconds until the server closed it, or None if it stayed open)."""
    socks, opened, closed = [], [], []
    for _ in range(count):
        try:
            s = connect_from(source, port)
            s.sendall(first)
            s.setblocking(False)
            socks.append(s)
            opened.append(time.monotonic())
            closed.append(None)
        except OSError:
            socks.append(None)
            opened.append(time.monotonic())
            closed.append(0.0)  # refused at connect
    end = time.monotonic() + run_s
    next_send = time.monotonic() + 2
    while time.monotonic() < end and any(c is None for c in closed):
        live = [s for s, c in zip(socks, closed) if s is not None and c is None]
        ready, _, _ = select.select(live, [], [], 0.1)
        now = time.monotonic()
        for s in ready:
            i = socks.index(s)
            try:
                if s.recv(65536):
                    continue  # a response (408, 503): the close follows
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
            closed[i] = now - opened[i]
        if now >= next_send:
            next_send = now + 2
            for i, s in enumerate(socks):
                if s is not None and closed[i] is None:
                    try:
                        s.send(line)
                    except OSError:
                        closed[i] = now - opened[i]
    for s in socks:
        if s is not None:
            s.close()
    return closed


def burst(port, count):
    """Opens `count` connections at once asking GET /health; returns
    (connect seconds of each, HTTP status of each or 0)."""
    socks, connect_s = [], []
    request = ("GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Connection: close\r\n\r\n" % port).encode()
    for _ in range(count):
        start = time.monotonic()
        try:
            s = connect_from(BURST_ADDRESS, port)
            connect_s.append(time.monotonic() - start)
            socks.append(s)
        except OSError:
            connect_s.append(None)
            socks.append(None)
    for s in socks:
        if s is not None:
            try:
                s.sendall(request)
            except OSError:
                pass
            s.setblocking(False)
    replies = [b"" for _ in socks]
    done = [s is None for s in socks]
    end = time.monotonic() + 10
    while time.monotonic() < end and not all(done):
        live = [s for s, d in zip(socks, done) if not d]
        ready, _, _ = select.select(live, [], [], 0.1)
        for s in ready:
            i = socks.index(s)
            try:
                data = s.recv(65536)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                data = b""
            if data:
                replies[i] += data
            else:
                done[i] = True
    for s in socks:
        if s is not None:
            s.close()
    statuses = []
    for reply in replies:
        head = reply.split(b"\r\n", 1)[0].split()
        statuses.append(int(head[1]) if len(head) >= 2 and head[1].isdigit() else 0)
    return connect_s, statuses


def post(port, path, body, timeout=60, source="127.0.0.1", content_type="application/json"):
    """(status, body bytes); status 0 when the connection failed."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                          source_address=(source, 0))
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data
    except (OSError, http.client.HTTPException):
        return 0, b""


def deep_tools_body(model, depth):
    """A chat request whose tool's parameters hold `depth` nested arrays (inside
    an object, so that the parameters' type check passes)."""
    nested = "[" * depth + "]" * depth
    return ('{"model": %s, "messages": [{"role": "user", "content": "hi"}], '
            '"max_tokens": 2, "tools": [{"type": "function", "function": '
            '{"name": "f", "parameters": {"type": "object", "default": %s}}}]}'
            % (json.dumps(model), nested)).encode()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--treni", help="the treni binary (starts `treni serve`)")
    p.add_argument("--model", help="model directory (the CPU fixture)")
    p.add_argument("--attach", type=int, help="attack a server already on this port")
    p.add_argument("--pid", type=int, help="with --attach: its process, for RSS")
    p.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT_S,
                   help="with --attach: the attacked server's header deadline")
    p.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT_S)
    p.add_argument("--per-client", type=int, default=PER_CLIENT,
                   help="with --attach: the attacked server's per-client limit")
    p.add_argument("--deep-json-status", type=int, help="the status deep JSON must get")
    p.add_argument("--measure-only", action="store_true", help="report, check nothing")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()

    proc = None
    pid = args.pid
    if args.attach:
        port, model = args.attach, None
    else:
        if not args.treni or not args.model:
            p.error("--treni and --model, or --attach")
        port = free_port()
        cmd = [args.treni, "serve", args.model, "--device", "cpu", "--host", "127.0.0.1",
               "--port", str(port), "--header-timeout", str(args.header_timeout),
               "--body-timeout", str(args.body_timeout),
               "--max-connections-per-client", str(args.per_client)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        pid = proc.pid
        threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if proc and proc.poll() is not None:
            sys.exit("treni serve exited with %d" % proc.returncode)
        status, _ = get_health(port, 1)
        if status == 200:
            break
        time.sleep(0.1)
    else:
        sys.exit("treni serve did not come up")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/v1/models")
    model = json.loads(conn.getresponse().read())["data"][0]["id"]
    conn.close()

    problems = []
    report = {"port": port}

    # The listen backlog, as the kernel reports it (ss: Send-Q of a listener).
    try:
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], capture_output=True,
                             text=True, timeout=10).stdout.split()
        report["listen_backlog"] = int(out[2]) if len(out) > 2 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        report["listen_backlog"] = None  # no ss here
    if report["listen_backlog"] is not None and report["listen_backlog"] < 1024:
        problems.append("listen backlog %d < 1024" % report["listen_backlog"])
    # What a default server exposes: no agent route; POST bodies only as JSON.
    report["agent_route_status"] = post(port, "/v1/agent/run", b'{"source": ""}')[0]
    if report["agent_route_status"] != 404:
        problems.append("POST /v1/agent/run answered %d without --enable-agent-api"
                        % report["agent_route_status"])
    report["text_plain_status"] = post(port, "/v1/chat/completions", b"{}",
                                       content_type="text/plain")[0]
    if report["text_plain_status"] != 415:
        problems.append("a text/plain POST answered %d, not 415" % report["text_plain_status"])

    prober = Prober(port, limit_s=240)
    prober.start()

    # slowloris: never-ending headers.
    prober.phase = "slowloris"
    deadline = args.header_timeout + SLACK_S
    closed = trickle(port, 30,
                     ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Content-Type: application/json\r\n" % port).encode(),
                     b"X-Trickle: x\r\n", SLOW_ADDRESS, deadline + 4)
    report["slowloris_closed_s"] = closed
    if any(c is None or c > deadline for c in closed):
        problems.append("slowloris: %d of 30 connections outlived the header deadline "
                        "(%.1f s + slack)" % (sum(c is None or c > deadline for c in closed),
                                              args.header_timeout))
    if sum(c is not None and c < 0.5 for c in closed) < 30 - args.per_client:
        problems.append("slowloris: fewer than %d connections refused at once past the "
                        "per-client limit of %d" % (30 - args.per_client, args.per_client))

    # slow body: headers whole, the body one byte every 2 s.
    prober.phase = "slow body"
    deadline = args.header_timeout + args.body_timeout + SLACK_S
    closed = trickle(port, 5,
                     ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
                      % port).encode(),
                     b" ", SLOW_ADDRESS, deadline + 4)
    report["slow_body_closed_s"] = closed
    if any(c is None or c > deadline for c in closed):
        problems.append("slow body: %d of 5 connections outlived the body deadline"
                        % sum(c is None or c > deadline for c in closed))

    # burst: 200 connects at once.
    prober.phase = "burst"
    connect_s, statuses = burst(port, 200)
    report["burst_connect_max_s"] = max((c for c in connect_s if c is not None), default=None)
    report["burst_statuses"] = {str(s): statuses.count(s) for s in sorted(set(statuses))}
    if any(c is None or c > 1.0 for c in connect_s):
        problems.append("burst: %d of 200 connects failed or took over 1 s"
                        % sum(c is None or c > 1.0 for c in connect_s))
    if any(s not in (200, 503) for s in statuses):
        problems.append("burst: responses other than 200/503: %s" % report["burst_statuses"])

    # deep JSON in tools[].function.parameters.
    prober.phase = "deep json"
    deep = [post(port, "/v1/chat/completions", deep_tools_body(model, 20000))[0]
            for _ in range(3)]
    report["deep_json_statuses"] = deep
    if args.deep_json_status and any(s != args.deep_json_status for s in deep):
        problems.append("deep JSON: statuses %s, expected %d" % (deep, args.deep_json_status))

    # big bodies: RSS before and after.
    prober.phase = "big bodies"
    report["rss_kib_before"] = rss_kib(pid) if pid else None
    big = ('{"model": %s, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, '
           '"user": "%s"}' % (json.dumps(model), "u" * (4 * 1024 * 1024 - 200))).encode()
    peak = 0
    big_statuses = []

    def post_big(source):
        big_statuses.append(post(port, "/v1/chat/completions", big, source=source)[0])

    for _ in range(3):
        # Each client from its own address: the per-client limit is not the point here.
        threads = [threading.Thread(target=post_big, args=("127.0.1.%d" % (i + 1),))
                   for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            peak = max(peak, rss_kib(pid) or 0) if pid else 0
    time.sleep(0.5)
    report["rss_kib_peak_seen"] = peak or None
    report["rss_kib_after"] = rss_kib(pid) if pid else None
    report["big_body_statuses"] = {str(s): big_statuses.count(s) for s in sorted(set(big_statuses))}

    prober.phase = "end"
    time.sleep(0.5)
    prober.stopping.set()
    prober.join()
    failures = prober.failures()
    report["health_probes"] = len(prober.samples)
    report["health_failures"] = [(ph, st, round(s, 3)) for ph, st, s in failures]
    report["health_max_s"] = round(max(s for _, _, s in prober.samples), 3)
    if failures:
        by_phase = {}
        for ph, _, _ in failures:
            by_phase[ph] = by_phase.get(ph, 0) + 1
        problems.append("/health failed or took over %.0f s: %s of %d probes"
                        % (HEALTH_LIMIT_S, by_phase, len(prober.samples)))
    status, _ = get_health(port, HEALTH_LIMIT_S)
    if status != 200:
        problems.append("/health does not answer at the end")
    if proc:
        if proc.poll() is not None:
            problems.append("the server died (exit %d)" % proc.returncode)
        else:
            proc.send_signal(signal.SIGTERM)
            try:
                report["exit_code"] = proc.wait(20)
                if report["exit_code"] != 0:
                    problems.append("exit %d on SIGTERM" % report["exit_code"])
            except subprocess.TimeoutExpired:
                proc.kill()
                problems.append("no exit within 20 s of SIGTERM")

    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.measure_only:
        for problem in problems:
            print("would fail:", problem)
        return 0
    for problem in problems:
        print("FAIL:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
