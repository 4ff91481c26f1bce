#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/ from
the repository's own inputs (tests/corpus/, tests/fixtures/, examples/) plus a
few hand-written ones. Run from the repository root; `cargo fuzz cmin` then
keeps the ones that add coverage."""
import glob, hashlib, json, os, sys

root = os.getcwd()
out = os.path.join(root, "fuzz", "corpus")

def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    name = name or "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def read(p):
    with open(p, "rb") as f:
        return f.read()

patches = sorted(glob.glob("tests/corpus/patches/*.json") + glob.glob("examples/*.json")
                 + glob.glob("tests/fixtures/legacy/*.json") + glob.glob("crates/ghost-core/tests/fixtures/legacy/*.json"))
texts = sorted(glob.glob("examples/*.md") + glob.glob("examples/*.txt") + glob.glob("examples/*.diff")
               + glob.glob("tests/fixtures/agent-formats/codex/*/patch.txt"))
aider = json.load(open("tests/fixtures/agent-formats/aider/cases.json"))

for p in patches:
    put("patch", read(p))
op = '{"op": "write", "path": "a.txt", "content": "x"}'
dups = {
    "dup-id": '{"id": "first", "operations": [%s], "id": "second"}' % op,
    "dup-escaped-id": '{"id": "a", "\\u0069d": "b", "operations": [%s]}' % op,
    "dup-op-path": '{"operations": [{"op": "write", "path": "a", "path": "/etc/passwd", "content": ""}]}',
    "dup-operations": '{"operations": [%s], "operations": []}' % op,
}
for name, text in dups.items():
    put("patch", text, "regression-" + name)

for p in texts:
    put("transcript", read(p))
    put("agent", read(p))
for c in aider:
    put("transcript", c["llm_output"])
    base = next(iter(c["original_files"].values()), "")
    put("agent", base.encode() + b"\0" + c["llm_output"].encode())
for p in glob.glob("tests/fixtures/agent-formats/codex/*/patch.txt"):
    inputs = sorted(glob.glob(os.path.join(os.path.dirname(p), "input", "*")))
    if inputs and os.path.isfile(inputs[0]):
        put("agent", read(inputs[0]) + b"\0" + read(p))
for p in patches[:8]:
    body = read(p).decode("utf-8", "replace")
    put("transcript", "Here is the patch:\n\n```json\n" + body + "\n```\nand more text\n")
put("transcript", "```yaml\nid: y1\noperations:\n  - op: write\n    path: a.txt\n    content: |\n      hi\n```\n")
put("transcript", "```ghostbridge\nid: y2\noperations:\n  - {op: delete, path: old.txt}\n```\n")
put("transcript", "```yaml\na: &x [*x]\n```\n")
put("transcript", '```json\n{"id": "a", "id": "b", "operations": [%s]}\n```\n' % op, "regression-dup-id-in-block")

for line in open("tests/corpus/paths/paths.txt", encoding="utf-8"):
    line = line.rstrip("\n")
    if not line or line.startswith("#"):
        continue
    raw = line.split(" ", 1)[1].split(" => ")[0]
    put("path", raw)
for raw in ["out/secret.txt", "abs/secret.txt", "abs/sub/secret.txt", "d/up/outside/secret.txt",
            "d/e/s", "loop", "loop/x", "d/e/f", "a.txt", "./out//sub/../secret.txt", "d/.Git/x"]:
    put("path", raw)

def req(method, path, headers, body=b""):
    if isinstance(body, str):
        body = body.encode()
    head = "%s %s\n" % (method, path) + "".join("%s: %s\n" % h for h in headers) + "\n"
    return head.encode() + body

js = [("content-type", "application/json")]
for p in patches[:12]:
    put("http", req("POST", "/v1/patches", js, read(p)))
put("http", req("POST", "/v1/patches?target=web", js, read("examples/hello.json")))
put("http", req("POST", "/v1/patches", js, "[" + read("examples/hello.json").decode() + ", " + read("examples/rename-and-edit.json").decode() + "]"))
put("http", req("POST", "/v1/patches", js, "[]"))
put("http", req("POST", "/v1/patches", js, '[{"id": "a", "id": "b", "operations": [%s]}]' % op), "regression-dup-id-in-array")
for p in texts[:6]:
    put("http", req("POST", "/v1/patches", [("content-type", "text/markdown")], read(p)))
put("http", req("POST", "/v1/patches", [("content-type", "text/x-apply-patch")], read("examples/apply-patch.txt")))
put("http", req("POST", "/v1/patches", [("content-type", "text/x-diff")], read("examples/unified.diff")))
put("http", req("POST", "/webhook", js, '{"target_file": "/old/app/a.txt", "patch": "hello\\n"}'))
put("http", req("POST", "/ingest/patch", js, '{"patch": %s, "metadata": {"from": "x"}}' % read("examples/hello.json").decode()))
put("http", req("GET", "/v1/patches/hello-1", []))
put("http", req("GET", "/v1/patches/%2e%2e%2fetc", []))
put("http", req("GET", "/healthz", []))
put("http", req("GET", "/nowhere", []))
put("http", req("DELETE", "/v1/patches", []))
put("http", req("POST", "/v1/patches", [("content-type", "text/html")], "<p>"))
put("http", req("POST", "/v1/patches", [("authorization", "Bearer wrong"), ("content-type", "application/json")], "{}"))
put("http", req("POST", "/v1/patches", [("authorization", "Basic Zm9vOmJhcg=="), ("content-type", "application/json")], "{}"))
put("http", req("POST", "/v1/patches", [("x-ghost-signature", "sha256=00"), ("authorization", ""), ("content-type", "application/json")], "{}"))
put("http", req("POST", "/v1/patches", js, "x" * 4000))
