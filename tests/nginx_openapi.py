#!/usr/bin/env python3
"""docs/openapi.json against the module that serves it.

The document is checked as an OpenAPI 3.1 document (required fields, every
$ref resolves, every schema a valid JSON Schema 2020-12 schema, every example
valid against its schema), then against real answers: nginx runs
conf/nginx.conf (filled in, as make serve does) with the module and a tiny
model, and
  - every request example is sent (a POST body example; for a GET, every
    query parameter's example of that name), and must get the status and
    media type of the response example of the same name;
  - the answers that no body decides (304, 206, 416, HEAD, OPTIONS, 405,
    413, 415, 503, 504) are brought about and sent too;
  - each answer's status must be documented for its operation, its body
    valid against that response's schema (JSON), or the audio its media type
    says (raw), every header it carries (beyond HTTP's own) documented and
    valid against its schema, every required header present; an error body
    must equal its example;
  - every documented operation and status must have been answered, and every
    example used, except those listed in NOT_SENT with the reason.
It also checks that musicgen_openapi serves the document byte for byte, with
an ETag that a 304 answers.

Usage: tests/nginx_openapi.py MODULE.so MODEL_DIR  (jsonschema: Debian
python3-jsonschema)."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

try:
    import jsonschema
except ImportError:
    print("FAIL - no jsonschema module (Debian: apt-get install python3-jsonschema)")
    print("nginx_openapi: 0 passed, 1 failed")
    sys.exit(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = int(os.environ.get("TEST_NGINX_OPENAPI_PORT", "1993"))
BROKEN_PORT = PORT + 1
ORIGIN = "https://app.example"
# documented, but not brought about here (each with where it is tested)
NOT_SENT = {
    ("get", "500"): "an engine failure: tests/nginx_faults.sh makes one",
    ("post", "500"): "an engine failure: tests/nginx_faults.sh makes one",
    ("get", "429"): "the edge tier's limit_req: tests/nginx_edge.sh",
    ("post", "429"): "the edge tier's limit_req: tests/nginx_edge.sh",
}
NOT_SENT_EXAMPLES = {"failed", "rateLimited"}
# headers every HTTP answer may carry, not the API's
HTTP_HEADERS = {"server", "date", "content-type", "content-length", "connection",
                "transfer-encoding", "keep-alive"}

passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok   - " + what)
    else:
        failed += 1
        print("FAIL - " + what + (": " + detail if detail else ""))
    return ok


def pointer(doc, ref):
    if not ref.startswith("#/"):
        raise KeyError(ref)
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(doc, node):
    while isinstance(node, dict) and "$ref" in node:
        node = pointer(doc, node["$ref"])
    return node


def all_refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from all_refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from all_refs(v)


def schema_errors(doc, schema, value):
    # the document's components beside the schema, so that its
    # "#/components/schemas/..." references resolve within it
    root = {"allOf": [schema], "components": doc.get("components", {})}
    v = jsonschema.Draft202012Validator(root)
    return [e.message for e in v.iter_errors(value)]


# ---- the document itself ------------------------------------------------

def check_structure(doc):
    check(str(doc.get("openapi", "")).startswith("3.1."), "openapi is 3.1.x")
    info = doc.get("info", {})
    check(isinstance(info.get("title"), str) and isinstance(info.get("version"), str),
          "info has a title and a version")
    check(isinstance(doc.get("paths"), dict) and doc["paths"], "paths is a non-empty object")
    bad = []
    for ref in all_refs(doc):
        try:
            pointer(doc, ref)
        except (KeyError, TypeError):
            bad.append(ref)
    check(not bad, "every $ref resolves", ", ".join(sorted(set(bad))))
    ids, bad_ops = [], []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "head", "post", "put", "delete", "options", "patch", "trace"):
                continue
            ids.append(op.get("operationId"))
            if not op.get("responses"):
                bad_ops.append(method + " " + path + ": no responses")
            for status, resp in op.get("responses", {}).items():
                if not isinstance(deref(doc, resp).get("description"), str):
                    bad_ops.append(f"{method} {path} {status}: no description")
            for p in op.get("parameters", []):
                p = deref(doc, p)
                if "name" not in p or p.get("in") not in ("query", "header", "path", "cookie"):
                    bad_ops.append(f"{method} {path}: a parameter without name or in")
    check(not bad_ops, "every operation has responses with descriptions and sound parameters",
          "; ".join(bad_ops))
    check(len(ids) == len(set(ids)) and None not in ids, "operationIds are unique")
    bad_schemas = []
    for name, s in doc.get("components", {}).get("schemas", {}).items():
        try:
            jsonschema.Draft202012Validator.check_schema(s)
        except jsonschema.exceptions.SchemaError as e:
            bad_schemas.append(f"{name}: {e.message}")
    check(not bad_schemas, "every component schema is valid JSON Schema 2020-12",
          "; ".join(bad_schemas))


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if isinstance(op, dict) and "responses" in op:
                yield path, method, op


def check_examples(doc):
    """Every example value is valid against its schema: the responses', and
    the requests' that are answered 2xx (a request example that shows an
    error is the module's to refuse, whether the schema already does or not)."""
    bad = []
    for path, method, op in operations(doc):
        ok = lambda name: any(200 <= s < 300 for s, _ in response_of(doc, op, name))
        body = op.get("requestBody", {}).get("content", {})
        for mt, media in body.items():
            for name, ex in media.get("examples", {}).items():
                for e in schema_errors(doc, media["schema"], deref(doc, ex)["value"]) if ok(name) else []:
                    bad.append(f"{method} request {name}: {e}")
        for p in op.get("parameters", []):
            p = deref(doc, p)
            for name, ex in p.get("examples", {}).items():
                for e in schema_errors(doc, p["schema"], deref(doc, ex)["value"]) if ok(name) else []:
                    bad.append(f"{method} parameter {p['name']} {name}: {e}")
        for status, resp in op["responses"].items():
            for mt, media in deref(doc, resp).get("content", {}).items():
                for name, ex in media.get("examples", {}).items():
                    ex = deref(doc, ex)
                    if "value" in ex:
                        for e in schema_errors(doc, media["schema"], ex["value"]):
                            bad.append(f"{method} {status} {name}: {e}")
    check(not bad, "every example is valid against its schema", "; ".join(bad))


