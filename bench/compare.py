"""Side by side: the first row of several benchmark JSON files (before/after tables).

    python -m bench.compare before.json after.json [more.json …] [--labels before,after,…]

Works for the JSON of ``dialin``/``dialout`` (response, hold, throughput, CPU),
``status`` (latency, rates) and ``queries`` (counts and times per page).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.harness import fmt, table


def _load(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _start_rows(datas: list[dict], labels: list[str]) -> str:
    cols = ["run", "resp p50", "resp p99", "hold p50", "hold p95", "hold p99", "to room p50", "req/s", "errors",
            "CPU ms/call (server+worker+pg)"]
    rows = []
    for label, d in zip(labels, datas):
        r = d["rows"][0]
        cpu = r.get("cpu") or {}
        per_call = None
        if cpu and r.get("n"):
            per_call = sum(cpu.get(k, {}).get("cpu_s", 0) for k in ("server", "worker", "postgres")) * 1000 / r["n"]
        ph = (r.get("phases") or {}).get("to_room_request_ms") or {}
        rows.append([label, r["response_ms"]["p50"], r["response_ms"]["p99"], r["hold_ms"]["p50"], r["hold_ms"]["p95"],
                     r["hold_ms"]["p99"], ph.get("p50"), r["throughput_rps"], r["errors"] + r["missing_starts"],
                     per_call])
    return table(cols, rows)


def _status_rows(datas: list[dict], labels: list[str]) -> str:
    cols = ["run", "events/s", "msgs delivered/s", "p50 ms", "p95", "p99", "max", "lost", "server cores"]
    rows = []
    for label, d in zip(labels, datas):
        r = d["rows"][0]
        lat = r["latency_ms"]
        rows.append([label, r["events_per_s"], r["delivered_per_s"], lat["p50"], lat["p95"], lat["p99"], lat["max"],
                     r["lost"], ((r.get("cpu") or {}).get("server") or {}).get("cores")])
    return table(cols, rows)


def _query_rows(datas: list[dict], labels: list[str]) -> str:
    cols = ["page"]
    for label in labels:
        cols += [f"{label}: queries small/large", f"{label}: ms large"]
    pages = [r["page"] for r in datas[0]["rows"]]
    rows = []
    for page in pages:
        row: list[Any] = [page]
        for d in datas:
            r = next((x for x in d["rows"] if x["page"] == page), None)
            if r is None:
                row += ["–", "–"]
            else:
                row += [f"{r['small']['queries']}/{r['large']['queries']}", fmt(r["large"]["ms_median"])]
        rows.append(row)
    return table(cols, rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+")
    p.add_argument("--labels", default="")
    args = p.parse_args(argv)
    datas = [_load(f) for f in args.files]
    labels = args.labels.split(",") if args.labels else [Path(f).stem for f in args.files]
    kind = datas[0]["benchmark"]
    if kind in ("dialin", "dialout"):
        print(_start_rows(datas, labels))
    elif kind == "status":
        print(_status_rows(datas, labels))
    elif kind == "queries":
        print(_query_rows(datas, labels))
    else:
        raise SystemExit(f"unknown benchmark {kind!r}")


if __name__ == "__main__":
    main()
