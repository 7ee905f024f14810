"""The structure of a README (headings, fenced code blocks, tables, the config table), for the tests that keep
README.md, its translation README.zh-CN.md and Pulumi.yaml in agreement. Fenced code blocks are skipped when
headings and tables are collected: a `# comment` line in a ```sh block is not a heading."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^ *(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
TABLE_LINE = re.compile(r"^ {0,3}\|.*\|[ \t]*$")
TABLE_DELIMITER = re.compile(r"^ {0,3}\|(?:[ \t]*:?-+:?[ \t]*\|)+[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", flags=re.S)
CONFIG_SECTION = "Configuration"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str

    @property
    def code_spans(self) -> list[str]:
        return code_spans(self.text)


@dataclass(frozen=True)
class Table:
    section: int  # index into Readme.headings of the heading the table sits under (-1: before any heading)
    rows: list[list[str]]  # header row first, the delimiter row left out; cells stripped

    @property
    def columns(self) -> int:
        return len(self.rows[0])


@dataclass
class Readme:
    headings: list[Heading] = field(default_factory=list)
    code_blocks: list[str] = field(default_factory=list)  # each block verbatim, fence lines included
    tables: list[Table] = field(default_factory=list)
    # Per section (same indexes as headings; the text before the first heading is not kept): its text outside
    # fenced code blocks.
    section_text: list[str] = field(default_factory=list)

    def section(self, title: str) -> int:
        """Index of the one heading whose text is `title`."""
        found = [i for i, h in enumerate(self.headings) if h.text == title]
        assert len(found) == 1, f"expected exactly one heading {title!r}, found {len(found)}"
        return found[0]


def code_spans(text: str) -> list[str]:
    """Inline code spans in Markdown text (outside code blocks), with CommonMark's normalization: line endings
    become spaces and one leading and trailing space is dropped when both are there."""
    spans = []
    for match in CODE_SPAN.finditer(text):
        span = re.sub(r"\n[ \t]*", " ", match.group(2))
        if len(span) > 2 and span.startswith(" ") and span.endswith(" ") and span.strip():
            span = span[1:-1]
        spans.append(span)
    return spans


def split_row(line: str) -> list[str]:
    """Cells of a table row; a `|` inside a code span or escaped as `\\|` does not split."""
    body = line.strip()
    body = body[1:-1] if body.endswith("|") and not body.endswith("\\|") else body[1:]
    cells, cell, in_code, i = [], [], "", 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            cell.append(body[i : i + 2])
            i += 2
            continue
        if char == "`":
            run = len(body[i:]) - len(body[i:].lstrip("`"))
            ticks = body[i : i + run]
            if not in_code:
                in_code = ticks
            elif ticks == in_code:
                in_code = ""
            cell.append(ticks)
            i += run
            continue
        if char == "|" and not in_code:
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(char)
        i += 1
    cells.append("".join(cell).strip())
    return cells


def parse_readme(path: Path) -> Readme:
    readme = Readme()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fence: str | None = None
    block: list[str] = []
    table: list[str] = []
    text: list[str] = []

    def end_table() -> None:
        if len(table) >= 2 and TABLE_DELIMITER.match(table[1]):
            rows = [split_row(line) for i, line in enumerate(table) if i != 1]
            readme.tables.append(Table(len(readme.headings) - 1, rows))
        table.clear()

    def end_section() -> None:
        if readme.headings:
            readme.section_text.append("".join(text))
        text.clear()

    for line in lines:
        if fence is not None:
            block.append(line)
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.lstrip(fence[0]):
                readme.code_blocks.append("".join(block))
                fence, block = None, []
            continue
        opening = FENCE.match(line)
        if opening:
            end_table()
            fence, block = opening.group(1), [line]
            text.append("\n")  # a code block ends the paragraph before it
            continue
        if TABLE_LINE.match(line):
            table.append(line)
        else:
            end_table()
        heading = HEADING.match(line.rstrip("\n"))
        if heading:
            end_section()
            readme.headings.append(Heading(len(heading.group(1)), (heading.group(2) or "").strip()))
            continue
        text.append(line)
    assert fence is None, f"{path.name}: a fenced code block is never closed"
    end_table()
    end_section()
    return readme


def config_table(path: Path, section: str = CONFIG_SECTION) -> list[tuple[str, str]]:
    """(key, default cell) of each row of the one table in section `section`, in order. The key cell must be one
    code span (`gpuLimit`)."""
    readme = parse_readme(path)
    index = readme.section(section)
    tables = [t for t in readme.tables if t.section == index]
    assert len(tables) == 1, f"{path.name}: expected one table in section {section!r}, found {len(tables)}"
    rows = []
    for cells in tables[0].rows[1:]:
        key = re.fullmatch(r"`([^`]+)`", cells[0])
        assert key, f"{path.name}: config table row {cells} does not start with a `key` cell"
        rows.append((key.group(1), cells[1]))
    return rows


def shown_default(entry: dict) -> str:
    """A Pulumi.yaml config entry's default as the config table shows it (without the backticks)."""
    default = entry.get("default", entry.get("value"))
    if isinstance(default, list):
        return ", ".join(map(str, default))
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def config_table_problems(path: Path, declared: dict, section: str = CONFIG_SECTION) -> list[str]:
    """What in the config table of `path` disagrees with Pulumi.yaml's `config` (`declared`): keys missing, extra,
    repeated or out of Pulumi.yaml's order, and defaults not shown. Empty when they agree."""
    rows = config_table(path, section)
    keys = [key for key, _ in rows]
    problems = [f"{path.name} config table lacks {key}" for key in declared if key not in keys]
    problems += [
        f"{path.name} config table has {key}, not declared in Pulumi.yaml" for key in keys if key not in declared
    ]
    problems += [f"{path.name} config table lists {key} twice" for key in sorted(set(keys)) if keys.count(key) > 1]
    if not problems and keys != list(declared):
        problems.append(f"{path.name} config table is not in Pulumi.yaml's order: {keys}")
    for key, cell in rows:
        if key not in declared:
            continue
        shown = shown_default(declared[key])
        if not (f"`{shown}`" in cell or (shown == "" and "(empty)" in cell)):
            problems.append(f"{path.name} config table shows default {cell!r} for {key}, Pulumi.yaml has {shown!r}")
    return problems
