"""report: every model's test metrics and history -> metrics.tsv and a self-contained report.html."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from ..files import write_text
from ..report import plots


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4f}", border=0, classes="metrics")


def run(inputs: dict, outputs: dict, params: dict) -> None:
    """Collect `params['models']` (label, experiment, stage, dir) into the metrics table and the page."""
    rows, curves = [], {}
    for model in params["models"]:
        folder = Path(model["dir"])
        scores = json.loads((folder / "test_metrics.json").read_text())["metrics"]
        rows.append({"experiment": model["experiment"], "stage": model["stage"], **scores})
        if (folder / "history.tsv").exists():
            curves.setdefault(model["experiment"], []).append((model["stage"], pd.read_csv(folder / "history.tsv", sep="\t")))
    frame = pd.DataFrame(rows)
    write_text(outputs["metrics"], frame.to_csv(sep="\t", index=False, float_format="%.6g"))
    compatibility = json.loads(Path(inputs["compatibility"]).read_text())
    final = frame.groupby("experiment", sort=False).tail(1)
    best = final[final.experiment != "scratch"].sort_values("accuracy", ascending=False).head(1)
    summary = ""
    if len(best):
        b = best.iloc[0]
        scratch = final[final.experiment == "scratch"]
        gain = f", {b.accuracy - scratch.iloc[0].accuracy:+.3f} over the scratch baseline ({scratch.iloc[0].accuracy:.3f})" if len(scratch) else ""
        summary = f"Best: <b>{html.escape(b.experiment)}</b> (stage {html.escape(b.stage)}), test accuracy {b.accuracy:.3f}{gain}."
    checks = "".join(f"<tr><td>{html.escape(c['check'])}</td><td class='{c['status']}'>{c['status']}</td><td>{html.escape(c['message'])}</td></tr>"
                     for c in compatibility["checks"])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(params['title'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ padding: 0.3em 0.7em; border-bottom: 1px solid #ddd; text-align: left; }}
.ok {{ color: #1a7f37; }} .warning {{ color: #9a6700; }} .error {{ color: #cf222e; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(params['title'])}</h1>
<section id="summary"><h2>Summary</h2><p>{summary}</p></section>
<section id="metrics"><h2>Test metrics</h2>{_table(frame)}</section>
<section id="curves"><h2>Learning curves</h2><img alt="learning curves" src="{plots.learning_curves(curves)}"></section>
<section id="compatibility"><h2>Compatibility</h2><p>Checkpoint: <code>{html.escape(compatibility['checkpoint'])}</code>, status <span class="{compatibility['status']}">{compatibility['status']}</span></p>
<table><tr><th>check</th><th>status</th><th>detail</th></tr>{checks}</table></section>
</body></html>
"""
    write_text(outputs["html"], page)
