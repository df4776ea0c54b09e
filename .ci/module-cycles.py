#!/usr/bin/env python3
"""Fails if a crate's modules depend on each other in a cycle.

    python3 .ci/module-cycles.py model/src harness/src impl/src

A module `y` depends on a module `x` when `y`'s code (outside its test code: `tests.rs` files
and whatever follows a `#[cfg(test)]` line) names `crate::x...`, or `super::x...` where `x` is
a sibling. A folder's submodules count as the folder in its parent's graph, and each folder's
own submodules form a graph of their own; every one of these graphs must be acyclic, so a
reader can always start from a module that needs no other.

Prints each set of modules that depend on each other in a cycle, with the edges among them, and exits 1; prints the number of graphs checked and
exits 0 otherwise.
"""
import os
import re
import sys

PATH = re.compile(r"\b(crate|super)((?:::(?:\w+|\{))+)")


def module_files(src):
    """Yields (module path as a tuple, file path) for every .rs file under src."""
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
            if rel[-1] in ("lib", "main", "mod"):
                rel = rel[:-1]
            if rel and rel[-1] == "tests":
                continue  # a `tests.rs` file is test code
            yield tuple(rel), path


def production_text(path):
    """The file's text up to its first `#[cfg(test)]` line, without comments."""
    lines = []
    with open(path, encoding="utf-8") as source:
        for line in source:
            if line.strip().startswith("#[cfg(test)]"):
                break
            lines.append(line.split("//", 1)[0])
    return "".join(lines)


def expand(text, start):
    """The paths named by a `{...}` group starting at text[start] == '{', as lists of names."""
    depth, i, items, current = 0, start, [], ""
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
            if depth > 1:
                current += ch
        elif ch == "}":
            depth -= 1
            if depth == 0:
                items.append(current)
                break
            current += ch
        elif ch == "," and depth == 1:
            items.append(current)
            current = ""
        else:
            current += ch
        i += 1
    paths = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        head = re.match(r"(\w+)", item)
        if head:
            paths.append([head.group(1)])
        elif item.startswith("{"):
            paths.extend(expand(item, 0))
    return paths


def references(module, text):
    """Absolute module paths (tuples of names) that `module`'s text names."""
    found = []
    for match in PATH.finditer(text):
        root, rest = match.group(1), match.group(2)
        base = () if root == "crate" else module[:-1]
        names = [n for n in rest.split("::") if n]
        prefix = list(base)
        for n in names:
            if n == "{":
                brace = match.start(2) + rest.index("{")
                for path in expand(text, brace):
                    found.append(tuple(prefix + path))
                break
            if n == "super":
                prefix = prefix[:-1]
                continue
            prefix.append(n)
        else:
            found.append(tuple(prefix))
    return found


def tangles(nodes, edges):
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            connect(node)
    return found


def check(src):
    modules = dict(module_files(src))
    # children[folder] = names of its submodules that have files
    children = {}
    for module in modules:
        for depth in range(len(module)):
            children.setdefault(module[:depth], set()).add(module[depth])
    edges = {}  # folder -> {child -> set(child)}
    for module, path in modules.items():
        if not module:
            continue
        for target in references(module, production_text(path)):
            # the deepest common folder decides which graph the edge belongs to
            common = 0
            while common < min(len(module), len(target)) and module[common] == target[common]:
                common += 1
            folder = module[:common]
            if common >= len(module) or common >= len(target):
                continue  # a module naming its own ancestor or descendant
            a, b = module[common], target[common]
            if b not in children.get(folder, ()):
                continue  # an item, not a module
            edges.setdefault(folder, {}).setdefault(a, set()).add(b)
    cycles = []
    for folder, names in sorted(children.items()):
        where = "::".join(folder) or "crate root"
        for component in tangles(names, edges.get(folder, {})):
            inside = {a: sorted(b & set(component)) for a, b in edges[folder].items() if a in component}
            uses = "; ".join(f"{a} uses {', '.join(b)}" for a, b in sorted(inside.items()))
            cycles.append(f"{src} ({where}): {{{', '.join(component)}}}: {uses}")
    return cycles, len(children)


def main():
    failed, graphs = [], 0
    for src in sys.argv[1:]:
        cycles, count = check(src)
        failed.extend(cycles)
        graphs += count
    for cycle in failed:
        print("module cycle:", cycle)
    if failed:
        sys.exit(1)
    print(f"no module cycles ({graphs} module graphs checked)")


if __name__ == "__main__":
    main()
