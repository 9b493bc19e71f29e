"""A small parser for infra/athena/create-table.sql, so tests (and the DuckDB view) use its columns."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Hive type, lower case, no backticks or spaces: struct<bucket:string,...>


@dataclass(frozen=True)
class TableDdl:
    name: str
    columns: list[Column]
    partitions: list[Column]
    serde: str
    location: str
    properties: dict[str, str]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def _balanced(text: str, start: int) -> tuple[str, int]:
    """The text inside the parenthesis opening at `start`, and the index after its close."""
    assert text[start] == "("
    depth, i, quote = 0, start, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                if i + 1 < len(text) and text[i + 1] == quote:
                    i += 1  # '' escape
                else:
                    quote = None
        elif ch in "'`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    raise ValueError("unbalanced parentheses")


def _split_top_level(body: str) -> list[str]:
    parts, depth, quote, current = [], 0, None, []
    for ch in body:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'`":
            quote = ch
        elif ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _column(definition: str) -> Column:
    m = re.match(r"`?(\w+)`?\s+(.*?)(?:\s+COMMENT\s+'.*)?$", definition, re.S | re.I)
    assert m, f"cannot parse column definition {definition!r}"
    return Column(m.group(1), re.sub(r"[\s`]", "", m.group(2)).lower())


def parse_table_ddl(sql: str) -> TableDdl:
    sql = _strip_comments(sql)
    m = re.search(r"CREATE\s+EXTERNAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)\s*\(", sql, re.I)
    assert m, "no CREATE EXTERNAL TABLE"
    body, after = _balanced(sql, m.end() - 1)
    columns = [_column(d) for d in _split_top_level(body)]
    p = re.search(r"PARTITIONED\s+BY\s*\(", sql[after:], re.I)
    assert p, "no PARTITIONED BY"
    pbody, _ = _balanced(sql, after + p.end() - 1)
    partitions = [_column(d) for d in _split_top_level(pbody)]
    serde = re.search(r"ROW\s+FORMAT\s+SERDE\s+'([^']+)'", sql, re.I)
    location = re.search(r"LOCATION\s+'([^']+)'", sql, re.I)
    t = re.search(r"TBLPROPERTIES\s*\(", sql, re.I)
    assert serde and location and t, "SerDe, LOCATION and TBLPROPERTIES are required"
    tbody, _ = _balanced(sql, t.end() - 1)
    properties = dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", tbody))
    return TableDdl(m.group(1), columns, partitions, serde.group(1), location.group(1), properties)


_SCALARS = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "boolean": "BOOLEAN", "double": "DOUBLE"}


def duckdb_type(hive_type: str) -> str:
    """The DuckDB type that reads what the Hive/OpenX type reads: struct<a:string> -> STRUCT("a" VARCHAR)."""
    if hive_type in _SCALARS:
        return _SCALARS[hive_type]
    m = re.fullmatch(r"struct<(.*)>", hive_type)
    assert m, f"no DuckDB mapping for {hive_type!r}"
    fields = []
    for part in _split_top_level(m.group(1)):
        name, _, sub = part.partition(":")
        fields.append(f'"{name}" {duckdb_type(sub)}')
    return f"STRUCT({', '.join(fields)})"
