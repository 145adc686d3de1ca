#!/usr/bin/env python3
"""Every relative link of the project's markdown points to a file that exists, and its
#anchor to a heading of that file.

The README is a front page that sends readers on to RELIABILITY.md, BENCHMARKS.md and the
pages under docs/; a page moved or a heading renamed would otherwise leave a dead link that
nothing notices. Run with no arguments for the project's own pages (README.md,
RELIABILITY.md, BENCHMARKS.md, docs/*.md), or name the files to check. Exits 1 and lists every
broken link when there is one. Anchors follow GitHub's rule: the heading's text lowercased,
punctuation other than '-' and '_' dropped, spaces turned into '-', '-1', '-2' appended to
repeats. Absolute links (http:, https:, mailto:) are not fetched: this runs offline.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "RELIABILITY.md", "BENCHMARKS.md", "docs/*.md"]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the text may hold `code` but no nested brackets.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`+[^`]*`+")


def prose_lines(text):
    """The lines outside fenced code blocks, with their line numbers."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading):
    text = re.sub(r"<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text, not its target
    text = text.lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path):
    seen = {}
    result = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(path):
    problems = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            where = f"{path.relative_to(ROOT)}:{number}: {target}"
            if not linked.exists():
                problems.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                problems.append(f"{where}: no heading with anchor #{anchor} in {linked.name}")
            elif anchor and linked.suffix != ".md":
                problems.append(f"{where}: an anchor into a file that is not markdown")
    return problems


def main(argv):
    if argv:
        files = [Path(arg).resolve() for arg in argv]
    else:
        files = sorted({p for pattern in PAGES for p in ROOT.glob(pattern)})
    problems = [problem for path in files for problem in broken_links(path)]
    for problem in problems:
        print(problem, file=sys.stderr)
    checked = ", ".join(str(path.relative_to(ROOT)) for path in files)
    if problems:
        print(f"{len(problems)} broken link(s) in {checked}", file=sys.stderr)
        return 1
    print(f"links: every relative link resolves in {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
