#!/usr/bin/env python3
"""The shape of the code, checked (issue 19): no import circle among the source files of a
crate, no file in crates/*/src over 900 lines, the CLI crate at most 1,000 lines.

An import is a path a file names: `use crate::a::b`, `super::x`, `self::child`, a child module's
name (`use child::Item`, `child::f()`), in `use` trees and in code. Each resolves to the file of
the deepest module it names (an item of a module is that module's file); `mod x;` declarations
are not imports. A circle is a set of two or more files that reach each other through imports.
Cargo already forbids circles between crates.

    python3 scripts/check-house.py          # exit 1 and the problems, or a one-line summary
    python3 scripts/check-house.py --graph  # also print every file's imports
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_FILE_LINES = 900
MAX_CLI_LINES = 1000

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Source text with comments, string and char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"\w", text[i - 1])):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


class Module:
    def __init__(self, path, file, inline=False):
        self.path = path  # tuple of segments after `crate`
        self.file = file
        self.inline = inline
        self.children = {}


def parse_use_tree(s):
    """The paths of a `use` tree (`a::{b, c::d as e, self, *}`), as lists of segments."""
    s = re.sub(r"\s+as\s+" + IDENT, "", s)
    s = re.sub(r"\s+", "", s)
    paths = []

    def walk(prefix, s):
        parts, depth, start = [], 0, 0
        for i, c in enumerate(s):
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 0:
                parts.append(s[start:i])
                start = i + 1
        parts.append(s[start:])
        for part in filter(None, parts):
            if "{" in part:
                head, rest = part.split("{", 1)
                walk(prefix + [x for x in head.split("::") if x], rest[:-1])
            else:
                segs = [x for x in part.split("::") if x]
                if segs and segs[-1] in ("*", "self"):
                    segs = segs[:-1]
                paths.append(prefix + segs)

    walk([], s)
    return paths


def matching_brace(text, open_at):
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def crate_modules(src_root):
    """The module tree of a crate from its root file, following `mod` declarations; each module
    with the spans of its file's text that are its own (an inline module's body is its own)."""
    root = Module((), src_root)
    modules = []

    def load_file(module):
        original = module.file.read_text()
        text = strip_comments_and_strings(original)
        is_dir_owner = module.file.name in ("lib.rs", "main.rs", "mod.rs")
        base = module.file.parent if is_dir_owner else module.file.parent / module.file.stem
        scan(module, original, text, 0, len(text), base)

    def scan(module, original, text, start, end, base):
        own, at = [], start
        module.text = text
        pattern = re.compile(r"(?:pub(?:\([^)]*\))?\s+)?\bmod\s+(" + IDENT + r")\s*([;{])")
        pos = start
        while True:
            m = pattern.search(text, pos, end)
            if not m:
                break
            name, kind = m.group(1), m.group(2)
            if kind == "{":
                close = matching_brace(text, m.end() - 1)
                child = Module(module.path + (name,), module.file, inline=True)
                module.children[name] = child
                own.append((at, m.end()))
                scan(child, original, text, m.end(), close, base / name)
                at = pos = close
                continue
            pos = m.end()
            window = original[max(0, m.start() - 300):m.start()]
            explicit = re.findall(r'#\[path\s*=\s*"([^"]+)"\]\s*(?:#\[[^\]]*\]\s*)*$', window)
            if explicit:
                child_file = module.file.parent / explicit[-1]
            elif (base / f"{name}.rs").is_file():
                child_file = base / f"{name}.rs"
            elif (base / name / "mod.rs").is_file():
                child_file = base / name / "mod.rs"
            else:
                continue  # a module whose file this checkout does not have
            child = Module(module.path + (name,), child_file)
            module.children[name] = child
            load_file(child)
        own.append((at, end))
        module.spans = own
        modules.append(module)

    load_file(root)
    return root, modules


def resolve(root, segments):
    """The file of the deepest module `segments` (absolute, after `crate`) names."""
    module, deepest = root, root
    for seg in segments:
        if seg in module.children:
            module = module.children[seg]
            deepest = module
        else:
            break
    return deepest.file


def imports(root, module):
    """The files a module's own text names."""
    text = "\n".join(module.text[a:b] for a, b in module.spans)
    targets = set()

    def absolute(segs):
        if not segs:
            return None
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] == "self":
            return list(module.path) + segs[1:]
        if segs[0] == "super":
            path = list(module.path)
            while segs and segs[0] == "super":
                path = path[:-1]
                segs = segs[1:]
            return path + segs
        if segs[0] in module.children:
            return list(module.path) + segs
        return None

    for m in re.finditer(r"\buse\s+([^;]+);", text):
        for p in parse_use_tree(m.group(1)):
            a = absolute(p)
            if a is not None:
                targets.add(resolve(root, a))
    for m in re.finditer(r"\b((?:crate|super|self)(?:::" + IDENT + r")+)", text):
        a = absolute(m.group(1).split("::"))
        if a is not None:
            targets.add(resolve(root, a))
    for name in module.children:
        if re.search(r"\b" + name + r"::", text):
            targets.add(resolve(root, list(module.path) + [name]))
    targets.discard(module.file)
    return targets


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def main():
    show_graph = "--graph" in sys.argv
    problems = []
    files_seen = 0
    for crate in sorted((ROOT / "crates").iterdir()):
        src = crate / "src"
        roots = [p for p in (src / "lib.rs", src / "main.rs") if p.is_file()]
        for root_file in roots:
            root, modules = crate_modules(root_file)
            graph = {}
            for module in modules:
                # An inline module (tests) imports on behalf of its file.
                graph.setdefault(module.file, set()).update(imports(root, module))
            for f in graph:
                graph[f].discard(f)
            files_seen += len(graph)
            if show_graph:
                for f, ts in sorted(graph.items()):
                    print(f"{f.relative_to(ROOT)} -> {', '.join(str(t.relative_to(ROOT)) for t in sorted(ts)) or '-'}")
            for comp in cycles(graph):
                problems.append("import circle: " + " <-> ".join(str(f.relative_to(ROOT)) for f in comp))
    for f in sorted((ROOT / "crates").glob("*/src/**/*.rs")):
        n = len(f.read_text().splitlines())
        if n > MAX_FILE_LINES:
            problems.append(f"{f.relative_to(ROOT)}: {n} lines (at most {MAX_FILE_LINES})")
    cli = sum(len(f.read_text().splitlines()) for f in (ROOT / "crates/invscale-cli/src").rglob("*.rs"))
    if cli > MAX_CLI_LINES:
        problems.append(f"crates/invscale-cli/src: {cli} lines (at most {MAX_CLI_LINES}: the CLI is a thin shell)")
    if problems:
        print("\n".join("check-house: " + p for p in problems), file=sys.stderr)
        return 1
    print(f"check-house: {files_seen} source files, no import circle, none over {MAX_FILE_LINES} lines; CLI {cli} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
