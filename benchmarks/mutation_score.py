"""The mutation score of a `benchmarks/mutation.sh` run: per module, with the mutants triaged as equivalent left out.

    python benchmarks/mutation_score.py FOLDER/repo [--equivalent benchmarks/mutation_equivalent.txt]

Reads mutmut's own records of the run (`mutants/src/stagewise/**/*.py.meta`: each mutant's exit code; `.spans`:
where each mutant's function lies in the mutated file). A mutant is identified by its function and the one line it
changes (before and after, stripped): the key of `mutation_equivalent.txt`, so the list survives mutmut renumbering
the mutants of a function when other code of it changes. Score = killed / (mutants - equivalent); timeouts (shown
apart) and crashes count as killed (the tests failed), "no tests" and "suspicious" as not killed.

Writes FOLDER/repo/../survivors.tsv: every mutant not killed and not listed as equivalent, in the list's format
(function, before, after, then mutmut's name instead of a reason), to triage.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {
    1: "killed",
    3: "killed",
    36: "killed",
    -24: "killed",
    24: "killed",
    152: "killed",
    255: "killed",
    -11: "killed",
}
KILLED |= {-9: "killed", 37: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", None: "not checked"}


def status(exit_code: int | None) -> str:
    return KILLED.get(exit_code, "suspicious")


def function_name(key: str) -> str:
    """`stagewise.config.x_deep_merge__mutmut_3` -> `stagewise.config.deep_merge`; methods as `Class.method`."""
    module, _, name = key.rpartition(".")
    name = re.sub(r"__mutmut_(\d+|orig)$", "", name)
    name = name[2:].replace("ǁ", ".") if name.startswith("xǁ") else name[2:]
    return f"{module}.{name}"


def changed_lines(original: list[str], mutant: list[str]) -> tuple[str, str]:
    """The lines a mutant changes, before and after (stripped; several joined by ' ⏎ '). A line that occurs more than
    once in its function is told apart by ' #k', its k-th occurrence."""
    before, after, first = [], [], None
    position = 0
    for line in difflib.ndiff(original, mutant):
        if line.startswith("- "):
            first = position if first is None else first
            before.append(line[2:].strip())
        elif line.startswith("+ "):
            after.append(line[2:].strip())
        if line.startswith(("- ", "  ")):
            position += 1
    if first is not None:
        stripped = [line.strip() for line in original]
        if stripped.count(stripped[first]) > 1:
            before[0] += f" #{stripped[: first + 1].count(stripped[first])}"
    return " ⏎ ".join(before), " ⏎ ".join(after)


def _text(lines: list[str], spans: dict, name: str) -> list[str]:
    """The non-blank lines of function `name` of the mutated file, its name replaced by FUNCTION."""
    start, stop = spans[name]
    body = [line.replace(name, "FUNCTION") for line in lines[start:stop]]
    return [line for line in body if line.strip()]


def mutants(repo: Path):
    """(module, mutmut name, function, before, after, status) of every mutant of the run."""
    root = repo / "mutants" / "src"
    for meta_path in sorted(root.rglob("*.py.meta")):
        source = meta_path.with_suffix("")
        lines = source.read_text().splitlines()
        spans = json.loads(meta_path.with_suffix(".spans").read_text())["spans"]
        module = ".".join(source.relative_to(root).with_suffix("").parts)
        for key, exit_code in json.loads(meta_path.read_text())["exit_code_by_key"].items():
            local = key.rpartition(".")[2]
            orig = re.sub(r"__mutmut_\d+$", "__mutmut_orig", local)

            before, after = changed_lines(_text(lines, spans, orig), _text(lines, spans, local))
            yield module, key, function_name(key), before, after, status(exit_code)


def read_equivalent(path: Path) -> dict[tuple[str, str, str], str]:
    """`function TAB before TAB after TAB reason` lines (# comments and blank lines skipped)."""
    listed = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 4:
            sys.exit(f"{path}:{number}: expected function, before, after and reason separated by tabs")
        listed[tuple(parts[:3])] = parts[3]
    return listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", type=Path, help="the run's copy of the repository (FOLDER/repo)")
    parser.add_argument("--equivalent", type=Path, default=Path(__file__).with_name("mutation_equivalent.txt"))
    args = parser.parse_args()
    listed = read_equivalent(args.equivalent) if args.equivalent.is_file() else {}
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors, used = [], set()
    for module, key, function, before, after, state in mutants(args.repo):
        short = module.removeprefix("stagewise.")
        counts[short]["mutants"] += 1
        if state in ("killed", "timeout"):
            counts[short]["killed"] += 1
            counts[short]["timeout"] += state == "timeout"
            continue
        if (function, before, after) in listed:
            used.add((function, before, after))
            counts[short]["equivalent"] += 1
            continue
        counts[short][state] += 1
        survivors.append("\t".join([function, before, after, f"{state}: {key}"]))
    total = sum(counts.values(), Counter())
    print("| module | mutants | killed (timeouts) | survived | no tests | equivalent | other | score |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in [*sorted(counts.items()), ("**all**", total)]:
        other = row["mutants"] - sum(row[k] for k in ("killed", "survived", "no tests", "equivalent"))
        score = 100 * row["killed"] / max(1, row["mutants"] - row["equivalent"])
        cells = [
            row["mutants"],
            f"{row['killed']} ({row['timeout']})",
            row["survived"],
            row["no tests"],
            row["equivalent"],
        ]
        print(f"| {name} | {' | '.join(map(str, cells))} | {other} | {score:.1f} % |")
    out = args.repo.parent / "survivors.tsv"
    out.write_text("".join(line + "\n" for line in survivors))
    print(f"\n{len(survivors)} mutants neither killed nor listed as equivalent: {out}")
    stale = [key for key in listed if key not in used]
    if stale and counts:
        print(
            f"{len(stale)} entries of {args.equivalent.name} match no surviving mutant of this run (killed now, "
            f"or their code changed; modules not run are listed too)"
        )


if __name__ == "__main__":
    main()
