"""A DataTable that never cuts a value at its right edge: columns are sized to their content and,
when they do not all fit, split into pages of whole columns; `v` (or next_page) shows the next page.
The first `fixed` columns are on every page."""

from __future__ import annotations

from typing import Any, Sequence

from rich.text import Text
from textual.widgets import DataTable

from tui.row_table import ROW_HOME_END
from tui.tables import column_pages


def cell_width(value: Any) -> int:
    if isinstance(value, Text):
        return value.cell_len
    return Text(str(value)).cell_len


class PagedTable(DataTable):
    """Screens bind a key (v) to next_page, so Help lists it with the screen's keys. Home and End go to
    the first and last row (tui.row_table: DataTable's own only scroll sideways with a row cursor)."""

    BINDINGS = ROW_HOME_END

    def __init__(self, *, fixed: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fixed = fixed
        self.spec: list[tuple[str, str]] = []  # (label, key)
        self.data: list[tuple[str | None, list[Any]]] = []  # (row key, cells)
        self.page = 0
        self.pages: list[list[int]] = [[]]
        self.widths: list[int] = []
        self._laid_out_for = -1

    def set_columns(self, spec: Sequence[tuple[str, str]]) -> None:
        self.spec = list(spec)
        self.layout_columns(force=True)

    def set_rows(self, rows: Sequence[tuple[str | None, Sequence[Any]]]) -> None:
        self.data = [(key, list(cells)) for key, cells in rows]
        self.layout_columns(force=True)

    def set_columns_and_rows(self, spec: Sequence[tuple[str, str]],
                             rows: Sequence[tuple[str | None, Sequence[Any]]]) -> None:
        """Both at once, for a table whose columns depend on its rows."""
        self.spec = list(spec)
        self.set_rows(rows)

    def add_data_row(self, cells: Sequence[Any], key: str | None = None) -> None:
        self.data.append((key, list(cells)))
        self.layout_columns(force=True)

    def set_cell(self, row_key: str, column_key: str, value: Any) -> None:
        index = next(i for i, (_label, key) in enumerate(self.spec) if key == column_key)
        for key, cells in self.data:
            if key == row_key:
                cells[index] = value
        if cell_width(value) + 2 * self.cell_padding > self.widths[index]:
            self.layout_columns(force=True)  # wider than its column: size the columns again
        elif column_key in {c.value for c in self.columns}:
            self.update_cell(row_key, column_key, value)

    def visible_columns(self) -> list[int]:
        return list(range(min(self.fixed, len(self.spec)))) + [self.fixed + i for i in self.pages[self.page]]

    def layout_columns(self, force: bool = False) -> None:
        width = self.size.width or self.app.size.width
        if not force and width == self._laid_out_for:
            return
        self._laid_out_for = width
        pad = 2 * self.cell_padding
        self.widths = widths = [
            max([cell_width(label)] + [cell_width(cells[i]) for _k, cells in self.data if i < len(cells)]) + pad
            for i, (label, _key) in enumerate(self.spec)]
        fixed_w = sum(widths[: self.fixed])
        self.pages = column_pages(widths[self.fixed:], max(1, width - 2), fixed_w) if len(widths) > self.fixed else [[]]
        self.page %= len(self.pages)
        cursor = self.cursor_row
        self.clear(columns=True)
        shown = self.visible_columns()
        for i in shown:
            label, key = self.spec[i]
            # explicit widths, measured here: never narrower than the widest value
            self.add_column(label, key=key, width=widths[i] - pad)
        for key, cells in self.data:
            self.add_row(*[cells[i] for i in shown], key=key)
        if self.row_count and cursor:
            self.move_cursor(row=min(cursor, self.row_count - 1), animate=False)
        self.border_subtitle = f"v: columns {self.page + 1}/{len(self.pages)}" if len(self.pages) > 1 else ""

    def on_resize(self) -> None:
        self.layout_columns()

    def action_next_page(self) -> None:
        if len(self.pages) > 1:
            self.page = (self.page + 1) % len(self.pages)
            self.layout_columns(force=True)
