"""One report, two renderings: GitHub Markdown and a self-contained HTML page (inline
CSS, HTML tables, no scripts, no external fetches; figures are PNG files next to it,
referenced by relative paths). Both are rendered from the same list of blocks, so
they always say the same thing."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Text:
    text: str  # `code` spans allowed


@dataclass
class Note:
    """Something missing or not measured, said plainly."""

    text: str


@dataclass
class Table:
    frame: pd.DataFrame  # display strings
    caption: str = ""
    # per cell: "" or "best" (bold), "pass", "fail"
    marks: pd.DataFrame | None = None
    csv: str | None = None  # the CSV file holding this table's numbers
    label_columns: int = 1  # leading columns that name the row (left-aligned)


@dataclass
class Figure:
    file: str  # PNG name, relative to the page
    alt: str
    caption: str = ""
    csv: str | None = None  # the CSV file holding the plotted numbers


@dataclass
class Code:
    text: str
    summary: str  # shown folded under this title


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 2


CSS = """
html { background: #fff; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328;
       max-width: 1200px; margin: 2em auto; padding: 0 1.5em; }
h1 { border-bottom: 2px solid #d0d7de; padding-bottom: .3em; }
h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.6em; }
code { background: #f3f4f6; padding: .1em .3em; border-radius: 4px; font-size: 90%; }
table { border-collapse: collapse; margin: .2em 0 1.2em; font-size: 13.5px; }
th, td { border: 1px solid #d0d7de; padding: .25em .6em; text-align: right; }
th { background: #f6f8fa; }
td.label, th.label { text-align: left; }
td.best { font-weight: 700; background: #eef6ee; }
td.pass { background: #e6f4ea; }
td.fail { background: #fde2e1; font-weight: 700; }
p.caption { font-weight: 600; margin: 1em 0 .2em; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #57606a; font-size: 13.5px; }
.note { border-left: 4px solid #d4a72c; background: #fff8c5; padding: .5em .9em; margin: .8em 0; }
details pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 12.5px; }
.small { color: #57606a; font-size: 13px; }
"""


def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _table_html(table: Table) -> str:
    frame = table.frame
    label_cols = set(frame.columns[: table.label_columns])
    out = [f'<p class="caption">{_inline_html(table.caption)}</p>'] if table.caption else []
    out.append("<table>")
    head = "".join(
        f'<th class="{"label" if c in label_cols else ""}">{html.escape(str(c))}</th>'
        for c in frame.columns
    )
    out.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for i in range(len(frame)):
        cells = []
        for j, c in enumerate(frame.columns):
            classes = []
            if table.marks is not None and table.marks.iat[i, j]:
                classes.append(table.marks.iat[i, j])
            if c in label_cols:
                classes.append("label")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{html.escape(str(frame.iat[i, j]))}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "\n".join(out) + _csv_html(table.csv)


def _csv_html(csv: str | None) -> str:
    if not csv:
        return ""
    return f'\n<p class="small">CSV: <a href="{html.escape(csv)}">{html.escape(csv)}</a></p>'


def _csv_md(csv: str | None) -> str:
    return f"\n\nCSV: [{csv}]({csv})" if csv else ""


def _block_html(block) -> str:
    if isinstance(block, Text):
        return f"<p>{_inline_html(block.text)}</p>"
    if isinstance(block, Note):
        return f'<p class="note">{_inline_html(block.text)}</p>'
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Figure):
        caption = f"<figcaption>{_inline_html(block.caption)}</figcaption>" if block.caption else ""
        src, alt = html.escape(block.file), html.escape(block.alt)
        return f'<figure><img src="{src}" alt="{alt}">{caption}</figure>' + _csv_html(block.csv)
    if isinstance(block, Code):
        return (
            f"<details><summary>{_inline_html(block.summary)}</summary>"
            f"<pre>{html.escape(block.text)}</pre></details>"
        )
    raise TypeError(f"unknown block {type(block).__name__}")


def to_html(title: str, sections: list[Section]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        body += [_block_html(b) for b in section.blocks]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _md_cell(value: str, mark: str) -> str:
    value = str(value).replace("|", "\\|")
    return f"**{value}**" if mark in ("best", "fail") and value else value


def _table_md(table: Table) -> str:
    frame = table.frame
    out = [f"**{table.caption}**", ""] if table.caption else []
    out.append("| " + " | ".join(str(c) for c in frame.columns) + " |")
    align = [":--" if j < table.label_columns else "--:" for j in range(frame.shape[1])]
    out.append("|" + "|".join(align) + "|")
    for i in range(len(frame)):
        marks = [
            table.marks.iat[i, j] if table.marks is not None else "" for j in range(frame.shape[1])
        ]
        out.append(
            "| "
            + " | ".join(_md_cell(frame.iat[i, j], marks[j]) for j in range(frame.shape[1]))
            + " |"
        )
    return "\n".join(out) + _csv_md(table.csv)


def _block_md(block) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Note):
        return f"> **Note:** {block.text}"
    if isinstance(block, Table):
        return _table_md(block)
    if isinstance(block, Figure):
        image = f"![{block.alt}]({block.file})"
        caption = f"\n\n*{block.caption}*" if block.caption else ""
        return image + caption + _csv_md(block.csv)
    if isinstance(block, Code):
        return (
            f"<details><summary>{html.escape(block.summary)}</summary>\n\n"
            f"```\n{block.text}\n```\n\n</details>"
        )
    raise TypeError(f"unknown block {type(block).__name__}")


def to_markdown(title: str, sections: list[Section]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}")
        parts += [_block_md(b) for b in section.blocks]
    return "\n\n".join(parts) + "\n"
