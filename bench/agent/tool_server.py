#!/usr/bin/env python3
"""The external side's tools: a separate process serving them over loopback HTTP.

bench/agent_bench.py starts one per external round:

  python3 bench/agent/tool_server.py --db DB --sandbox DIR [--faults JSON]

and reads "PORT <n>" from its first line of output. Endpoints:

  POST /call/<tool>  body: the arguments (JSON object)
                     200 {"ok": true, "value": ...}
                     4xx/5xx {"ok": false, "error": {"type", "message", "retryable"}}
  POST /shutdown     stops accepting; the process exits once every request in
                     flight (abandoned ones included) has finished

Tools: sqlite.query, sqlite.exec, file.read, file.write, with the results of
the runtime's built-ins (runtime/tools/builtin_tools.cpp): {"columns", "rows",
"truncated"}, {"changes", "last_insert_rowid", "statements"}, {"path",
"content", "bytes", "encoding"}, {"path", "bytes"}. Parameters are bound,
never spliced; paths are confined to the sandbox.

Faults (--faults, the FaultInjector's keys fail_every, delay_ms,
delay_every): one counter per tool, one count per request (a retry is a
request), so the n-th attempt of a tool meets the same fault as the n-th
attempt through the in-process registry. A failing attempt answers 503
injected_fault before the tool runs; a delayed attempt sleeps delay_ms and
then runs the tool.

Deadlines. A plain HTTP tool server does not know how long its client will
wait: when the client's 350 ms timeout passes it closes the connection, but
the handler has no reason to notice before it writes its answer, so a
delayed attempt still runs the tool after the client gave up (and a
non-idempotent tool, such as an UPDATE, takes effect; the client's retry
then applies it a second time). This is the default. With the request
header X-Deadline-Ms: N (agent_bench.py --propagate-deadline) the server
does what the in-process registry's ToolContext does: the injected delay is
cut at the deadline and the tool is then not run, and a SQLite statement
still running at the deadline is interrupted (a progress handler every 1000
VM steps, as the built-in's).

Standard library only.
"""

import argparse
import http.server
import json
import os
import sqlite3
import sys
import threading
import time


class ToolFailure(Exception):
    def __init__(self, status, type_, message, retryable=False):
        super().__init__(message)
        self.status, self.type, self.message, self.retryable = status, type_, message, retryable


class Tools:
    def __init__(self, db, sandbox, faults):
        self.db, self.sandbox, self.faults = db, os.path.realpath(sandbox), faults or {}
        self.counters = {}
        self.lock = threading.Lock()

    def fault(self, name):
        """(fail, delay_s, attempt) for this attempt of `name` (counted here)."""
        f = self.faults
        if not (f.get("fail_every") or f.get("delay_ms")):
            return False, 0.0, 0
        with self.lock:
            n = self.counters.get(name, 0) + 1
            self.counters[name] = n
        fail = bool(f.get("fail_every")) and n % f["fail_every"] == 0
        delay = f.get("delay_ms", 0) / 1000.0 if n % f.get("delay_every", 1) == 0 else 0.0
        return fail, delay, n

    def call(self, name, args, deadline):
        if name not in ("sqlite.query", "sqlite.exec", "file.read", "file.write"):
            raise ToolFailure(404, "unknown_tool", "unknown tool '%s'" % name)
        if not isinstance(args, dict):
            raise ToolFailure(400, "invalid_arguments", "arguments must be a JSON object")
        fail, delay, n = self.fault(name)
        if delay:
            left = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            time.sleep(left)
            if left < delay:
                raise ToolFailure(504, "timeout", "injected delay of %d ms outlasted the "
                                  "deadline" % (delay * 1000), True)
        if fail:
            raise ToolFailure(503, "injected_fault", "tool '%s': injected fault, fail_every %d "
                              "(attempt %d)" % (name, self.faults["fail_every"], n), True)
        try:
            if name.startswith("sqlite."):
                return self.sqlite(name, args, deadline)
            return self.file(name, args)
        except ToolFailure:
            raise
        except (KeyError, TypeError) as e:
            raise ToolFailure(400, "invalid_arguments", "bad arguments: %s" % e)
        except (OSError, sqlite3.Error) as e:
            raise ToolFailure(500, "tool_error", str(e))

    def sqlite(self, name, args, deadline):
        sql, params = args["sql"], args.get("params", [])
        if not isinstance(sql, str) or not isinstance(params, list):
            raise ToolFailure(400, "invalid_arguments", "sql must be a string, params a list")
        con = sqlite3.connect(self.db, timeout=2.0)
        if deadline is not None:  # as the built-in's progress handler
            con.set_progress_handler(lambda: int(time.monotonic() >= deadline), 1000)
        try:
            cur = con.execute(sql, params)
            if name == "sqlite.query":
                cols = [d[0] for d in cur.description or []]
                return {"columns": cols, "rows": [dict(zip(cols, r)) for r in cur.fetchall()],
                        "truncated": False}
            con.commit()
            return {"changes": cur.rowcount, "last_insert_rowid": cur.lastrowid,
                    "statements": 1}
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise ToolFailure(504, "timeout", "sqlite: interrupted at the deadline", True)
            raise
        finally:
            con.close()

    def file(self, name, args):
        rel = args["path"]
        path = os.path.realpath(os.path.join(self.sandbox, rel))
        if not path.startswith(self.sandbox + os.sep):
            raise ToolFailure(403, "permission_denied", "path outside the sandbox")
        if name == "file.write":
            content = args["content"]
            with open(path, "w") as f:
                f.write(content)
            return {"path": rel, "bytes": len(content.encode())}
        with open(path) as f:
            content = f.read()
        return {"path": rel, "content": content, "bytes": len(content.encode()),
                "encoding": "utf-8"}


def make_handler(tools, server_box):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args):
            pass

        def reply(self, status, body):
            data = json.dumps(body, separators=(",", ":")).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up on this request (its timeout)

        def do_POST(self):
            start = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path == "/shutdown":
                self.reply(200, {"ok": True})
                threading.Thread(target=server_box[0].shutdown, daemon=True).start()
                return
            if not self.path.startswith("/call/"):
                self.reply(404, {"ok": False, "error": {"type": "not_found",
                                                        "message": self.path}})
                return
            deadline = self.headers.get("X-Deadline-Ms")
            deadline = start + float(deadline) / 1000.0 if deadline else None
            try:
                args = json.loads(raw or b"{}")
                value = tools.call(self.path[len("/call/"):], args, deadline)
                self.reply(200, {"ok": True, "value": value})
            except ValueError as e:
                self.reply(400, {"ok": False, "error": {"type": "invalid_arguments",
                                                        "message": "body: %s" % e,
                                                        "retryable": False}})
            except ToolFailure as e:
                self.reply(e.status, {"ok": False, "error": {"type": e.type,
                                                             "message": e.message,
                                                             "retryable": e.retryable}})

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--db", required=True)
    p.add_argument("--sandbox", required=True)
    p.add_argument("--faults", default="", help="JSON: fail_every, delay_ms, delay_every")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    tools = Tools(args.db, args.sandbox, json.loads(args.faults) if args.faults else None)
    box = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(tools, box))
    server.daemon_threads = False  # server_close() waits for abandoned requests
    box.append(server)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
