#!/usr/bin/env python3
"""A loopback stand-in for the Hugging Face hub, for the vfetch tests.

Two HTTP servers on 127.0.0.1:
  hub  /api/datasets/<owner>/<name>/revision/<rev>
           {"sha": commit}: the commit a branch name stands for
       /api/datasets/<owner>/<name>/tree/<rev>?recursive=true
           the files under ROOT/<owner>/<name>, PAGE entries a page, the next
           page named by a Link header (rel="next"); .txt files carry an
           "lfs" object with their SHA-256, like LFS files on the hub
       /datasets/<owner>/<name>/resolve/<rev>/<path>
           a 302 redirect to the CDN for LFS files, the bytes for others
  cdn  /cdn/<path>   the file ROOT/<path>, with Range requests

Faults, for the tests (PATH is a file's path inside its dataset, or for
--status the word TREE for the listing, REVISION for the revision API):
  --cut PATH=N        the first N CDN answers for PATH stop half-way
  --wrong-hash PATH   the listing gives PATH a wrong SHA-256
  --status PATH=CODE:N  the first N requests for PATH answer CODE
  --no-range          the CDN ignores Range and answers 200
  --token T           the hub answers 401 without "Authorization: Bearer T"
  --revisions a,b     the revisions that exist (others: 404); each stands
                      for the commit id sha1(name)
  --extra-entry PATH  list a file PATH that does not exist (a hostile listing)
  --relative-links    next-page links as absolute paths without a host
  --no-lfs PATH       PATH is a plain git file: no "lfs" in the listing (its
                      "oid" is the git blob id), served by the hub itself
  --wrong-oid PATH    the listing gives PATH a wrong git blob id
Each request is logged to --log as "server method path auth=yes|no
range=...".  The two ports are written to --portfile when both listen.
"""
import argparse
import hashlib
import http.server
import json
import os
import socket
import sys
import threading
import urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("--root", required=True)
ap.add_argument("--portfile", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--page", type=int, default=3)
ap.add_argument("--cut", action="append", default=[])
ap.add_argument("--wrong-hash", action="append", default=[])
ap.add_argument("--status", action="append", default=[])
ap.add_argument("--no-range", action="store_true")
ap.add_argument("--token")
ap.add_argument("--revisions", default="main")
ap.add_argument("--extra-entry", action="append", default=[])
ap.add_argument("--relative-links", action="store_true")
ap.add_argument("--no-lfs", action="append", default=[])
ap.add_argument("--wrong-oid", action="append", default=[])
args = ap.parse_args()

lock = threading.Lock()
cuts = {}
for c in args.cut:
    p, n = c.rsplit("=", 1)
    cuts[p] = int(n)
statuses = {}
for s in args.status:
    p, rest = s.rsplit("=", 1)
    code, n = rest.split(":")
    statuses.setdefault(p, []).extend([int(code)] * int(n))
# Each revision name stands for a commit id made from the name; a request
# may use either.
commits = {r: hashlib.sha1(r.encode()).hexdigest() for r in args.revisions.split(",")}
revisions = set(commits) | set(commits.values())
logf = open(args.log, "a", buffering=1)
ports = {}


def take(table, key):
    """Pop one pending fault for key, if any."""
    with lock:
        v = table.get(key)
        if isinstance(v, list):
            return v.pop(0) if v else None
        if v:
            table[key] = v - 1
            return True
        return None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def git_oid(path):
    data = open(path, "rb").read()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def listing(repo):
    base = os.path.join(args.root, repo)
    out, dirs = [], set()
    for dp, dn, fn in os.walk(base):
        for f in fn:
            full = os.path.join(dp, f)
            rel = os.path.relpath(full, base)
            parts = rel.split("/")
            for i in range(1, len(parts)):
                dirs.add("/".join(parts[:i]))
            e = {"type": "file", "oid": git_oid(full),
                 "size": os.path.getsize(full), "path": rel}
            if rel in args.wrong_oid:
                e["oid"] = hashlib.sha1(b"not the blob").hexdigest()
            if rel.endswith(".txt") and rel not in args.no_lfs:
                oid = sha256_file(full)
                if rel in args.wrong_hash:
                    oid = hashlib.sha256(b"not the file").hexdigest()
                e["lfs"] = {"oid": oid, "size": e["size"], "pointerSize": 134}
            out.append(e)
    for x in args.extra_entry:
        out.append({"type": "file", "oid": "0" * 40, "size": 1, "path": x})
    for d in dirs:
        out.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": d})
    out.sort(key=lambda e: e["path"])
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_name_ = "?"

    def log_message(self, *a):
        pass

    def log(self):
        auth = "yes" if self.headers.get("Authorization") else "no"
        logf.write("%s %s %s auth=%s range=%s\n" % (
            self.server_name_, self.command, self.path, auth,
            self.headers.get("Range", "-")))

    def send(self, code, body=b"", ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fault(self, key):
        code = take(statuses, key)
        if code is None:
            return False
        extra = [("Retry-After", "0")] if code == 429 else []
        self.send(code, b'{"error":"injected"}', extra=extra)
        return True


class Hub(Handler):
    server_name_ = "hub"

    def do_GET(self):
        self.log()
        if args.token and self.headers.get("Authorization") != "Bearer " + args.token:
            return self.send(401, b'{"error":"Invalid credentials"}')
        u = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in u.path.split("/")]
        # /api/datasets/<owner>/<name>/revision/<rev>
        if len(parts) == 7 and parts[1:3] == ["api", "datasets"] and parts[5] == "revision":
            repo, rev = parts[3] + "/" + parts[4], parts[6]
            if self.fault("REVISION"):
                return
            if rev not in revisions or not os.path.isdir(os.path.join(args.root, repo)):
                return self.send(404, b'{"error":"Revision Not Found"}')
            sha = commits.get(rev, rev)
            return self.send(200, json.dumps({"id": repo, "sha": sha}).encode())
        # /api/datasets/<owner>/<name>/tree/<rev>
        if len(parts) >= 7 and parts[1:3] == ["api", "datasets"] and parts[5] == "tree":
            repo, rev = parts[3] + "/" + parts[4], "/".join(parts[6:])
            if self.fault("TREE"):
                return
            if rev not in revisions or not os.path.isdir(os.path.join(args.root, repo)):
                return self.send(404, b'{"error":"Revision Not Found"}')
            q = urllib.parse.parse_qs(u.query)
            start = int(q.get("cursor", ["0"])[0])
            entries = listing(repo)
            page = entries[start:start + args.page]
            extra = []
            if start + args.page < len(entries):
                nxt = "%s?recursive=true&cursor=%d" % (u.path, start + args.page)
                if not args.relative_links:
                    nxt = "http://127.0.0.1:%d%s" % (ports["hub"], nxt)
                extra.append(("Link", '<%s>; rel="next"' % nxt))
            return self.send(200, json.dumps(page).encode(), extra=extra)
        # /datasets/<owner>/<name>/resolve/<rev>/<path>
        if len(parts) >= 7 and parts[1] == "datasets" and parts[4] == "resolve":
            repo, rev, path = parts[2] + "/" + parts[3], parts[5], "/".join(parts[6:])
            full = os.path.join(args.root, repo, path)
            if self.fault(path):
                return
            if rev not in revisions or ".." in path.split("/") or not os.path.isfile(full):
                return self.send(404, b'{"error":"Entry not found"}')
            if path.endswith(".txt") and path not in args.no_lfs:
                loc = "http://127.0.0.1:%d/cdn/%s/%s?sig=abc" % (
                    ports["cdn"], urllib.parse.quote(repo), urllib.parse.quote(path))
                return self.send(302, b"", extra=[("Location", loc)])
            return self.send(200, open(full, "rb").read(), "application/octet-stream")
        return self.send(404, b'{"error":"no route"}')


class Cdn(Handler):
    server_name_ = "cdn"

    def do_GET(self):
        self.log()
        u = urllib.parse.urlsplit(self.path)
        if not u.path.startswith("/cdn/"):
            return self.send(404, b"no route")
        rel = urllib.parse.unquote(u.path[5:])
        full = os.path.join(args.root, rel)
        if ".." in rel.split("/") or not os.path.isfile(full):
            return self.send(404, b"not found")
        key = rel.split("/", 2)[2] if rel.count("/") >= 2 else rel
        if self.fault(key) or self.fault(rel):
            return
        size = os.path.getsize(full)
        start = 0
        rng = self.headers.get("Range")
        if rng and not args.no_range and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= size:
                return self.send(416, b"", extra=[("Content-Range", "bytes */%d" % size)])
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, size - 1, size))
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        count = size - start
        cut = take(cuts, key) or take(cuts, rel)
        if cut:
            count = max(1, count // 2)
        with open(full, "rb") as f:
            self.connection.sendfile(f, start, count)
        if cut:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


hub = Server(("127.0.0.1", 0), Hub)
cdn = Server(("127.0.0.1", 0), Cdn)
ports["hub"] = hub.server_address[1]
ports["cdn"] = cdn.server_address[1]
threading.Thread(target=cdn.serve_forever, daemon=True).start()
tmp = args.portfile + ".tmp"
with open(tmp, "w") as f:
    f.write("%d %d\n" % (ports["hub"], ports["cdn"]))
os.rename(tmp, args.portfile)
try:
    hub.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
