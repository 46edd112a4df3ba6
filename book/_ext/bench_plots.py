"""Sphinx extension: the performance appendix, drawn from the benchmarks' results (book/bench/*.json).

Nothing on the page is typed in: figures (matplotlib, drawn when the book builds, offline), tables
and numbers in sentences all come from the results files that ``make bench`` writes.

    ```{bench-figure} spawn            a plot (names: FIGURES), embedded in the page as a PNG
    ```{bench-table} spawn             a table of p50 and p95 (names: TABLES)
    ```{bench-machine} spawn-docker    which machine measured a results file, and how busy it was
    {bench}`spawn-docker/floors/bare server/summary/p50`    one number from a results file
    {bench}`derived/users_per_gib`                           one number computed from them (DERIVED)
"""

from __future__ import annotations

import base64
import io
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxRole

RESULTS = Path(__file__).resolve().parents[1] / "bench"
BOOK = "the book's stage 05"
TRAEFIK_2S = "Traefik's default route delay (providersThrottleDuration 2 s)"
BEFORE = "the image before the change (rfc3987-syntax installed)"
PORT_WAIT = "a spawner that waits for the port (not in the book)"


def results(name: str) -> dict:
    """book/bench/NAME.json."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        raise LookupError(f"no results file {path.name} in book/bench/: run `make bench`")
    return json.loads(path.read_text())


def fmt(value: object) -> str:
    """A number as the page prints it: two decimals below 10, one up to 100, none above."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def lookup(path: str) -> object:
    """``FILE/key/key/...`` (list items by index) in a results file, or ``derived/NAME``."""
    first, *keys = path.split("/")
    if first == "derived":
        return DERIVED[keys[0]]()
    value: object = results(first)
    for key in keys:
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


# -- numbers computed from the results -------------------------------------------------


def _concurrency_first_level() -> dict:
    return results("concurrency")["levels"][0]


def _irreducible() -> float:
    parts = results("spawn-docker")["configurations"]["the book's stage 05"]["breakdown_p50"]
    return sum(v for k, v in parts.items() if not k.startswith(("hub polls", "proxy route")))


DERIVED: dict[str, Callable[[], object]] = {
    # One user's server in memory (MiB, p50 of the first level) -> servers per GiB of RAM.
    "users_per_gib": lambda: round(1024 / _concurrency_first_level()["server_memory_mib"]["summary"]["p50"], 1),
    # Bare server starts one core can do per minute (CPU seconds of one start).
    "starts_per_core_minute": lambda: round(60 / results("concurrency")["bare_server_cpu_seconds"]["summary"]["p50"]),
    # The first level where some user got no server (0: none failed).
    "first_failing_level": lambda: min((lv["users"] for lv in results("concurrency")["levels"] if lv["failed"]),
                                       default=0),
    # The largest level where every user got a server.
    "largest_all_ready": lambda: max((lv["users"] for lv in results("concurrency")["levels"]
                                      if lv["failed"] == 0), default=0),  # fmt: skip
    # The parts of a DockerSpawner start (book's stage 05, p50) that are neither the hub's polling nor the
    # proxy's route: what remains with both at zero, in seconds and as a ratio to the bare server.
    "spawn_irreducible_seconds": lambda: round(_irreducible(), 2),
    "spawn_irreducible_ratio": lambda: round(
        _irreducible() / results("spawn-docker")["floors"]["bare server"]["summary"]["p50"], 2),
    "restart_failed_total": lambda: sum(results("hub-restart")["requests_failed"]),
    "restart_sent_total": lambda: sum(results("hub-restart")["requests_sent"]),
}  # fmt: skip


# -- tables ------------------------------------------------------------------------------


NBSP = "\u00a0"  # between a number and its unit: a table cell never breaks there


def _row(label: str, s: dict, unit: str = "s") -> list[str]:
    return [label, *(f"{fmt(s[k])}{NBSP}{unit}" for k in ("p50", "p95", "max")), str(s["n"])]


HEAD = ["", "p50", "p95", "max", "samples"]


def spawn_rows() -> tuple[list[str], list[list[str]]]:
    docker, local = results("spawn-docker"), results("spawn-local")
    rows = [_row("local process (stage 02)", local["summary"])]
    for name, c in docker["configurations"].items():
        ratio = c["ratio_to_bare_server_p50"]
        rows.append(_row(f"DockerSpawner, {name} ({fmt(ratio)} x the bare server)", c["summary"]))
    for name, f in docker["floors"].items():
        rows.append(_row(f"floor: {name}", f["summary"]))
    return HEAD, rows


