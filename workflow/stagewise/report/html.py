"""The self-contained report page: one function per section, assembled by `render`."""

from __future__ import annotations

import json
import math
from html import escape

import pandas as pd

from ..metric_names import higher_is_better
from .plots import data_uri
from .style import CSS

SECTIONS = [
    ("summary", "Summary"),
    ("metrics", "Test metrics"),
    ("curves", "Learning curves"),
    ("comparison", "Comparison"),
    ("best", "Best model per class"),
    ("compatibility", "Compatibility"),
    ("provenance", "Provenance"),
    ("resources", "Time and memory"),
]


def _num(value: float, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _figure(image: bytes, alt: str) -> str:
    return f'<figure><img alt="{escape(alt)}" src="{data_uri(image)}"></figure>'


def _label(model: dict) -> str:
    return escape(
        model["experiment"] if model["experiment"] == model["stage"] else f"{model['experiment']} / {model['stage']}"
    )


def summary(best: dict | None, primary: str, paired: dict, evaluation: dict) -> str:
    """One sentence: the best experiment, its score with CI, and its gain over scratch with CI."""
    if best is None:
        return "<p>No experiment was evaluated.</p>"
    result = best["result"]
    value, ci = result["metrics"][primary], result.get("ci", {}).get(primary)
    text = (
        f"Best experiment: <b>{escape(best['experiment'])}</b> (final stage {escape(best['stage'])}), "
        f"test {escape(primary)} <b>{_num(value, 3)}</b>"
    )
    if ci:
        text += f" (95 % CI {_num(ci[0], 3)}–{_num(ci[1], 3)})"
    gain = paired.get(f"{best['experiment']}/{best['stage']}", {}).get(primary)
    if gain:
        lo, hi = gain["ci"]
        better, worse = (lo > 0, hi < 0) if higher_is_better(primary) else (hi < 0, lo > 0)
        verdict = "transfer helped" if better else "transfer hurt" if worse else "no clear difference"
        text += (
            f", <b>{gain['gain']:+.3f}</b> over the scratch baseline (95 % CI {lo:+.3f} to {hi:+.3f}; paired "
            f"bootstrap, {evaluation['bootstrap']} resamples): {verdict}"
        )
    return f'<p class="lead">{text}.</p>'


def _ci(row: pd.Series, name: str) -> str:
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    return "" if low is None or pd.isna(low) else f'<span class="ci">{_num(low, 3)}–{_num(high, 3)}</span>'


def metrics_section(table: pd.DataFrame, primary: str) -> str:
    """Experiments × stages and baselines; each cell the value and its 95 % CI."""
    names = [
        c
        for c in table.columns
        if c not in ("experiment", "stage", "n_test") and not c.endswith(("_ci_low", "_ci_high", "_gain", "_p_no_gain"))
    ]
    head = "".join(f"<th{' class=primary' if n == primary else ''}>{escape(n.replace('_', ' '))}</th>" for n in names)
    rows = []
    for _, row in table.iterrows():
        cells = "".join(
            f'<td data-metric="{escape(n)}"><span class="v">{_num(row[n])}</span>{_ci(row, n)}</td>' for n in names
        )
        gain = row.get(f"{primary}_gain")
        gain_cell = (
            ""
            if gain is None or pd.isna(gain)
            else (
                f'{gain:+.3f}<span class="ci">{row[f"{primary}_gain_ci_low"]:+.3f} to '
                f"{row[f'{primary}_gain_ci_high']:+.3f}</span>"
            )
        )
        rows.append(
            f'<tr data-experiment="{escape(row.experiment)}" data-stage="{escape(row.stage)}">'
            f"<th>{escape(row.experiment)}</th><td>{escape(row.stage)}</td>{cells}<td>{gain_cell}</td></tr>"
        )
    return (
        f'<div class="scroll"><table id="metrics-table"><thead><tr><th>experiment</th><th>stage</th>{head}'
        f"<th>{escape(primary)} gain vs scratch</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="note">Small print under each value: 95 % bootstrap interval. n = {int(table.n_test.iloc[0])} '
        "test samples. The same numbers are in <code>metrics.tsv</code>.</p>"
    )


def best_model_section(best: dict | None, figures: dict) -> str:
    """Per-class metrics and the confusion matrix of the best experiment's final model."""
    if best is None or "per_class" not in best["result"]:
        return "<p>Per-class metrics apply to classification.</p>"
    per_class = best["result"]["per_class"]
    keys = ["precision", "recall", "f1", "auprc", "auroc", "support"]
    rows = "".join(
        f"<tr><th>{escape(name)}</th>"
        + "".join(f"<td>{v['support'] if k == 'support' else _num(v.get(k, float('nan')))}</td>" for k in keys)
        + "</tr>"
        for name, v in per_class.items()
    )
    head = "".join(f"<th>{k}</th>" for k in keys)
    table = f"<table><thead><tr><th>class</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return (
        f"<p>{_label(best)}</p><div "
        f"class='pair'>{table}{_figure(figures['confusion_matrix'], 'confusion matrix')}</div>"
    )


def _value(value) -> str:
    if isinstance(value, list):
        shown = ", ".join(escape(str(v)) for v in value[:40])
        return shown + (f" … ({len(value)} in all)" if len(value) > 40 else "")
    if isinstance(value, dict):
        items = "".join(f"<li><b>{escape(str(k))}</b>: {_value(v)}</li>" for k, v in value.items())
        return f"<ul>{items}</ul>" if items else "–"
    return escape(str(value))


