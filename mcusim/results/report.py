"""`mcusim report`: one self-contained HTML page of a result set.

The page needs no network: inline CSS, inline JS, the Pareto figures as inline SVG text.  It
shows a header (store, points by status, provenance), the sweep's table (sortable by a click
on a column header, filterable), the Pareto front of each MCU and, per point, a collapsible
layer x phase breakdown and memory table.  Every text from the results (model names come
from user files) is HTML-escaped.  The page's first script records JS errors into
#js-errors; the last sets <body data-ready="1"> once it ran (the tests load it in a headless
browser and check both).  Nothing here prints.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from mcusim.results.pareto import mcu_fronts, pareto_svg

# (header, row -> value, kind): the sweep table; kind "num" sorts numerically
_KB = 1024.0


def _get(col: str, div: float = 1.0):
    def f(r: dict[str, Any]) -> Any:
        v = r.get(col)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return v
        return v / div
    return f


TABLE_COLUMNS: tuple[tuple[str, Any, str, str], ...] = (
    # header, getter, "num" | "text", format
    ("#", lambda r: r["_n"], "num", "{:d}"),
    ("kind", _get("kind"), "text", ""),
    ("model", _get("model"), "text", ""),
    ("MCU", _get("mcu"), "text", ""),
    ("clock MHz", _get("clock_hz", 1e6), "num", "{:g}"),
    ("λ_min", _get("lambda_min"), "num", "{:g}"),
    ("rounding", _get("rounding"), "text", ""),
    ("batch", _get("batch_size"), "num", "{:d}"),
    ("status", _get("status"), "text", ""),
    ("latency ms", _get("latency_ms"), "num", "{:.3f}"),
    ("energy mJ", _get("energy_mj"), "num", "{:.4f}"),
    ("peak RAM KB", _get("peak_ram_bytes", _KB), "num", "{:.1f}"),
    ("flash KB", _get("flash_bytes", _KB), "num", "{:.1f}"),
    ("fits", _get("fits"), "text", ""),
    ("test acc", _get("test_acc"), "num", "{:.3f}"),
)

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:1.2em 2em;color:#1d1d1f;background:#fff}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.2em;margin:1.4em 0 .4em;border-bottom:1px solid
#ddd}
.meta{color:#444}.meta td{padding:0 1em 0 0;vertical-align:top}
table.pts{border-collapse:collapse;font-size:13px}
table.pts th,table.pts td{border:1px solid #d0d0d0;padding:2px 6px;text-align:right;
white-space:nowrap}
table.pts td.t,table.pts th.t{text-align:left}
table.pts th{background:#eef2f7;cursor:pointer;user-select:none;position:sticky;top:0}
table.pts th[aria-sort=ascending]::after{content:" ▲"}
table.pts th[aria-sort=descending]::after{content:" ▼"}
table.pts tbody tr:nth-child(even){background:#f8f9fb}
tr.s-failed td{color:#a00}tr.s-does-not-fit td{color:#b35900}
.plots{display:flex;flex-wrap:wrap;gap:12px}
.plots figure{margin:0;border:1px solid #e3e3e3;flex:1 1 520px;max-width:760px}
.plots svg{width:100%;height:auto;display:block}
details{margin:.2em 0;border:1px solid #e3e3e3;padding:2px 8px}
details>summary{cursor:pointer}
details table{border-collapse:collapse;font-size:12px;margin:4px 12px 6px 0;display:inline-table;
vertical-align:top}
details td,details th{border:1px solid #e0e0e0;padding:1px 5px;text-align:right}
details td.t,details th.t{text-align:left}
.err{color:#a00;white-space:pre-wrap}.note{color:#555;font-size:12px}
#js-errors{color:#fff;background:#a00;padding:4px}
#filter{font-size:14px;padding:2px 6px;width:22em}
"""

# Installed first: every JS error or unhandled rejection is recorded in #js-errors.
ERROR_JS = """
(function(){window.__errors=[];function rec(m){window.__errors.push(m);
var el=document.getElementById('js-errors');if(!el){el=document.createElement('pre');
el.id='js-errors';(document.body||document.documentElement).appendChild(el);}
el.hidden=false;el.textContent+=m+'\\n';}
window.__recordError=rec;
window.onerror=function(msg,src,line,col){rec('error: '+msg+' (line '+line+':'+col+')');};
window.addEventListener('unhandledrejection',function(e){rec('unhandled rejection: '+
(e.reason&&e.reason.message||e.reason));});})();
"""

