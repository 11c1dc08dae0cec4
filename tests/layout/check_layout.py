#!/usr/bin/env python3
"""Keeps Keyline's layout true (docs/HACKING.md, "Layout").

Source checks, over the #include lines and the text of every .c/.h:

  layer      a file includes a header of a folder its own folder may not use
             (the dependency map below points one way only)
  private    a file includes another folder's private header (*_internal.h)
  vendor     a vendor header (tss2, sqlite3, libp11/pkcs11/p11-kit, libusb, GTK/GIO,
             json-c) is included outside the folder that wraps it
  vtype      a header outside the wrapping folder names a vendor type
             (TSS2_RC, ESYS_TR, TPM2B_*, CK_RV, sqlite3_stmt, json_object...)
  json       JSON written by hand: a printf-style literal shaped like JSON, or a
             home-made JSON escaper (json-c builds every document)
  circle     two or more files include each other's headers (a .c and its .h
             count as one unit)
  basename   two headers share a basename (includes are bare: "foo.h")
  unknown    a quoted include that names no header in the tree

Object checks, with --build DIR (the object files of a configured and built
tree):

  symcircle  object files that take symbols from each other in a circle
  libcircle  static libraries that take symbols from each other in a circle
  libdep     a library takes a symbol from a library its folder may not use

tests/ may use anything (it builds inputs with tss2, inspects SQLite files)
except that it too must not form circles. --self-test builds a small tree
with one violation of each kind, checks that each is reported and that a
clean tree passes. Exit status: 0 clean, 1 violations, 2 usage error.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

# Folder -> component. The longest matching prefix wins.
COMPONENTS = [
    ("common/db/", "db"),
    ("common/", "common"),
    ("hsm/", "hsm"),
    ("ca/", "ca"),
    ("station/link/", "link"),
    ("station/agent/", "agent"),
    ("station/tpm/", "tpm"),
    ("station/rpc/", "rpc"),
    ("station/proof/", "proof"),
    ("station/registry/", "registry"),
    ("station/flow/", "flow"),
    ("station/daemon/", "daemon"),
    ("station/cli/", "cli"),
    ("fixtures/", "fixtures"),
    ("ui/", "ui"),
    ("tests/", "tests"),
]

# What each component may include or link, besides itself. Written out in
# full (not transitively) so that each line reads as the rule it is.
ALLOWED = {
    "common": set(),
    "db": {"common"},
    "hsm": {"common"},
    "ca": {"db", "common"},
    # keyline-agent's link protocol; its codec (link_frame.c) is libc only,
    # so the agent, which links nothing else of ours, compiles the same file.
    "link": {"common"},
    # keyline-agent, the program in the DUT's factory image: the codec and
    # the tpm2-tss TCTI loader, nothing else.
    "agent": {"link"},
    "tpm": {"link", "common"},
    "rpc": {"common"},
    "proof": {"tpm", "common"},
    "registry": {"ca", "db", "common"},
    "flow": {"registry", "proof", "tpm", "link", "ca", "hsm", "db", "common"},
    "daemon": {"flow", "registry", "proof", "tpm", "link", "rpc", "ca", "hsm", "db", "common"},
    "cli": {"daemon", "flow", "registry", "proof", "tpm", "link", "rpc", "ca", "hsm", "db", "common"},
    "fixtures": {"rpc", "common"},
    "ui": set(),
    "tests": None,  # anything
}

# Folders of programs: their headers never reach another folder of the
# station (the keyline program's cli.h; keyline-ui's GObject headers, which
# only ui/ and its tests include), so they may show vendor types.
PROGRAMS = {"cli", "ui", "agent"}

# Vendor headers (by include path prefix) -> the components that may include
# them. json-c is the document currency: any .c may use it, but only rpc and
# private headers may show it in a header.
VENDOR_HEADERS = [
    (re.compile(r"^tss2/"), {"tpm", "agent"}, "tpm2-tss"),
    (re.compile(r"^sqlite3\.h$"), {"db"}, "SQLite"),
    (re.compile(r"^(libusb\.h|libusb-1\.0/)"), {"link"}, "libusb"),
    (re.compile(r"^(libp11\.h|pkcs11\.h|p11-kit/)"), {"hsm"}, "PKCS#11"),
    (re.compile(r"^(gtk/|gdk/|gio/|glib\.h|glib/|glib-object\.h|glib-unix\.h)"), {"ui"}, "GTK/GIO"),
]
JSONC_HEADER = re.compile(r"^json-c/")

# Vendor types -> the component whose public headers may name them.
VENDOR_TYPES = [
    (re.compile(r"\b(TSS2_\w+|ESYS_\w+|TPM2B_\w+|TPMT_\w+|TPMS_\w+|TPMU_\w+|TPM2_HANDLE)\b"), "tpm"),
    (re.compile(r"\b(CK_[A-Z_]+|PKCS11_[A-Z_]+|P11KitUri)\b"), "hsm"),
    (re.compile(r"\b(sqlite3\w*)\b"), "db"),
    (re.compile(r"\b(libusb_\w+)\b"), "link"),
    (re.compile(r"\b(json_object)\b"), "rpc"),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
# A string (adjacent literals joined, as the compiler does) that begins like
# a piece of a JSON document: {"key", ,"key": or "key": -- in C source the
# quotes are escaped. Prose that merely shows JSON ("expected {\"a\": ...}")
# begins with words and passes. A line with the comment
# "layout: allow-json" just above may keep one (a reply for when even
# json-c cannot run, such as out of memory).
STRING_RUN = re.compile(r'"(?:[^"\\\n]|\\.)*"(?:\s*"(?:[^"\\\n]|\\.)*")*')
JSON_START = re.compile(r'^(?:\{\s*\\"|,\s*\\"\w+\\"\s*:|\\"\w+\\"\s*:)')
ALLOW_JSON = "layout: allow-json"
# The definition of a function whose name says it escapes JSON.
JSON_ESCAPER = re.compile(r"^(?:static\s+)?(?:inline\s+)?(?:const\s+)?\w+[\s\*]+"
                          r"(\w*json_?esc\w*|esc\w*_?json\w*|\w*escape_?json\w*)\s*\([^;{)]*\)\s*(?:\{|$)",
                          re.M | re.I)


def component(rel):
    best = None
    for prefix, comp in COMPONENTS:
        if rel.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, comp)
    return best[1] if best else None


def strip_comments(text):
    """Drops C comments and string contents' line breaks so that regexes see
    code only (strings are kept: the JSON check needs them)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            # strings are kept (the JSON check reads them), characters not
            out.append(text[i : j + 1] if c == '"' else "0")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def source_files(root):
    skip = {".git", "build", ".library"}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = [
            d for d in dirnames
            if d not in skip and not d.startswith("build") and not (rel_dir == "." and d.startswith("."))
        ]
        for f in sorted(filenames):
            if f.endswith((".c", ".h")):
                rel = os.path.normpath(os.path.join(rel_dir, f))
                if component(rel):
                    yield rel


