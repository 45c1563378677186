#!/usr/bin/env python3
"""Gather French text from Debian's documentation packages into one file of
blank-line-separated documents: the French manual pages (manpages-fr,
manpages-fr-dev) rendered by mandoc, and the French HTML of gimp-help-fr,
debian-handbook and debian-reference-fr with the markup stripped.
Usage: tokenize_corpus.py OUT [MB]; stops once OUT holds MB megabytes
(default: everything found)."""
import glob, gzip, html.parser, os, subprocess, sys


class Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        if tag in ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "tr", "pre"):
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_docs():
    roots = ["/usr/share/gimp/2.0/help/fr", "/usr/share/doc/debian-handbook/html/fr-FR",
             "/usr/share/debian-reference"]
    for root in roots:
        for path in sorted(glob.glob(root + "/**/*.htm*", recursive=True)):
            if "/fr" not in path and not path.endswith(".fr.html"):
                continue
            p = Text()
            try:
                p.feed(open(path, encoding="utf-8", errors="replace").read())
            except Exception:
                continue
            lines = [" ".join(l.split()) for l in "".join(p.parts).split("\n")]
            paras, cur = [], []
            for l in lines:
                if l:
                    cur.append(l)
                elif cur:
                    paras.append(" ".join(cur)); cur = []
            if cur:
                paras.append(" ".join(cur))
            text = "\n".join(paras).strip()
            if len(text) > 200:
                yield text


def man_docs():
    for path in sorted(glob.glob("/usr/share/man/fr/man*/*")):
        r = subprocess.run(["mandoc", "-T", "utf8"], input=gzip.open(path).read()
                           if path.endswith(".gz") else open(path, "rb").read(),
                           capture_output=True)
        r2 = subprocess.run(["col", "-b"], input=r.stdout, capture_output=True)
        text = r2.stdout.decode("utf-8", "replace")
        # One document per man page: its paragraphs joined by single line ends.
        text = "\n".join(l for l in text.split("\n") if l.strip())
        if text:
            yield text


def main():
    out = sys.argv[1]
    limit = float(sys.argv[2]) * 1e6 if len(sys.argv) > 2 else float("inf")
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for gen in (man_docs(), html_docs()):
            for d in gen:
                f.write(d + "\n\n")
                n += len(d.encode()) + 2
                if n >= limit:
                    return


main()