def compatibility_checks(report: dict) -> str:
    """Status, then every check with its message and whatever details it carries."""
    rows = []
    for check in report.get("checks", []):
        extra = {k: v for k, v in check.items() if k not in ("check", "status", "message")}
        details = "".join(f"<div><b>{escape(k.replace('_', ' '))}:</b> {_value(v)}</div>" for k, v in extra.items())
        rows.append(
            f"<tr><th>{escape(str(check.get('check', '')))}</th><td class='{escape(str(check.get('status', '')))}'>"
            f"{escape(str(check.get('status', '')))}</td><td>{escape(str(check.get('message', '')))}"
            f"{f'<details><summary>details</summary>{details}</details>' if details else ''}</td></tr>"
        )
    other = {k: v for k, v in report.items() if k not in ("checks", "status", "checkpoint")}
    more = "".join(
        f"<details><summary>{escape(k.replace('_', ' '))}</summary>{_value(v)}</details>" for k, v in other.items()
    )
    return (
        f"<p>Checkpoint <code>{escape(str(report.get('checkpoint', '')))}</code>: "
        f"<span class='{escape(str(report.get('status', '')))}'>{escape(str(report.get('status', '')))}</span></p>"
        f"{more}"
        f"<table><thead><tr><th>check</th><th>status</th><th>what was found or done</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _short(digest: str | None) -> str:
    return f'<code title="{escape(digest)}">{escape(digest[:12])}</code>' if digest else "–"


def provenance(models: list[dict], version: str) -> str:
    """Per model: hashes, parent and versions; then each stage's effective config."""
    rows, configs, versions = [], [], set()
    for model in models:
        prov = model["result"].get("provenance", {})
        versions.add(
            " · ".join(
                f"{k.replace('_version', '')} {prov[k]}"
                for k in ("stagewise_version", "torch_version", "python_version")
                if k in prov
            )
        )
        rows.append(
            f"<tr><th>{_label(model)}</th><td>{_short(model['result'].get('model_sha256'))}</td>"
            f"<td>{_short(prov.get('config_sha256'))}</td><td>{_short(prov.get('data_sha256'))}</td>"
            f"<td>{_short(prov.get('parent_sha256'))}</td><td>{escape(str(prov.get('epoch', '–')))}</td></tr>"
        )
        if model["result"].get("effective_config"):
            text = json.dumps(model["result"]["effective_config"], indent=2, sort_keys=True)
            configs.append(f"<details><summary>{_label(model)}</summary><pre>{escape(text)}</pre></details>")
    return (
        f"<p>Report written by stagewise {escape(version)}; models trained with "
        f"{escape('; '.join(sorted(v for v in versions if v)) or 'unknown versions')}.</p>"
        "<table><thead><tr><th>model</th><th>checkpoint sha256</th><th>config sha256</th><th>data sha256</th>"
        f"<th>parent sha256</th><th>best epoch</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<h3>Effective configuration of each stage</h3>{''.join(configs)}"
    )


def resources(bench: pd.DataFrame) -> str:
    """Wall time and peak resident memory per rule (Snakemake's benchmark files), jobs in detail."""
    if bench.empty:
        return "<p>No benchmark files.</p>"
    per_rule = bench.groupby("rule", sort=False).agg(
        jobs=("job", "size"), seconds=("seconds", "sum"), longest=("seconds", "max"), peak=("max_rss_mb", "max")
    )
    rows = "".join(
        f"<tr><th>{escape(rule)}</th><td>{int(r.jobs)}</td><td>{r.seconds:.1f}</td><td>{r.longest:.1f}</td>"
        f"<td>{_num(r.peak, 0)}</td></tr>"
        for rule, r in per_rule.iterrows()
    )
    jobs = "".join(
        f"<tr><td>{escape(r.rule)}</td><td>{escape(r.job)}</td><td>{r.seconds:.2f}</td>"
        f"<td>{_num(r.max_rss_mb, 0)}</td></tr>"
        for r in bench.itertuples()
    )
    return (
        "<table><thead><tr><th>rule</th><th>jobs</th><th>total s</th><th>longest s</th><th>peak RSS MB</th></tr>"
        f"</thead><tbody>{rows}</tbody></table><details><summary>every job</summary><table><thead><tr><th>rule</th>"
        f"<th>job</th><th>s</th><th>peak RSS MB</th></tr></thead><tbody>{jobs}</tbody></table></details>"
    )


def render(
    *,
    title: str,
    task: str,
    primary: str,
    table: pd.DataFrame,
    models: list[dict],
    best: dict | None,
    paired: dict,
    figures: dict,
    evaluation: dict,
    compatibility: dict,
    benchmarks: pd.DataFrame,
    version: str,
) -> str:
    """The whole page: inline CSS and images only, no script, no external address."""
    body = {
        "summary": summary(best, primary, paired, evaluation),
        "metrics": metrics_section(table, primary),
        "curves": _figure(figures["learning_curves"], "learning curves")
        + (
            "<p class='note'>Dashed lines: stage boundaries. Each stage starts from the previous stage's best "
            "checkpoint.</p>"
        ),
        "comparison": _figure(figures["comparison"], f"{primary} of every model with 95 % CI"),
        "best": best_model_section(best, figures),
        "compatibility": compatibility_checks(compatibility),
        "provenance": provenance(models, version),
        "resources": resources(benchmarks),
    }
    nav = "".join(f'<a href="#{key}">{name}</a>' for key, name in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{name}</h2>{body[key]}</section>' for key, name in SECTIONS)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class='note'>task: {escape(task)} · primary metric: "
        f"{escape(primary)}</p><nav>{nav}</nav></header><main>{sections}</main></body></html>\n"
    )
