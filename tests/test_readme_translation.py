"""README.zh-CN.md is README.md in Chinese and stays in step with it: each links to the other at the top, the same
headings (level and inline code) in the same order, byte-identical code blocks, tables of the same shape, the same
inline code per section, and a config table with Pulumi.yaml's keys and defaults."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from tests.readme import HEADING, code_spans, config_table, config_table_problems, parse_readme

EN = PROJECT_ROOT / "README.md"
ZH = PROJECT_ROOT / "README.zh-CN.md"
ZH_CONFIG_SECTION = "配置"  # "Configuration"
DECLARED = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())["config"]


def check_links(en: Path, zh: Path) -> None:
    for path, target in ((en, zh.name), (zh, en.name)):
        top = path.read_text(encoding="utf-8").splitlines()[:5]
        links = [line for line in top if f"]({target})" in line and not HEADING.match(line)]
        assert links, f"{path.name} does not link to {target} in its first 5 lines: {top}"
    assert parse_readme(zh).headings[0] == parse_readme(en).headings[0], "both start with the same title"


def check_headings(en: Path, zh: Path) -> None:
    english, chinese = parse_readme(en).headings, parse_readme(zh).headings
    assert len(chinese) == len(english), (
        f"{len(english)} headings in {en.name}, {len(chinese)} in {zh.name}: "
        f"{[h.text for h in english]} vs {[h.text for h in chinese]}"
    )
    for i, (a, b) in enumerate(zip(english, chinese, strict=True)):
        assert (b.level, b.code_spans) == (a.level, a.code_spans), f"heading {i}: {a.text!r} vs {b.text!r}"


def check_code_blocks(en: Path, zh: Path) -> None:
    english, chinese = parse_readme(en).code_blocks, parse_readme(zh).code_blocks
    assert len(chinese) == len(english), f"{len(english)} code blocks in {en.name}, {len(chinese)} in {zh.name}"
    for i, (a, b) in enumerate(zip(english, chinese, strict=True)):
        assert b == a, f"code block {i} differs"


def check_tables(en: Path, zh: Path) -> None:
    def shapes(path: Path) -> list[tuple[int, int, int]]:  # (section, rows, columns) of each table
        return [(t.section, len(t.rows), t.columns) for t in parse_readme(path).tables]

    assert shapes(zh) == shapes(en)
    for path in (en, zh):
        for table in parse_readme(path).tables:
            assert {len(row) for row in table.rows} == {table.columns}, f"{path.name}: ragged table {table.rows[0]}"


def check_inline_code(en: Path, zh: Path) -> None:
    # What a section mentions in code (keys, paths, commands, values) is not translated: a paragraph added to one
    # README and not to the other almost always shows here.
    english, chinese = parse_readme(en), parse_readme(zh)
    for heading, a, b in zip(english.headings, english.section_text, chinese.section_text, strict=True):
        missing, extra = set(code_spans(a)) - set(code_spans(b)), set(code_spans(b)) - set(code_spans(a))
        assert not missing and not extra, (
            f"section {heading.text!r}: only in {en.name}: {missing}, only in {zh.name}: {extra}"
        )


def check_config_table(en: Path, zh: Path) -> None:
    assert config_table_problems(zh, DECLARED, ZH_CONFIG_SECTION) == []
    # The key and default columns are the English ones, byte for byte.
    assert config_table(zh, ZH_CONFIG_SECTION) == config_table(en)


CHECKS = [check_links, check_headings, check_code_blocks, check_tables, check_inline_code, check_config_table]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
def test_translation_is_in_step(check: Callable[[Path, Path], None]):
    check(EN, ZH)


def test_headings_and_tables_skip_fenced_code(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n```sh\n# a shell comment\n| not | a table |\n|---|---|\n```\n\n"
        "- item:\n\n  ```yaml\n  ## nor this\n  ```\n\n## Real `code`\n\n| a | b |\n|---|---|\n| `x|y` | 2 |\n"
    )
    parsed = parse_readme(readme)
    assert [(h.level, h.text) for h in parsed.headings] == [(1, "Title"), (2, "Real `code`")]
    assert parsed.headings[1].code_spans == ["code"]
    assert len(parsed.code_blocks) == 2 and parsed.code_blocks[1] == "  ```yaml\n  ## nor this\n  ```\n"
    assert [(t.section, t.rows) for t in parsed.tables] == [(1, [["a", "b"], ["`x|y`", "2"]])]


def drift(pattern: str, replacement: str) -> Callable[[str], str]:
    """A change to the Chinese README: `pattern` (a multiline regex) must match exactly once."""

    def change(text: str) -> str:
        changed, count = re.subn(pattern, replacement, text, flags=re.M)
        assert count == 1, f"{pattern!r} matches {count} times in {ZH.name}: update this drift example"
        return changed

    return change


# One drift each check must catch: (check, change to the Chinese README).
DRIFTS = {
    "link removed": (check_links, drift(r"^\[English\]\(README\.md\)\n", "")),
    "heading removed": (check_headings, drift(r"^## 部署\n", "")),
    "heading added": (check_headings, drift(r"^(## 部署内容\n)", r"\1\n# 多余\n")),
    "heading level changed": (check_headings, drift(r"^## 节点池$", "### 节点池")),
    "heading code dropped": (check_headings, drift(r"^(## GPU .*)`gpuPools`", r"\1")),
    "code block altered": (check_code_blocks, drift(r"^uv run pytest$", "uv run pytest -q")),
    "code block removed": (check_code_blocks, drift(r"^```sh\nuv run pytest\n```\n", "")),
    "table row removed": (check_tables, drift(r"^\| `weight` \|.*\n", "")),
    "paragraph untranslated": (check_inline_code, drift(r"`uv run pytest -n 0` 在单个进程中运行", "")),
    "config default changed": (check_config_table, drift(r"^(\| `gpuLimit` \| )`16`", r"\1`8`")),
    "config row removed": (check_config_table, drift(r"^\| `imageCache` \|.*\n", "")),
}


@pytest.mark.parametrize("name", DRIFTS)
def test_a_drifted_translation_fails(tmp_path, name):
    check, change = DRIFTS[name]
    en, zh = tmp_path / EN.name, tmp_path / ZH.name
    en.write_text(EN.read_text(encoding="utf-8"), encoding="utf-8")
    zh.write_text(ZH.read_text(encoding="utf-8"), encoding="utf-8")
    check(en, zh)  # unchanged copies pass
    zh.write_text(change(ZH.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(AssertionError):
        check(en, zh)