def percentile(values: list[float], q: float) -> float:
    """As scripts/bench/common.py: linear between the two nearest samples."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def breakdown_rows() -> tuple[list[str], list[list[str]]]:
    configs = results("spawn-docker")["configurations"]
    parts = list(next(iter(configs.values()))["breakdown_p50"])
    head = ["p50 / p95 of each part (s)", *parts]

    def cell(c: dict, part: str) -> str:
        values = [b[part] for b in c["breakdown_samples"] if part in b]
        return f"{fmt(percentile(values, 50))} / {fmt(percentile(values, 95))}" if values else ""

    return head, [[name, *(cell(c, p) for p in parts)] for name, c in configs.items()]


def concurrency_rows() -> tuple[list[str], list[list[str]]]:
    head = ["users at once", "ready", "p50", "p95", "last ready", "CPU limit", "last / limit",
            "hub CPU", "hub memory peak", "failures"]  # fmt: skip
    rows = []
    for lv in results("concurrency")["levels"]:
        s = lv["seconds_to_ready"]["summary"]
        errors = "; ".join(f"{n} x {msg}" for msg, n in lv["errors"].items()) or "none"
        cause = next((e for e in lv.get("hub_errors", []) if "giving up" in e or "failed" in e.lower()), "")
        errors += f" (the hub's log: {cause})" if cause and lv["errors"] else ""
        seconds = [f"{fmt(v)}{NBSP}s" for v in (s.get("p50", ""), s.get("p95", ""), s.get("max", ""),
                                                lv["cpu_limit_seconds"])]  # fmt: skip
        rows.append([str(lv["users"]), str(lv["ready"]), *seconds,
                     fmt(lv["last_ready_over_cpu_limit"]), f"{fmt(lv['hub_cpu_seconds'])}{NBSP}s",
                     f"{fmt(lv['hub_memory_peak_mib'])}{NBSP}MiB", errors])  # fmt: skip
    return head, rows


LABELS = {"http_c1_ms": "HTTP GET, 1 at a time", "http_c10_ms": "HTTP GET, 10 at a time",
          "http_c50_ms": "HTTP GET, 50 at a time", "websocket_ms": "kernel message over WebSocket",
          "new_route_ms": "a new route served"}  # fmt: skip


def proxies_rows() -> tuple[list[str], list[list[str]]]:
    r = results("proxies")
    head = ["", "Traefik p50", "Traefik p95", "CHP p50", "CHP p95", "CHP / Traefik p50 (min-max)", "difference?"]
    rows = []
    for key, ratio in sorted(r["chp_over_traefik"].items(), key=lambda kv: list(LABELS).index(kv[0])):
        t, c, q = r["proxies"]["traefik"][key]["summary"], r["proxies"]["chp"][key]["summary"], ratio["summary"]
        verdict = ("CHP slower" if q["min"] > 1 else "CHP faster") if ratio["differs"] else "none measured"
        ms = [f"{fmt(v)}{NBSP}ms" for v in (t["p50"], t["p95"], c["p50"], c["p95"])]
        rows.append([LABELS.get(key, key), *ms, f"{fmt(q['p50'])} ({fmt(q['min'])}-{fmt(q['max'])})", verdict])
    return head, rows


def restart_rows() -> tuple[list[str], list[list[str]]]:
    r = results("hub-restart")
    s = r["hub_back_seconds"]["summary"]
    sent, failed = sum(r["requests_sent"]), sum(r["requests_failed"])
    return (["", "p50", "p95", "max", "rounds"],
            [_row("hub back after systemctl restart jupyterhub", s),
             ["requests to alice's server during the restarts: sent / failed", f"{sent} / {failed}", "", "",
              str(len(r["requests_sent"]))]])  # fmt: skip


def book_rows() -> tuple[list[str], list[list[str]]]:
    r = results("book-build")
    return HEAD, [_row(r["command"], r["seconds"]["summary"])]


def test_times_rows(name: str = "test-times") -> tuple[list[str], list[list[str]]]:
    """Each test module of one `make test` run (Debian 13 part): its tests and its seconds."""
    r = results(name)
    rows = []
    for name, m in r["modules"].items():
        label = name.replace("steps.", "steps/").split(".test_")[0] if name.startswith("steps.") else name
        rows.append([label, str(m["tests"]), f"{fmt(m['seconds'])}{NBSP}s"])
    rows.append(["the whole run (wall clock)", str(sum(m["tests"] for m in r["modules"].values())),
                 f"{fmt(r['seconds_taken'])}{NBSP}s"])  # fmt: skip
    return ["test module", "tests", "seconds"], rows


TABLES: dict[str, Callable[[], tuple[list[str], list[list[str]]]]] = {
    "spawn": spawn_rows, "spawn-breakdown": breakdown_rows, "concurrency": concurrency_rows,
    "proxies": proxies_rows, "hub-restart": restart_rows, "book-build": book_rows,
    "test-times": test_times_rows, "test-times-cold": lambda: test_times_rows("test-times-cold"),
}  # fmt: skip


def table_node(head: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["bench-table"])
    group = nodes.tgroup(cols=len(head))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in head]

    def row(cells: list[str]) -> nodes.row:
        r = nodes.row()
        for cell in cells:
            r += nodes.entry("", nodes.paragraph(text=cell))
        return r

    group += nodes.thead("", row(head))
    group += nodes.tbody("", *(row(r) for r in rows))
    return table


# -- figures ---------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.hashsalt": "hhw", "figure.dpi": 110})
    return plt


def _bars(ax, labels: list[str], stats: list[dict], samples: list[list[float]], unit: str) -> None:
    """Horizontal bars at p50, a tick at p95, every sample as a dot."""
    y = list(range(len(labels)))[::-1]
    ax.barh(y, [s["p50"] for s in stats], color="#7aa6d6", label="p50")
    ax.scatter([s["p95"] for s in stats], y, marker="|", s=300, color="#c0392b", label="p95", zorder=3)
    for yi, values in zip(y, samples, strict=True):
        ax.scatter(values, [yi] * len(values), s=8, color="#333333", alpha=0.6, zorder=4)
    ax.set_yticks(y, labels)
    ax.set_xlabel(unit)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def spawn_figure(plt) -> object:
    docker, local = results("spawn-docker"), results("spawn-local")
    labels, stats, samples = ["local process (stage 02)"], [local["summary"]], [local["samples"]]
    for name, c in docker["configurations"].items():
        labels.append("DockerSpawner: " + name)
        stats.append(c["summary"])
        samples.append(c["samples"])
    for name, f in docker["floors"].items():
        labels.append("floor: " + name)
        stats.append(f["summary"])
        samples.append(f["samples"])
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(labels) + 1))
    _bars(ax, [textwrap.fill(lb, 45) for lb in labels], stats, samples, "seconds from asking to a served /lab")
    ax.set_title("Spawn to ready, and its floors (same VM, same run)")
    return fig


def breakdown_figure(plt) -> object:
    configs = results("spawn-docker")["configurations"]
    parts = list(next(iter(configs.values()))["breakdown_p50"])
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(configs) + 1.6))
    names = list(configs)[::-1]
    left = [0.0] * len(names)
    colors = ["#95a5a6", "#bdc3c7", "#7aa6d6", "#e67e22", "#27ae60"]
    for part, color in zip(parts, colors, strict=False):
        widths = [configs[n]["breakdown_p50"].get(part, 0) for n in names]
        ax.barh(range(len(names)), widths, left=left, label=part, color=color)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(names)), [textwrap.fill(n, 40) for n in names])
    ax.set_xlabel("seconds (p50 of each part)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8)
    ax.set_title("Where a DockerSpawner start goes")
    fig.tight_layout()
    return fig


def concurrency_figure(plt) -> object:
    levels = results("concurrency")["levels"]
    n = [lv["users"] for lv in levels]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for key, label, style in (("p50", "p50", "o-"), ("p95", "p95", "s--"), ("max", "last ready", "^:")):
        ax.plot(n, [lv["seconds_to_ready"]["summary"].get(key) for lv in levels], style, label=label)
    ax.plot(n, [lv["cpu_limit_seconds"] for lv in levels], "k-", alpha=0.5, label="CPU limit (N x one start / cores)")
    for lv in levels:
        if lv["failed"]:
            ax.annotate(f"{lv['failed']} failed", (lv["users"], lv["seconds_to_ready"]["summary"].get("max", 0)))
    ax.set_xlabel("users logging in and starting at once")
    ax.set_ylabel("seconds to a served /lab")
    ax.set_xticks(n)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Many users at once on one VM (stage 05)")
    return fig


def proxies_figure(plt) -> object:
    r = results("proxies")
    keys = sorted(r["chp_over_traefik"], key=list(LABELS).index)
    fig, axes = plt.subplots(1, len(keys), figsize=(2.0 * len(keys) + 1, 3.2))
    for ax, key in zip(axes, keys, strict=True):
        stats = [r["proxies"][p][key]["summary"] for p in ("traefik", "chp")]
        ax.bar([0, 1], [s["p50"] for s in stats], color=["#7aa6d6", "#e67e22"], label="p50")
        ax.scatter([0, 1], [s["p95"] for s in stats], marker="_", s=400, color="#c0392b", label="p95", zorder=3)
        ax.set_xticks([0, 1], ["Traefik", "CHP"])
        ax.set_title(LABELS.get(key, key), fontsize=8)
        ax.set_ylabel("ms")
    axes[0].legend(fontsize=7)
    fig.suptitle("CHP and Traefik, paired on one VM and one user server")
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable] = {"spawn": spawn_figure, "spawn-breakdown": breakdown_figure,
                                "concurrency": concurrency_figure, "proxies": proxies_figure}  # fmt: skip


def png(name: str) -> bytes:
    """The figure NAME as PNG bytes (no date or software version in it: builds are reproducible)."""
    plt = _pyplot()
    fig = FIGURES[name](plt)
    out = io.BytesIO()
    fig.savefig(out, format="png", bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return out.getvalue()


def machine_text(name: str) -> str:
    r = results(name)
    h, v = r["host"], r.get("versions", {})
    parts = ", ".join(f"{k} {val}" for k, val in v.items())
    vm = f" In the test VM: {parts}." if v else ""
    busy = max(h["load_average_1min_at_start"], h["load_average_1min"])
    shared = (f" The machine was busy around this run (a load average of 2.5 or more on {h['cores']} cores, from"
              " other work or from what ran just before it): treat these numbers as rough."
              if busy >= 2.5 else "")  # fmt: skip
    return (f"Measured {r['when']} ({r['seconds_taken']} s) on {h['cores']} cores ({h['cpu']}), "
            f"{h['memory_gib']} GiB, Linux {h['kernel']}, a Debian {h['host_debian']} host; 1-minute load "
            f"average {h['load_average_1min_at_start']} when the run started and {h['load_average_1min']} "
            f"when this benchmark ended.{shared}{vm}")  # fmt: skip


# -- directives and role -----------------------------------------------------------------


class BenchFigure(Directive):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        try:
            data = base64.b64encode(png(name)).decode()
        except (LookupError, KeyError) as exc:
            raise self.error(f"bench-figure {name}: {exc}") from exc
        alt = f"{name} plot drawn from book/bench/*.json"
        img = f'<img class="bench-figure" style="max-width:100%" alt="{alt}" src="data:image/png;base64,{data}"/>'
        return [nodes.raw("", img, format="html")]


class BenchTable(Directive):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        try:
            head, rows = TABLES[self.arguments[0]]()
        except (LookupError, KeyError) as exc:
            raise self.error(f"bench-table {self.arguments[0]}: {exc}") from exc
        return [table_node(head, rows)]


class BenchMachine(Directive):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        try:
            text = machine_text(self.arguments[0])
        except (LookupError, KeyError) as exc:
            raise self.error(f"bench-machine {self.arguments[0]}: {exc}") from exc
        return [nodes.paragraph(text=text, classes=["bench-machine"])]


class BenchNumber(SphinxRole):
    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        try:
            return [nodes.Text(fmt(lookup(self.text)))], []
        except (LookupError, KeyError, IndexError, ValueError) as exc:
            msg = self.inliner.reporter.error(f"bench: {self.text}: {exc}", line=self.lineno)
            return [], [msg]


def setup(app: Sphinx) -> dict[str, object]:
    app.add_directive("bench-figure", BenchFigure)
    app.add_directive("bench-table", BenchTable)
    app.add_directive("bench-machine", BenchMachine)
    app.add_role("bench", BenchNumber())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