# ---- nginx ----------------------------------------------------------------

def nginx_binary():
    b = os.environ.get("TEST_NGINX_BINARY", "nginx")
    return b if shutil.which(b) else "/usr/sbin/nginx"


def start_nginx(prefix, conf_text):
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(conf_text)
    subprocess.run([nginx_binary(), "-p", prefix, "-c", conf], check=True)
    return conf


def stop_nginx(prefix, conf):
    subprocess.run([nginx_binary(), "-p", prefix, "-c", conf, "-s", "stop"],
                   stderr=subprocess.DEVNULL)


def wait_port(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def request(port, method, target, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Origin": ORIGIN}
    h.update(headers or {})
    c.request(method, target, body=body, headers=h)
    r = c.getresponse()
    data = b"" if method == "HEAD" else r.read()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    c.close()
    return out


def raw_request(port, text):
    """For what http.client will not send: a length the body does not have."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(text.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


AUDIO_MAGIC = {
    "audio/wav": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WAVE",
    "audio/flac": lambda b: b[:4] == b"fLaC",
    "audio/ogg": lambda b: b[:4] == b"OggS",
    "audio/mpeg": lambda b: b[:3] == b"ID3" or (len(b) > 1 and b[0] == 0xFF and b[1] & 0xE0 == 0xE0),
}


class Answers:
    def __init__(self, doc):
        self.doc = doc
        self.hit = set()        # (method, status)
        self.examples = set()   # example names used

    def check(self, what, method, answer, want_status=None, want_type=None, example=None):
        status, headers, body = answer
        op = self.doc["paths"]["/generate"][method]
        key = str(status)
        if want_status is not None and not check(status == want_status, f"{what}: status {want_status}",
                                                 f"got {status}: {body[:300]!r}"):
            return
        if not check(key in op["responses"], f"{what}: {status} is documented for {method.upper()}"):
            return
        self.hit.add((method, key))
        resp = deref(self.doc, op["responses"][key])
        # headers: required ones present, every one documented and valid
        documented = {k.lower(): deref(self.doc, v) for k, v in resp.get("headers", {}).items()}
        bad = []
        for name, h in documented.items():
            if h.get("required") and name not in headers:
                bad.append(f"{name} missing")
        for name, value in headers.items():
            if name in HTTP_HEADERS:
                continue
            if name not in documented:
                bad.append(f"{name} not documented")
                continue
            bad += [f"{name}: {e}" for e in schema_errors(self.doc, documented[name]["schema"], value)]
        check(not bad, f"{what}: headers as documented", "; ".join(bad))
        content = resp.get("content", {})
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if not content:
            check(body == b"", f"{what}: no body, as documented", f"{len(body)} bytes")
            return
        if not check(ctype in content, f"{what}: Content-Type {ctype} is documented",
                     ", ".join(content)):
            return
        if want_type is not None:
            check(ctype == want_type, f"{what}: Content-Type {want_type}", ctype)
        if method == "head":
            check(body == b"", f"{what}: no body")
            return
        media = content[ctype]
        if ctype == "application/json":
            try:
                value = json.loads(body)
            except ValueError as e:
                check(False, f"{what}: the body is JSON", str(e))
                return
            errs = schema_errors(self.doc, media["schema"], value)
            check(not errs, f"{what}: the body is valid against the schema", "; ".join(errs))
            ex = deref(self.doc, media.get("examples", {}).get(example, {}))
            if example and value.get("success") is False and "value" in ex:
                check(value == ex["value"], f"{what}: the body is the example's",
                      f"got {value}, documented {ex['value']}")
        elif ctype in AUDIO_MAGIC:
            if status == 206 and not headers.get("content-range", "").startswith("bytes 0-"):
                check(len(body) > 0, f"{what}: a part of the audio")
            else:
                check(AUDIO_MAGIC[ctype](body), f"{what}: the body is {ctype}", repr(body[:16]))
        if example:
            check(example in media.get("examples", {}),
                  f"{what}: the {status} {ctype} response has the example {example}")
            self.examples.add(example)


def query_of(doc, op, name):
    """A GET's request example: every query parameter's example of that name."""
    pairs = []
    for p in op.get("parameters", []):
        p = deref(doc, p)
        if p["in"] == "query" and name in p.get("examples", {}):
            v = deref(doc, p["examples"][name])["value"]
            if isinstance(v, list):
                v = ",".join(v)  # style form, explode false
            elif isinstance(v, bool):
                v = "true" if v else "false"
            pairs.append((p["name"], str(v)))
    return urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)


def response_of(doc, op, name):
    """(status, media type) of the response example with that name."""
    found = []
    for status, resp in op["responses"].items():
        for mt, media in deref(doc, resp).get("content", {}).items():
            if name in media.get("examples", {}):
                found.append((int(status), mt))
    return found


def main():
    module, model = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    doc_path = os.path.join(ROOT, "docs", "openapi.json")
    with open(doc_path, "rb") as f:
        doc_bytes = f.read()
    doc = json.loads(doc_bytes)
    check_structure(doc)
    check_examples(doc)

    tmp = tempfile.mkdtemp()
    os.chmod(tmp, 0o755)
    node = os.path.join(tmp, "node")
    conf = open(os.path.join(ROOT, "conf", "nginx.conf")).read()
    conf = (conf.replace("@MODULE@", module).replace("@MODEL@", model)
            .replace("@PREFIX@", node).replace("@HTML@", os.path.join(ROOT, "html"))
            .replace("127.0.0.1:8080", f"127.0.0.1:{PORT}"))
    # one job at a time and no waiting place: one long generation fills the
    # queue; a location whose jobs time out at once (collected, so that no
    # header has gone out: a stream would be closed short); one that allows an hour
    anchor = "        # this worker's queue and totals"
    extra = ("        location = /generate-timeout { musicgen on; musicgen_timeout 1ms; musicgen_stream off; }\n"
             "        location = /generate-long { musicgen on; musicgen_max_duration 3600; }\n")
    if not check(anchor in conf and "    musicgen_model " in conf,
                 "conf/nginx.conf has the lines the test extends"):
        return
    conf = conf.replace(anchor, extra + anchor, 1)
    conf = conf.replace("    musicgen_model ", "    musicgen_batch 1;\n    musicgen_queue 0;\n    musicgen_model ", 1)
    # a model whose tokenizer is not one: nginx -t passes, the worker's load fails
    broken = os.path.join(tmp, "broken")
    bmodel = os.path.join(tmp, "broken-model")
    os.makedirs(bmodel)
    for f in ("config.json", "generation_config.json", "model.safetensors"):
        os.symlink(os.path.join(model, f), os.path.join(bmodel, f))
    with open(os.path.join(bmodel, "spiece.model"), "wb") as f:
        f.write(b"not a sentencepiece model")
    bconf = (f"load_module {module};\nerror_log {broken}/logs/error.log;\npid {broken}/logs/nginx.pid;\n"
             "events { worker_connections 16; }\n"
             f"http {{ access_log off; client_body_temp_path {broken}/body; musicgen_model {bmodel};\n"
             f"  server {{ listen 127.0.0.1:{BROKEN_PORT}; location = /generate {{ musicgen on; }} }} }}\n")
    node_conf = broken_conf = None
    try:
        node_conf = start_nginx(node, conf)
        broken_conf = start_nginx(broken, bconf)
        if not check(wait_port(PORT) and wait_port(BROKEN_PORT), "nginx listens"):
            return
        run(doc, doc_bytes)
    finally:
        if node_conf:
            stop_nginx(node, node_conf)
        if broken_conf:
            stop_nginx(broken, broken_conf)
        time.sleep(0.3)
        if os.environ.get("KEEP"):
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run(doc, doc_bytes):
    ans = Answers(doc)
    paths = doc["paths"]["/generate"]
    # the document as musicgen_openapi serves it
    status, headers, body = request(PORT, "GET", "/openapi.json")
    check(status == 200 and headers.get("content-type") == "application/json" and body == doc_bytes,
          "GET /openapi.json serves docs/openapi.json as application/json",
          f"{status} {headers.get('content-type')} {len(body)} of {len(doc_bytes)} bytes")
    etag = headers.get("etag", "")
    status2, _, body2 = request(PORT, "GET", "/openapi.json", {"If-None-Match": etag})
    check(etag.startswith('"') and status2 == 304 and body2 == b"",
          "with a strong ETag that If-None-Match answers 304", f"{etag} {status2}")

    # every request example, to the response example of the same name
    post, get = paths["post"], paths["get"]
    raw_query = {deref(doc, p)["name"]: n for p in post.get("parameters", [])
                 for n in deref(doc, p).get("examples", {})}
    for name, ex in post["requestBody"]["content"]["application/json"]["examples"].items():
        want = response_of(doc, post, name)
        if not check(len(want) == 1, f"POST {name}: one response example of that name", str(want)):
            continue
        target = "/generate" + ("?raw=1" if raw_query.get("raw") == name else "")
        body = json.dumps(deref(doc, ex)["value"]).encode()
        ans.check(f"POST {name}", "post", request(PORT, "POST", target,
                  {"Content-Type": "application/json"}, body), want[0][0], want[0][1], name)
        ans.examples.add(name)
    names = sorted({n for p in get["parameters"] for n in deref(doc, p).get("examples", {})})
    etag = None
    for name in names:
        want = response_of(doc, get, name)
        if not check(len(want) == 1, f"GET {name}: one response example of that name", str(want)):
            continue
        answer = request(PORT, "GET", "/generate?" + query_of(doc, get, name))
        ans.check(f"GET {name}", "get", answer, want[0][0], want[0][1], name)
        if name == "query":
            etag = answer[1].get("etag")
    q = "/generate?" + query_of(doc, get, "query")

    # what no body decides
    check(etag is not None, "the seeded GET example has an ETag")
    ans.check("GET If-None-Match", "get", request(PORT, "GET", q, {"If-None-Match": etag or ""}), 304)
    ans.check("GET Range", "get", request(PORT, "GET", q, {"Range": "bytes=0-43"}), 206, "audio/wav")
    ans.check("GET Range past the end", "get", request(PORT, "GET", q, {"Range": "bytes=100000000-"}), 416)
    ans.check("HEAD", "head", request(PORT, "HEAD", q), 200, "audio/wav")
    ans.check("HEAD If-None-Match", "head", request(PORT, "HEAD", q, {"If-None-Match": etag or ""}), 304)
    ans.check("HEAD bad duration", "head",
              request(PORT, "HEAD", "/generate?" + query_of(doc, get, "badDuration")), 400)
    ans.check("OPTIONS preflight", "options", request(PORT, "OPTIONS", "/generate", {
        "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}), 204)
    for method in ("put", "delete"):
        ans.check(method.upper(), method, request(PORT, method.upper(), "/generate"), 405,
                  "application/json", "methodNotAllowed")
    prompt = json.dumps(deref(doc, post["requestBody"]["content"]["application/json"]
                              ["examples"]["prompt"])["value"])
    ans.check("POST text/plain", "post", request(PORT, "POST", "/generate", {"Content-Type": "text/plain"},
              prompt.encode()), 415, "application/json", "notJson")
    ans.check("POST past client_max_body_size", "post", raw_request(PORT,
              f"POST /generate HTTP/1.1\r\nHost: x\r\nOrigin: {ORIGIN}\r\nContent-Type: application/json\r\n"
              "Content-Length: 30000000\r\nConnection: close\r\n\r\n{}"), 413, "application/json",
              "bodyTooLarge")
    # 30 s of audio: long enough that the 1 ms timer fires first
    slow = json.dumps(dict(json.loads(prompt), duration=30))
    ans.check("POST past musicgen_timeout", "post", request(PORT, "POST", "/generate-timeout",
              {"Content-Type": "application/json"}, slow.encode()), 504, "application/json", "timeout")
    ans.check("POST to a worker whose model did not load", "post", request(BROKEN_PORT, "POST", "/generate",
              {"Content-Type": "application/json"}, prompt.encode()), 503, "application/json", "notLoaded")
    ans.check("HEAD to a worker whose model did not load", "head",
              request(BROKEN_PORT, "HEAD", q), 503)
    ans.check("GET to a worker whose model did not load", "get", request(BROKEN_PORT, "GET", q), 503,
              "application/json", "notLoaded")
    ans.check("GET past musicgen_timeout", "get", request(PORT, "GET", "/generate-timeout?prompt=slow&duration=30"),
              504, "application/json", "timeout")
    queue_full(doc, ans, prompt)

    # everything documented was answered
    missing = [f"{m.upper()} {s}" for _, m, op in operations(doc) for s in op["responses"]
               if (m, s) not in ans.hit and (m, s) not in NOT_SENT]
    check(not missing, "every documented operation and status was answered", ", ".join(missing))
    unused = []
    for _, m, op in operations(doc):
        for s, resp in op["responses"].items():
            for media in deref(doc, resp).get("content", {}).values():
                unused += [n for n in media.get("examples", {})
                           if n not in ans.examples and n not in NOT_SENT_EXAMPLES]
    check(not unused, "every response example was sent", ", ".join(sorted(set(unused))))


def queue_full(doc, ans, prompt):
    """musicgen_batch 1, musicgen_queue 0: while an hour-long clip is being
    generated, the next job is refused."""
    long = socket.create_connection(("127.0.0.1", PORT), timeout=30)
    long.sendall(b"GET /generate-long?prompt=long&duration=3600 HTTP/1.1\r\nHost: x\r\n\r\n")
    running = False
    for _ in range(100):
        _, _, body = request(PORT, "GET", "/status")
        if json.loads(body).get("running", 0) >= 1:
            running = True
            break
        time.sleep(0.1)
    if check(running, "an hour-long clip is being generated"):
        ans.check("POST while the queue is full", "post", request(PORT, "POST", "/generate",
                  {"Content-Type": "application/json"}, prompt.encode()), 503, "application/json",
                  "queueFull")
    long.close()


if __name__ == "__main__":
    main()
    print(f"nginx_openapi: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
