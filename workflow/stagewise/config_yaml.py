"""Reading a config file: YAML with a duplicate key refused, and the line of every key for error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import StagewiseError


class Lines:
    """The line of each key of a YAML document, by its path of keys and list indices."""

    def __init__(self, node: yaml.Node | None) -> None:
        self.node = node

    def line(self, path: list) -> int | None:
        """The 1-based line of the deepest key of `path` the document has (None: not in it)."""
        node, line = self.node, None
        for part in path:
            if isinstance(node, yaml.MappingNode):
                match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if match is None:
                    break
                line, node = match[0].start_mark.line + 1, match[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                continue  # unhashable: PyYAML's own error follows
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read(path: str | Path) -> tuple[Any, Lines]:
    """Parse a YAML config file: the data and its key lines; an error names the file and line.

    Refused: a missing or empty file, YAML syntax errors (a tab in the indentation included) and a
    key given twice in one mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise StagewiseError(f"{path}: config file not found" + ("" if path.is_absolute() else f" (in {Path.cwd()})"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StagewiseError(f"{path}: cannot read the config file ({error})") from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = error.problem or error.context or "syntax error"
        if error.context and error.problem and error.context_mark:
            problem += f" ({error.context}, from line {error.context_mark.line + 1})"
        if "'\\t'" in problem:
            problem += " (YAML indents with spaces, never tabs)"
        raise StagewiseError(f"{where}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise StagewiseError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        raise StagewiseError(f"{path}: the config file is empty (it needs the keys data, model, experiments, ...)")
    return data, Lines(node)
