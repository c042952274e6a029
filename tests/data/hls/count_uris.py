#!/usr/bin/env python3
"""Independent URI count for the shared playlist corpus (see README.md here).

Written from SPEC §5 with plain regular expressions, deliberately sharing no code or
structure with src/hls/rewrite.c. Run once; its output is reviewed by hand and committed
as uri-counts.tsv, which tests/unit/hls/test_corpus.c checks the C rewriter against.

    python3 tests/data/hls/count_uris.py tests/data/conformance/playlists > tests/data/hls/uri-counts.tsv
"""
import os
import re
import sys
from urllib.parse import urlsplit

# The base URL the test rewrites every corpus file against (its query feeds QUERYPARAM).
BASE = "https://origin.example.com/hls/path/playlist.m3u8?token=tok&foo=bar&parent-token=ptok"

# tag -> {attribute: class}
CARRIERS = {
    "EXT-X-MEDIA": {"URI": "playlist"},
    "EXT-X-I-FRAME-STREAM-INF": {"URI": "iframe_playlist"},
    "EXT-X-IMAGE-STREAM-INF": {"URI": "image_playlist"},
    "EXT-X-RENDITION-REPORT": {"URI": "rendition_report"},
    "EXT-X-PART": {"URI": "part"},
    "EXT-X-PRELOAD-HINT": {"URI": "preload_hint"},
    "EXT-X-KEY": {"URI": "key"},
    "EXT-X-SESSION-KEY": {"URI": "session_key"},
    "EXT-X-MAP": {"URI": "map"},
    "EXT-X-SESSION-DATA": {"URI": "session_data"},
    "EXT-X-CONTENT-STEERING": {"SERVER-URI": "steering"},
    "EXT-X-DATERANGE": {"X-ASSET-URI": "asset", "X-ASSET-LIST": "asset_list"},
}

QUOTED_ATTR = re.compile(r'([A-Z0-9-]+)\s*=\s*"([^"]*)"')
SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
VARREF = re.compile(r"\{\$([A-Za-z0-9_-]+)\}")


def base_query():
    q = {}
    for pair in urlsplit(BASE).query.split("&"):
        if pair:
            k, _, v = pair.partition("=")
            q.setdefault(k, v)
    return q


def classify(uri, defs):
    """'ok', 'foreign' or 'unresolved' for one URI as written."""
    m = SCHEME.match(uri)
    if m and m.group(1).lower() not in ("http", "https"):
        return "foreign"
    if VARREF.search(uri):
        for name in VARREF.findall(uri):
            if defs.get(name) is None:  # undefined, imported, duplicated or nested
                return "unresolved"
        uri = VARREF.sub(lambda mm: defs[mm.group(1)], uri)
        m = SCHEME.match(uri)
        if m and m.group(1).lower() not in ("http", "https"):
            return "foreign"
    # Escaping fixes spaces, non-ASCII and the like; what stays invalid in a URI
    # reference is '[' or ']' outside an authority, or a second '#'.
    rest = uri
    am = re.match(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//[^/?#]*", uri)
    if am:
        rest = uri[am.end():]
    if "[" in rest or "]" in rest or uri.count("#") > 1:
        return "unresolved"
    # An http(s) URI must name a server: "http:seg.ts" or "https:///x" do not.
    m = SCHEME.match(uri)
    if m and not re.match(r"[A-Za-z]+://[^/?#]", uri):
        return "unresolved"
    return "ok"


def count(path):
    data = open(path, "rb").read().decode("utf-8", "surrogateescape")
    if data.startswith("\ufeff"):
        data = data[1:]
    defs, qp = {}, base_query()
    res = {"ok": {}, "foreign": 0, "unresolved": 0}

    def add(cls, uri):
        if uri == "":
            return
        c = classify(uri, defs)
        if c == "ok":
            res["ok"][cls] = res["ok"].get(cls, 0) + 1
        else:
            res[c] += 1

    pending = None  # class of the next URI line, set by EXTINF / EXT-X-STREAM-INF
    for line in data.split("\n"):
        if line.endswith("\r"):
            line = line[:-1]
        if line.startswith("#EXT"):
            name, _, value = line[1:].partition(":")
            if name == "EXTINF":
                pending = "segment"
            elif name == "EXT-X-STREAM-INF":
                pending = "playlist"
            elif name == "EXT-X-DEFINE":
                attrs = dict(QUOTED_ATTR.findall(value))
                if "NAME" in attrs and "VALUE" in attrs:
                    n, v = attrs["NAME"], attrs["VALUE"]
                elif "QUERYPARAM" in attrs and attrs["QUERYPARAM"] in qp:
                    n, v = attrs["QUERYPARAM"], qp[attrs["QUERYPARAM"]]
                else:
                    continue
                if n in defs or VARREF.search(v):
                    defs[n] = None
                else:
                    defs[n] = v
            elif name in CARRIERS:
                for attr, val in QUOTED_ATTR.findall(value):
                    if attr in CARRIERS[name]:
                        add(CARRIERS[name][attr], val)
            continue
        stripped = line.strip(" \t")
        if stripped == "" or stripped.startswith("#"):
            continue
        if pending:
            add(pending, stripped)
        pending = None
    return res


def main():
    root = sys.argv[1]
    print("# file\turis\tforeign\tunresolved\tper-class (made by count_uris.py; see README.md)")
    for d in sorted(os.listdir(root)):
        full = os.path.join(root, d)
        if not os.path.isdir(full) or d == "LICENSES":
            continue
        for f in sorted(os.listdir(full)):
            if not f.endswith(".m3u8"):
                continue
            r = count(os.path.join(full, f))
            total = sum(r["ok"].values())
            cls = ",".join("%s=%d" % kv for kv in sorted(r["ok"].items())) or "-"
            print("%s/%s\t%d\t%d\t%d\t%s" % (d, f, total, r["foreign"], r["unresolved"], cls))


if __name__ == "__main__":
    main()