def is_private_header(rel, comp):
    return rel.endswith("_internal.h") or comp in PROGRAMS


class Report:
    def __init__(self):
        self.items = []

    def add(self, kind, where, msg):
        self.items.append((kind, where, msg))

    def print(self, out):
        for kind, where, msg in sorted(self.items):
            print(f"{where}: {kind}: {msg}", file=out)


def check_sources(root, rep):
    files = list(source_files(root))
    headers = defaultdict(list)
    for rel in files:
        if rel.endswith(".h"):
            headers[os.path.basename(rel)].append(rel)
    for base, paths in sorted(headers.items()):
        paths.sort()
        if len(paths) > 1:
            rep.add("basename", paths[0], f"header name {base} is used {len(paths)} times: {', '.join(paths)}")

    unit_edges = defaultdict(set)  # (folder, stem) -> {(folder, stem)}
    for rel in files:
        comp = component(rel)
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            raw = f.read()
        code = strip_comments(raw)
        me = unit(rel)
        for m in INCLUDE.finditer(code):
            kind, name = m.group(1), m.group(2)
            line = code.count("\n", 0, m.start()) + 1
            where = f"{rel}:{line}"
            if kind == "<":
                for rx, owners, what in VENDOR_HEADERS:
                    if rx.search(name) and comp not in owners and comp != "tests":
                        rep.add("vendor", where, f"<{name}> ({what}) may be included only in "
                                f"{', '.join(sorted(owners))}, not in {comp}")
                if JSONC_HEADER.search(name) and rel.endswith(".h") and comp not in ("rpc", "tests") \
                        and not is_private_header(rel, comp):
                    rep.add("vendor", where, f"<{name}> in a public header: json_object crosses "
                            "folders only through station/rpc; pass JSON as text")
                continue
            target = headers.get(os.path.basename(name))
            if not target:
                rep.add("unknown", where, f'"{name}" names no header in the tree')
                continue
            # The compiler looks beside the including file first.
            near = [t for t in target if os.path.dirname(t) == os.path.dirname(rel)]
            trel = (near or target)[0]
            tcomp = component(trel)
            if os.path.dirname(trel) != os.path.dirname(rel):
                if trel.endswith("_internal.h") or (tcomp == "cli" and comp != "cli"):
                    rep.add("private", where, f"{trel} is private to {os.path.dirname(trel)}/")
            allowed = ALLOWED.get(comp)
            if allowed is not None and tcomp != comp and tcomp not in allowed:
                rep.add("layer", where, f"{comp} may not include {trel} ({tcomp}); "
                        f"{comp} may use: {', '.join(sorted(allowed)) or 'nothing else'}")
            them = unit(trel)
            if them != me:
                unit_edges[me].add(them)

        if rel.endswith(".h") and comp != "tests" and not is_private_header(rel, comp):
            for rx, owner in VENDOR_TYPES:
                if comp == owner:
                    continue
                for m in rx.finditer(re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', code)):
                    line = code.count("\n", 0, m.start()) + 1
                    rep.add("vtype", f"{rel}:{line}", f"public header names {m.group(1)}, "
                            f"a type that belongs inside {owner}")
                    break
        if rel.endswith(".c") and comp != "tests":
            raw_lines = raw.split("\n")
            for m in STRING_RUN.finditer(code):
                text = "".join(re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(0)))
                if not JSON_START.search(text):
                    continue
                line = code.count("\n", 0, m.start()) + 1
                if any(ALLOW_JSON in raw_lines[k] for k in range(max(0, line - 3), line) if k < len(raw_lines)):
                    continue
                rep.add("json", f"{rel}:{line}", f"JSON written by hand (\"{text[:40]}...\"): build it with json-c")
            for m in JSON_ESCAPER.finditer(code):
                line = code.count("\n", 0, m.start()) + 1
                rep.add("json", f"{rel}:{line}", f"home-made JSON escaper {m.group(1)}(): json-c escapes")

    # Units without a .c of their own (type headers) only pass includes on.
    with_code = {unit(rel) for rel in files if rel.endswith(".c")}
    for cyc in cycles(through(unit_edges, with_code)):
        names = [os.path.join(d, s) for d, s in cyc]
        rep.add("circle", names[0], "files include each other: " + " -> ".join(names + [names[0]]))
    return files


