"""Tables, bench/results/quality.json and the bytes-vs-quality plot from bench/quality.py's results.json files.

    python bench/quality.py --report out/a/results.json out/b/results.json

Several files combine when they were made with the same population factors (digests checked): a
GPU call holds only so many sizes. Every figure is computed from the files; nothing is typed in.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

PEER = "lora-r8-qv"
GOAL_FRACTION, GOAL_BYTES = 0.90, 32 * 1024
COMMAND = "bash bench/sotu/gpu.sh quality --sizes {size} (bench/quality.py, one H200); python bench/quality.py --report"


def merge(docs: list[dict]) -> dict:
    """One document: users and runs of all files; the population factors must be the same sets."""
    first = docs[0]
    for d in docs[1:]:
        for k, f in d["factors"].items():
            if k != "seconds" and k in first["factors"] and f["digest"] != first["factors"][k]["digest"]:
                raise SystemExit(f"factor set {k} differs between the files ({f['digest']} vs {first['factors'][k]['digest']})")
    runs = {}
    for d in docs:
        for r in d["runs"]:
            if r["status"] == "done" or (r["size"], r["method"]) not in runs:
                runs[(r["size"], r["method"])] = r
    return {"users": {k: v for d in docs for k, v in d["users"].items()}, "factors": first["factors"],
            "runs": list(runs.values()), "summary": [d["summary"] for d in docs]}


def fractions(run: dict, peer: dict, users: dict, keys: list[str], field: str = "ppl") -> list[float]:
    out = []
    for k in keys:
        base = math.log(users[k]["base_ppl"])
        g_peer = base - math.log(peer["users"][k]["ppl"])
        out.append((base - math.log(run["users"][k][field])) / g_peer if g_peer > 0 else math.nan)
    return out


def val_fractions(run: dict, peer: dict, keys: list[str]) -> list[float]:
    """The same on the users' own validation splits (what tuning users may be judged on)."""
    out = []
    for k in keys:
        start = math.log(run["users"][k]["start_val_ppl"])
        g_peer = start - math.log(peer["users"][k]["val_ppl"])
        out.append((start - math.log(run["users"][k]["val_ppl"])) / g_peer if g_peer > 0 else math.nan)
    return out


def summarize(doc: dict) -> tuple[list[dict], list[str]]:
    users, lines = doc["users"], []
    runs = {(r["size"], r["method"]): r for r in doc["runs"] if r["status"] == "done"}
    entries = []
    for (size, method), run in sorted(runs.items()):
        peer = runs.get((size, PEER))
        if peer is None:
            continue
        for domain in ("sotu", "brown"):
            for group in ("eval", "tune"):
                keys = sorted(k for k in run["users"] if k.startswith(domain + ":") and users[k]["group"] == group)
                if not keys:
                    continue
                fr = [f for f in fractions(run, peer, users, keys) if math.isfinite(f)]
                glob = [f for f in fractions(run, peer, users, keys, "global_ppl") if math.isfinite(f)]
                changes = {k: run["users"][k]["ppl"] / users[k]["base_ppl"] - 1 for k in keys}
                worst = max(changes, key=changes.get)
                entries.append({
                    "method": method, "kind": run["kind"], "module_set": run["targets"], "rank": run["rank"],
                    "factor_kind": run.get("factors") or ("lora" if run["kind"] == "lora" else ""),
                    "domain": domain, "group": group, "size_tokens": size, "bytes_per_user": run["bytes_per_user"],
                    "users_eval" if group == "eval" else "users_tune": len(keys),
                    "fraction_of_lora_gain_mean": statistics.fmean(fr) if fr else None,
                    "fraction_of_lora_gain_median": statistics.median(fr) if fr else None,
                    "fraction_of_lora_gain_min": min(fr) if fr else None,
                    "fraction_global_rate_mean": statistics.fmean(glob) if glob else None,
                    "val_fraction_mean": statistics.fmean([f for f in val_fractions(run, peer, keys) if math.isfinite(f)] or [math.nan]),
                    "mean_change": math.exp(statistics.fmean(math.log(1 + c) for c in changes.values())) - 1,
                    "worst_user_change": changes[worst], "worst_user": worst,
                    "command": COMMAND.format(size=size),
                })
    return entries, lines


def pick_shipped(entries: list[dict]) -> str | None:
    """The LoRA-XS set ≤ 32 KB with the best mean validation fraction over tuning users (both domains, every
    size that has tuning users): one set ships for every user, so one choice over all of them."""
    cand: dict[str, list[float]] = {}
    for e in entries:
        if e["group"] == "tune" and e["kind"] == "xs" and e["bytes_per_user"] <= GOAL_BYTES and e["factor_kind"] != "pop-sotu-qv":
            cand.setdefault(e["method"], []).append(e["val_fraction_mean"])
    return max(cand, key=lambda m: statistics.fmean(cand[m])) if cand else None


