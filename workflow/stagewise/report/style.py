"""The report's stylesheet: inline, system fonts only, readable on a laptop, printable."""

CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); max-width: 1180px; margin: 0 auto; padding: 1.2em 1.5em 3em; }
header { border-bottom: 2px solid var(--line); margin-bottom: 1em; }
h1 { font-size: 1.6em; margin: 0.2em 0; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; }
nav { display: flex; flex-wrap: wrap; gap: 0.3em 1.1em; padding: 0.5em 0; font-size: 0.92em; }
nav a { color: var(--accent); text-decoration: none; }
.lead { font-size: 1.1em; background: var(--soft); border-left: 4px solid var(--accent); padding: 0.7em 1em; }
.note { color: var(--muted); font-size: 0.88em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3em 0.65em; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; }
th.primary { color: var(--accent); }
.ci { display: block; color: var(--muted); font-size: 0.78em; white-space: nowrap; }
figure { margin: 0.6em 0; } img { max-width: 100%; height: auto; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.pair figure img { max-width: 420px; }
.ok { color: #1a7f37; } .warning { color: #9a6700; } .error { color: #cf222e; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em; }
pre { background: var(--soft); padding: 0.7em; overflow-x: auto; }
details { margin: 0.3em 0; } summary { cursor: pointer; color: var(--accent); }
@media print {
  body { max-width: none; padding: 0; font-size: 11px; }
  nav { display: none; }
  section { break-inside: avoid-page; }
  h2 { break-after: avoid; }
  .scroll { overflow: visible; }
  summary { color: var(--ink); }
  a { color: inherit; }
}
"""