def unit(rel):
    """A .c file, its header and its private extension (foo.c, foo.h,
    foo_internal.h) are one unit for the circle check."""
    stem = os.path.splitext(os.path.basename(rel))[0]
    if stem.endswith("_internal"):
        stem = stem[: -len("_internal")]
    return (os.path.dirname(rel), stem)


def through(edges, keep):
    """The edges between nodes of keep, passing through the other nodes."""
    out = defaultdict(set)
    for a in keep:
        seen, todo = set(), list(edges.get(a, ()))
        while todo:
            b = todo.pop()
            if b in seen or b == a:
                continue
            seen.add(b)
            if b in keep:
                out[a].add(b)
            else:
                todo.extend(edges.get(b, ()))
    return out


def cycles(edges):
    """Strongly connected components with more than one node (Tarjan),
    each as a list of nodes in a readable order."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    nodes = set(edges) | {t for ts in edges.values() for t in ts}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return sorted(out)


def dag_ok(rep):
    edges = {c: set(a or ()) for c, a in ALLOWED.items()}
    for cyc in cycles(edges):
        rep.add("layer", "tests/layout/check_layout.py", "the dependency map itself has a circle: " + ", ".join(cyc))


# ---- object files ---------------------------------------------------------

def objects(build):
    """(object path, library) for every object that a static library of the
    build holds now: members of each lib<target>.a, found in that target's
    CMakeFiles/<target>.dir. Objects left behind by renamed sources are not
    in the archive and do not count."""
    for archive in static_libraries(build):
        target = re.match(r"^lib(.+)\.a$", os.path.basename(archive)).group(1)
        members = set(subprocess.run([AR, "t", archive], capture_output=True, text=True,
                                     check=True).stdout.split())
        tdir = None
        for dirpath, dirnames, _ in os.walk(build):
            if os.path.basename(dirpath) == target + ".dir" and "CMakeFiles" in dirpath:
                tdir = dirpath
                break
        if not tdir:
            continue
        for dirpath, _, filenames in os.walk(tdir):
            for f in filenames:
                if f.endswith(".o") and f in members:
                    yield os.path.join(dirpath, f), target


NM = "nm"
AR = "ar"


def nm_symbols(obj, nm=None):
    nm = nm or NM
    out = subprocess.run([nm, "-P", obj], capture_output=True, text=True, check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind in "TDBRVWCG":  # global definitions only: lowercase are file-local
            defined.add(name)
    return defined, undefined


def static_libraries(build):
    """The lib<target>.a archives of the build (programs are left out)."""
    out = []
    for dirpath, _, filenames in os.walk(build):
        out.extend(os.path.join(dirpath, f) for f in filenames if re.match(r"^lib.+\.a$", f))
    return sorted(out)


def check_objects(build, rep, lib_component=None):
    objs = list(objects(build))
    if not objs:
        rep.add("symcircle", build, "no library object files found: build the tree first")
        return
    owner = {}
    syms = {}
    for obj, target in objs:
        d, u = nm_symbols(obj)
        syms[obj] = (target, d, u)
        for s in d:
            owner.setdefault(s, obj)
    obj_edges, lib_edges = defaultdict(set), defaultdict(set)
    for obj, (target, _, undef) in syms.items():
        for s in undef:
            o = owner.get(s)
            if o and o != obj:
                obj_edges[obj].add(o)
                if syms[o][0] != target:
                    lib_edges[target].add(syms[o][0])
    short = lambda o: os.path.relpath(o, build)
    for cyc in cycles(obj_edges):
        rep.add("symcircle", short(cyc[0]), "objects take symbols from each other: " +
                " -> ".join(short(c) for c in cyc))
    for cyc in cycles(lib_edges):
        rep.add("libcircle", cyc[0], "libraries take symbols from each other: " + " -> ".join(cyc))
    lib_component = lib_component or LIB_COMPONENT
    for lib, uses in sorted(lib_edges.items()):
        comp = lib_component.get(lib)
        allowed = ALLOWED.get(comp) if comp else None
        if allowed is None:
            continue
        for other in sorted(uses):
            ocomp = lib_component.get(other)
            if ocomp and ocomp != comp and ocomp not in allowed:
                rep.add("libdep", lib, f"{lib} ({comp}) takes symbols from {other} ({ocomp})")


LIB_COMPONENT = {
    "kl_common": "common", "kl_db": "db", "kl_hsm": "hsm", "kl_ca": "ca", "kl_tpm": "tpm", "kl_link": "link",
    "kl_link_usb": "link",
    "kl_rpc": "rpc", "kl_proof": "proof", "kl_registry": "registry", "kl_flow": "flow",
    "kl_daemon": "daemon", "kl_floor": "fixtures", "kl_ui_core": "ui",
}


# ---- self-test ------------------------------------------------------------

SELF_TREE = {
    # clean parts
    "common/kl_error.h": "#ifndef E\n#define E\nint kl_err(void);\n#endif\n",
    "common/kl_error.c": '#include "kl_error.h"\nint kl_err(void) { return 0; }\n',
    "station/rpc/rpc.h": "#include <json-c/json.h>\njson_object *kl_rpc_reply(void);\n",
    "station/flow/engine.h": "int kl_engine_run(void);\n",
    "station/flow/engine.c": '#include "engine.h"\n#include "tpm.h"\n#include <json-c/json.h>\n'
                             '/* a comment with {\\"key\\": 1} is fine */\n'
                             "int kl_engine_run(void) { return 0; }\n",
    "station/registry/registry_internal.h": "int kl_reg_private(void);\n",
    # layer: tpm includes flow
    "station/tpm/tpm.h": "int kl_tpm_open(void);\n",
    "station/tpm/tpm.c": '#include "tpm.h"\n#include "engine.h"\n',
    # private: cli includes the registry's internal header
    "station/cli/keyline.c": '#include "registry_internal.h"\n',
    # vendor: proof includes tss2
    "station/proof/attest.c": "#include <tss2/tss2_mu.h>\n",
    # vtype: public registry header names sqlite3_stmt
    "station/registry/registry.h": "struct sqlite3_stmt;\nint kl_reg(struct sqlite3_stmt *st);\n",
    # vendor: libusb outside station/link/
    "station/proof/usb.c": "#include <libusb.h>\n",
    # vendor (json-c in a public header outside rpc)
    "ca/ca.h": "#include <json-c/json.h>\n",
    # json: snprintf-built JSON and an escaper
    "ca/issue.c": '#include <stdio.h>\nstatic void json_escape(char *o) { (void)o; }\n'
                  'void f(char *b) { snprintf(b, 9, "{\\"serial\\":\\"%s\\"}", "x"); }\n'
                  'const char *g = "expected an object {\\"serial\\": ...}";\n'
                  'const char *h = "items must be "\n    "{\\"serial\\": ...}";\n'
                  "char q = '\"';\n"
                  '/* layout: allow-json (out of memory) */\nconst char *oom = "{\\"error\\":1}";\n',
    # circle: a.c includes b.h, b.c includes a.h
    "hsm/a.h": "int a(void);\n", "hsm/a.c": '#include "a.h"\n#include "b.h"\n',
    "hsm/b.h": "int b(void);\n", "hsm/b.c": '#include "b.h"\n#include "a.h"\n',
    # basename clash
    "hsm/extra/a.h": "int a2(void);\n",
    # unknown header
    "station/daemon/home.c": '#include "nowhere.h"\n',
    # tests may do what they like
    "tests/unit/test_x.c": '#include <tss2/tss2_mu.h>\n#include <sqlite3.h>\n#include "engine.h"\n',
}

EXPECTED = {
    ("layer", "station/tpm/tpm.c:2"),
    ("private", "station/cli/keyline.c:1"),
    ("vendor", "station/proof/attest.c:1"),
    ("vendor", "station/proof/usb.c:1"),
    ("vtype", "station/registry/registry.h:1"),
    ("vendor", "ca/ca.h:1"),
    ("json", "ca/issue.c:2"),
    ("json", "ca/issue.c:3"),
    ("circle", "hsm/a"),
    ("circle", "station/flow/engine"),  # engine.c -> tpm.h, tpm.c -> engine.h
    ("basename", "hsm/a.h"),
    ("unknown", "station/daemon/home.c:1"),
}

SELF_OBJECTS = {
    # two objects of one library calling each other, and a library pair in a circle
    "kl_tpm/x.c": "int y(void); int x(void) { return y(); }\n",
    "kl_tpm/y.c": "int x(void); int y(void) { return x() + 1; }\n",
    "kl_common/c.c": "int p(void); int c(void) { return p(); }\n",
    "kl_proof/p.c": "int c(void); int p(void) { return c(); }\n",
}


def self_test():
    ok = True
    with tempfile.TemporaryDirectory(prefix="kl-layout-") as tmp:
        for rel, text in SELF_TREE.items():
            path = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        rep = Report()
        check_sources(tmp, rep)
        got = {(k, w) for k, w, _ in rep.items}
        for want in sorted(EXPECTED):
            if want not in got:
                print(f"self-test: expected a '{want[0]}' report at {want[1]}, got none", file=sys.stderr)
                ok = False
        for k, w, msg in rep.items:
            if (k, w) not in EXPECTED:
                print(f"self-test: unexpected report {w}: {k}: {msg}", file=sys.stderr)
                ok = False

        # A clean tree (the violating files removed) passes.
        for rel in ("station/tpm/tpm.c", "station/cli/keyline.c", "station/proof/attest.c", "station/proof/usb.c",
                    "station/registry/registry.h", "ca/ca.h", "ca/issue.c", "hsm/b.c",
                    "hsm/extra/a.h", "station/daemon/home.c"):
            os.unlink(os.path.join(tmp, rel))
        rep = Report()
        check_sources(tmp, rep)
        if rep.items:
            print("self-test: the clean tree was reported:", file=sys.stderr)
            rep.print(sys.stderr)
            ok = False

        # Object circles, from real object files made by the C compiler.
        cc = os.environ.get("CC", "cc")
        build = os.path.join(tmp, "objs")
        for rel, text in SELF_OBJECTS.items():
            lib, name = rel.split("/")
            d = os.path.join(build, "CMakeFiles", lib + ".dir")
            os.makedirs(d, exist_ok=True)
            src = os.path.join(d, name)
            with open(src, "w") as f:
                f.write(text)
            obj = os.path.join(d, name + ".o")
            subprocess.run([cc, "-c", src, "-o", obj], check=True)
            subprocess.run([AR, "rcs", os.path.join(build, f"lib{lib}.a"), obj], check=True)
        # an object left behind by a renamed source: in the folder, not in the archive
        stale = os.path.join(build, "CMakeFiles", "kl_common.dir", "old.c.o")
        with open(stale + ".c", "w") as f:
            f.write("int x(void); int old(void); int old(void) { return x(); }\n")
        subprocess.run([cc, "-c", stale + ".c", "-o", stale], check=True)
        rep = Report()
        check_objects(build, rep)
        kinds = {(k, m.split(":")[0]) for k, _, m in rep.items}
        for want in [("symcircle", "objects take symbols from each other"),
                     ("libcircle", "libraries take symbols from each other"),
                     ("libdep", "kl_common (common) takes symbols from kl_proof (proof)")]:
            if want not in kinds:
                print(f"self-test: expected a '{want[0]}' report ({want[1]}), got: {sorted(kinds)}",
                      file=sys.stderr)
                ok = False
        if any("kl_tpm (tpm)" in m for _, _, m in rep.items):
            print("self-test: an object that is in no archive was counted", file=sys.stderr)
            ok = False
    print("self-test: " + ("all violations found, clean tree passes" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description="Check Keyline's folder layout rules (docs/HACKING.md).")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
                    help="the source tree (default: this checkout)")
    ap.add_argument("--build", help="a built tree: also check object and library symbol circles")
    ap.add_argument("--nm", default="nm", help="the nm program of the toolchain")
    ap.add_argument("--ar", default="ar", help="the ar program of the toolchain")
    ap.add_argument("--self-test", action="store_true", help="check the checker on a tree of known violations")
    args = ap.parse_args()
    global NM, AR
    NM, AR = args.nm, args.ar
    if args.self_test:
        return self_test()
    root = os.path.abspath(args.root)
    if not os.path.isdir(os.path.join(root, "station")):
        print(f"check_layout: {root} is not a Keyline source tree", file=sys.stderr)
        return 2
    rep = Report()
    dag_ok(rep)
    files = check_sources(root, rep)
    if args.build:
        check_objects(os.path.abspath(args.build), rep)
    if rep.items:
        rep.print(sys.stdout)
        print(f"check_layout: {len(rep.items)} violation(s) in {len(files)} files "
              "(the rules: docs/HACKING.md, Layout)")
        return 1
    print(f"check_layout: {len(files)} files, no violation"
          + (" (includes and object symbols)" if args.build else " (includes)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