def fmt(v, spec=".2f") -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def svg_plot(entries: list[dict], path: Path) -> None:
    """Bytes per user (log) vs mean fraction of LoRA q,v's gain, eval users of both domains, one mark per size."""
    pts = [e for e in entries if e["group"] == "eval" and e["fraction_of_lora_gain_mean"] is not None]
    W, H, L, B = 640, 400, 60, 50
    xs = [math.log10(e["bytes_per_user"]) for e in pts]
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
    y0, y1 = min(0.0, min(e["fraction_of_lora_gain_mean"] for e in pts)), max(1.4, max(e["fraction_of_lora_gain_mean"] for e in pts))
    X = lambda v: L + (W - L - 20) * (v - x0) / (x1 - x0)  # noqa: E731
    Y = lambda v: H - B - (H - B - 20) * (v - y0) / (y1 - y0)  # noqa: E731
    colors = {5000: "#1b9e77", 20000: "#d95f02", 65000: "#7570b3"}
    shapes = {"sotu": "circle", "brown": "rect"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - 20}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="20" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{X(math.log10(GOAL_BYTES))}" y1="20" x2="{X(math.log10(GOAL_BYTES))}" y2="{H - B}" stroke="#999" stroke-dasharray="4"/>',
           f'<line x1="{L}" y1="{Y(GOAL_FRACTION)}" x2="{W - 20}" y2="{Y(GOAL_FRACTION)}" stroke="#999" stroke-dasharray="4"/>',
           f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">bytes per user (log scale); dashed: 32 KB and 0.90</text>',
           f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">mean fraction of LoRA r=8 q,v gain (eval users)</text>']
    for d in range(x0, x1 + 1):
        out.append(f'<text x="{X(d)}" y="{H - B + 15}" text-anchor="middle">1e{d}</text>')
    for t in [y0 + i * (y1 - y0) / 5 for i in range(6)]:
        out.append(f'<text x="{L - 6}" y="{Y(t) + 4}" text-anchor="end">{t:.2f}</text>')
    for e in pts:
        x, y, c = X(math.log10(e["bytes_per_user"])), Y(e["fraction_of_lora_gain_mean"]), colors.get(e["size_tokens"], "black")
        if shapes[e["domain"]] == "circle":
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}"><title>{e["method"]} {e["domain"]} {e["size_tokens"]}</title></circle>')
        else:
            out.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{c}"><title>{e["method"]} {e["domain"]} {e["size_tokens"]}</title></rect>')
    for i, (s, c) in enumerate(colors.items()):
        out.append(f'<text x="{W - 150}" y="{34 + 14 * i}" fill="{c}">{s:,} tokens a user</text>')
    out.append(f'<text x="{W - 150}" y="{34 + 14 * 3}">circle SOTU, square Brown</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def report(docs: list[dict], results_file: Path, plot: Path) -> int:
    doc = merge(docs)
    entries, _ = summarize(doc)
    shipped = pick_shipped(entries)
    print("| size | domain | method | bytes / user | users | fraction mean | median | min | global-rate mean | mean change | worst user |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for e in entries:
        if e["group"] != "eval":
            continue
        print(f"| {e['size_tokens']:,} | {e['domain']} | {e['method']} | {e['bytes_per_user']:,} | {e['users_eval']} | "
              f"{fmt(e['fraction_of_lora_gain_mean'])} | {fmt(e['fraction_of_lora_gain_median'])} | {fmt(e['fraction_of_lora_gain_min'])} | "
              f"{fmt(e['fraction_global_rate_mean'])} | {100 * e['mean_change']:+.1f} % | {e['worst_user'].split(':')[1]} "
              f"{100 * e['worst_user_change']:+.1f} % |")
    print()
    print(f"Chosen on tuning users (mean validation fraction, both domains, all sizes, ≤ 32 KB): {shipped}")
    goal = []
    for e in entries:
        if e["group"] == "eval" and e["method"] == shipped:
            met = e["fraction_of_lora_gain_mean"] >= GOAL_FRACTION and e["worst_user_change"] <= 0 and e["bytes_per_user"] <= GOAL_BYTES
            goal.append({"size_tokens": e["size_tokens"], "domain": e["domain"], "method": e["method"],
                         "fraction_mean": e["fraction_of_lora_gain_mean"], "worst_user_change": e["worst_user_change"], "met": met})
            print(f"goal at {e['size_tokens']:,} tokens, {e['domain']}: {e['method']} closes {100 * e['fraction_of_lora_gain_mean']:.0f} % "
                  f"(worst user {100 * e['worst_user_change']:+.1f} %): {'met' if met else 'not met'}")
    print()
    print("Per-user held-out perplexity, eval users (base, then each method with its per-user rate):")
    methods = sorted({r["method"] for r in doc["runs"] if r["status"] == "done"})
    for size in sorted({r["size"] for r in doc["runs"]}):
        runs = {r["method"]: r for r in doc["runs"] if r["size"] == size and r["status"] == "done"}
        print(f"\n{size:,} tokens a user\n")
        print("| user | base | " + " | ".join(m for m in methods if m in runs) + " |")
        print("|---|---:|" + "---:|" * sum(m in runs for m in methods))
        keys = sorted({k for r in runs.values() for k in r["users"] if doc["users"][k]["group"] == "eval"})
        for k in keys:
            cells = [fmt(runs[m]["users"][k]["ppl"]) if k in runs[m]["users"] else "—" for m in methods if m in runs]
            print(f"| {k} | {doc['users'][k]['base_ppl']:.2f} | " + " | ".join(cells) + " |")
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps({"entries": entries, "chosen_by_tuning_users": shipped,
                                        "goal": goal, "factors": doc["factors"], "runs_summary": doc["summary"]}, indent=1) + "\n")
    svg_plot(entries, plot)
    print(f"\nwrote {results_file} and {plot}")
    return 0