# Sorting (click a header; numbers sort as numbers, empty cells last), filtering, opening a
# point's details from its row; then a sort by the table's data-initial-sort column, done
# through a click event, checked, and <body data-ready="1">.
MAIN_JS = """
(function(){
var table=document.getElementById('points');var tbody=table.tBodies[0];
var heads=table.tHead.rows[0].cells;
function key(td,num){var v=td.getAttribute('data-v');if(v===null||v===''){return null;}
return num?parseFloat(v):v.toLowerCase();}
function sortBy(i){var th=heads[i];var num=th.getAttribute('data-type')==='num';
var dir=th.getAttribute('aria-sort')==='ascending'?-1:1;
for(var k=0;k<heads.length;k++){heads[k].removeAttribute('aria-sort');}
th.setAttribute('aria-sort',dir===1?'ascending':'descending');
var rows=Array.prototype.slice.call(tbody.rows);
rows.sort(function(a,b){var x=key(a.cells[i],num),y=key(b.cells[i],num);
if(x===null&&y===null){return 0;}if(x===null){return 1;}if(y===null){return -1;}
return x<y?-dir:(x>y?dir:0);});
rows.forEach(function(r){tbody.appendChild(r);});}
Array.prototype.forEach.call(heads,function(th,i){th.addEventListener('click',
function(){sortBy(i);});});
var box=document.getElementById('filter');var shown=document.getElementById('shown');
function filter(){var q=box.value.toLowerCase();var n=0;
Array.prototype.forEach.call(tbody.rows,function(r){
var ok=!q||r.textContent.toLowerCase().indexOf(q)>=0;r.hidden=!ok;if(ok){n++;}});
shown.textContent=n+' of '+tbody.rows.length+' shown';}
box.addEventListener('input',filter);filter();
document.addEventListener('click',function(e){var a=e.target.closest&&
e.target.closest('a.pt');if(!a){return;}var d=document.getElementById(
a.getAttribute('href').slice(1));if(d){d.open=true;}});
var init=table.getAttribute('data-initial-sort');var col=-1;
for(var k=0;k<heads.length;k++){if(heads[k].textContent===init){col=k;}}
if(col>=0){heads[col].dispatchEvent(new MouseEvent('click',{bubbles:true}));
var num=heads[col].getAttribute('data-type')==='num';var prev=null;
Array.prototype.forEach.call(tbody.rows,function(r){var v=key(r.cells[col],num);
if(v===null){return;}if(prev!==null&&v<prev){window.__recordError(
'sort check failed on '+init);}prev=v;});}
document.body.setAttribute('data-ready','1');
})();
"""

INITIAL_SORT = "latency ms"


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _fmt(v: Any, fmt: str) -> str:
    if v is None:
        return ""
    if fmt and isinstance(v, (int, float)) and not isinstance(v, bool):
        if fmt == "{:d}":
            return f"{int(v):d}"
        return fmt.format(v)
    return str(v)


def _anchor(row: dict[str, Any]) -> str:
    return "p-" + "".join(c for c in str(row.get("key") or row["_n"]) if c.isalnum())[:16] + \
        f"-{row['_n']}"


def _header(rows: Sequence[dict[str, Any]], title: str, store: str) -> str:
    from mcusim import __version__

    by_status = Counter(str(r.get("status")) for r in rows)
    status = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    versions = sorted({str(r.get("mcusim_version")) for r in rows if r.get("mcusim_version")})
    commits = sorted({str(r.get("git_commit")) for r in rows if r.get("git_commit")})
    tcs = sorted({f"{r.get('toolchain')} {r.get('toolchain_version') or ''}".strip()
                  for r in rows if r.get("toolchain")})
    sweeps = sorted({str(r.get("sweep")) for r in rows if r.get("sweep")})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    items = [("store", store), ("points", f"{len(rows)} ({status})"),
             ("sweeps", ", ".join(sweeps) or "-"),
             ("mcusim versions", ", ".join(versions) or "-"),
             ("git commits", ", ".join(commits) or "-"),
             ("toolchains", ", ".join(tcs) or "-"),
             ("generated", f"{now} by mcusim {__version__}")]
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in items)
    return f"<h1>{_e(title)}</h1><table class=meta>{body}</table>"


def _table(rows: Sequence[dict[str, Any]]) -> str:
    any_acc = any(r.get("test_acc") is not None for r in rows)
    cols = [c for c in TABLE_COLUMNS if c[0] != "test acc" or any_acc]
    head = "".join(
        f"<th data-type={kind}{'' if kind == 'num' else ' class=t'}>{_e(name)}</th>"
        for name, _, kind, _ in cols)
    out = []
    for r in rows:
        cells = []
        for name, get, kind, fmt in cols:
            v = get(r)
            text = _e(_fmt(v, fmt))
            dv = "" if v is None else (repr(float(v)) if kind == "num" else str(v))
            if name == "model":
                text = f"<a class=pt href=\"#{_anchor(r)}\">{text}</a>"
            cls = "" if kind == "num" else " class=t"
            cells.append(f"<td{cls} data-v=\"{_e(dv)}\">{text}</td>")
        status = "".join(c for c in str(r.get("status")) if c.isalnum() or c == "-")
        out.append(f"<tr class=s-{status}>{''.join(cells)}</tr>")
    return (f"<p><input id=filter type=search placeholder=\"filter rows (any text)\" "
            f"aria-label=\"filter rows\"> <span id=shown class=note></span> "
            f"<span class=note>· click a column header to sort</span></p>"
            f"<table id=points class=pts data-initial-sort=\"{_e(INITIAL_SORT)}\">"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(out)}</tbody></table>")


