#!/usr/bin/env python3
"""No two Alt+letter mnemonics of keyline-ui can be on screen at once.

GTK activates a mnemonic only if exactly one mapped widget of the window has
it; with two, Alt+letter just cycles the focus between them and clicks
nothing. What is on screen at once is the window's own template (the view
switcher: Alt+L, Alt+D, Alt+C, Alt+V, always there) plus the one view the
stack shows, with every template that view contains. So for each view, the
window's mnemonics and the view's (confirmation revealers included: they can
be open) must all differ.

Mnemonics set from C (gtk_label_new_with_mnemonic, use_underline) are not
seen here, so any in ui/*.c fail the check until it learns about them.
"""
import argparse
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

TRUE = ("true", "yes", "1")


def prop(obj, name):
    for p in obj.findall("property"):
        if p.get("name") == name:
            return (p.text or "").strip()
    return None


def mnemonic(text):
    """The letter after the first single underscore, lower case, or None."""
    m = re.search(r"(?<!_)_([^_])", text.replace("__", ""))
    return m.group(1).lower() if m else None


def scan(elem, out, classes):
    """Mnemonics (letter, label) under elem; class names of the objects."""
    for obj in elem.iter():
        if obj.tag not in ("object", "template"):
            continue
        classes.add(obj.get("class"))
        if (prop(obj, "use-underline") or "").lower() not in TRUE:
            continue
        text = prop(obj, "label") or prop(obj, "title") or ""
        letter = mnemonic(text)
        if letter:
            out.append((letter, text))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ui-dir", required=True)
    args = ap.parse_args()

    templates = {}  # class -> (mnemonics, classes used)
    for path in sorted(glob.glob(os.path.join(args.ui_dir, "*.ui"))):
        root = ET.parse(path).getroot()
        for t in root.iter("template"):
            found, used = [], set()
            scan(t, found, used)
            used.discard(t.get("class"))
            templates[t.get("class")] = (found, used, os.path.basename(path))

    def closure(cls, seen=None):
        seen = seen if seen is not None else set()
        if cls in seen or cls not in templates:
            return []
        seen.add(cls)
        found, used, _ = templates[cls]
        out = list(found)
        for c in sorted(u for u in used if u):
            out += closure(c, seen)
        return out

    window = templates["KlUiWindow"]
    # The window's own mnemonics, without those of the views it contains.
    views = sorted(c for c in window[1] if c in templates)
    always = list(window[0])
    problems = []
    for view in views:
        seen = {}
        for letter, text in always + closure(view):
            seen.setdefault(letter, []).append(text)
        for letter, texts in sorted(seen.items()):
            if len(texts) > 1:
                problems.append("%s: Alt+%s is %s" % (
                    view, letter.upper(), " and ".join(repr(t) for t in texts)))

    for path in sorted(glob.glob(os.path.join(args.ui_dir, "*.c"))):
        with open(path) as f:
            src = f.read()
        if re.search(r"with_mnemonic|use_underline", src):
            problems.append("%s sets a mnemonic in C: teach test_ui_mnemonics.py about it"
                            % os.path.basename(path))

    for p in problems:
        print("test_ui_mnemonics:", p, file=sys.stderr)
    if problems:
        return 1
    print("test_ui_mnemonics: %d views, no Alt+letter used twice on one screen" % len(views))
    return 0


if __name__ == "__main__":
    sys.exit(main())