def _plots(rows: Sequence[dict[str, Any]]) -> str:
    fronts = mcu_fronts(rows)
    figs = [f"<figure>{pareto_svg(f)}</figure>" for f in fronts if f.points]
    notes = "".join(f"<li>{_e(f.mcu)}: {_e(n)}</li>" for f in fronts for n in f.notes)
    notes = f"<ul class=note>{notes}</ul>" if notes else ""
    if not figs:
        return f"<p class=note>no point with latency and peak RAM to draw</p>{notes}"
    return ("<p class=note>Per MCU: latency per sample and peak RAM minimized (and test "
            "accuracy maximized when every point that fits has it). Grey: points; red x: "
            "does not fit (never on the front); blue: the Pareto front.</p>"
            f"<div class=plots>{''.join(figs)}</div>{notes}")


def _step_report(row: dict[str, Any]) -> dict[str, Any]:
    d = row.get("detail") or {}
    if not isinstance(d, dict):
        return {}
    if row.get("kind") == "train" and isinstance(d.get("step"), dict):
        return d["step"]
    return d


def _breakdown(d: dict[str, Any]) -> str:
    rows = [r for r in d.get("rows") or [] if isinstance(r, dict)]
    if not rows:
        return ""
    total = sum(float(r.get("cycles") or 0) for r in rows)
    body = []
    for r in rows:
        cyc = r.get("cycles")
        share = f"{100 * float(cyc) / total:.1f}" if cyc is not None and total else ""
        lat = r.get("latency_ms")
        body.append(f"<tr><td class=t>{_e(r.get('layer'))}</td><td class=t>"
                    f"{_e(r.get('phase'))}</td><td>{_fmt(cyc, '{:,.0f}')}</td>"
                    f"<td>{_fmt(lat, '{:.4f}')}</td><td>{share}</td></tr>")
    return ("<table><thead><tr><th class=t>layer</th><th class=t>phase</th><th>cycles</th>"
            "<th>latency ms</th><th>share %</th></tr></thead><tbody>"
            f"{''.join(body)}</tbody></table>")


def _memory(d: dict[str, Any], row: dict[str, Any]) -> str:
    parts = []
    for what, key, budget in (("RAM", "ram", row.get("ram_budget_bytes")),
                              ("flash", "flash", row.get("flash_budget_bytes"))):
        items = d.get(key)
        if not isinstance(items, dict) or not items:
            continue
        total = sum(int(v) for v in items.values() if isinstance(v, (int, float)))
        body = "".join(f"<tr><td class=t>{_e(k)}</td><td>{_fmt(v, '{:,}')}</td></tr>"
                       for k, v in items.items())
        body += f"<tr><th class=t>total</th><th>{total:,}</th></tr>"
        if isinstance(budget, (int, float)):
            body += f"<tr><td class=t>budget</td><td>{int(budget):,}</td></tr>"
        parts.append(f"<table><thead><tr><th class=t>{what}</th><th>bytes</th></tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    return "".join(parts)


def _details(rows: Sequence[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        d = _step_report(r)
        lam = r.get("lambda_min")
        summary = " · ".join(_e(x) for x in (
            f"#{r['_n']}", r.get("kind"), r.get("model"), r.get("mcu"),
            None if lam is None else f"λ={float(lam):g}", r.get("rounding"), r.get("status"))
            if x)
        err = f"<p class=err>{_e(r.get('error'))}</p>" if r.get("error") else ""
        inner = err + _breakdown(d) + _memory(d, r)
        if not inner:
            inner = "<p class=note>no breakdown stored</p>"
        out.append(f"<details id={_anchor(r)}><summary>{summary}</summary>{inner}</details>")
    return "".join(out)


def render_report(rows: Sequence[dict[str, Any]], *, title: str, store: str) -> str:
    """The whole page for these rows (Store.query dicts)."""
    rows = [{**r, "_n": i + 1} for i, r in enumerate(rows)]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><script>{ERROR_JS}</script><style>{CSS}</style></head>"
        "<body><pre id=js-errors hidden></pre>"
        f"{_header(rows, title, store)}"
        f"<h2>Points</h2>{_table(rows)}"
        f"<h2>Pareto fronts</h2>{_plots(rows)}"
        "<h2>Per point: layer × phase and memory</h2>"
        "<p class=note>Cycles and latency per layer and phase of one sample; memory parts "
        f"in bytes with the MCU's budgets.</p>{_details(rows)}"
        f"<script>{MAIN_JS}</script></body></html>\n")
