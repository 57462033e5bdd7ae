"""A DataTable whose Home and End go to the first and last row.

Textual's DataTable (textual.widgets._data_table, 8.x) binds Home/End to scroll_home/scroll_end, which
with a row cursor only scroll sideways (to the first/last column), and Ctrl+Home/Ctrl+End to the first
and last row. A table of runs or figures is read row by row, so here Home and End do what Ctrl+Home and
Ctrl+End do; ↑ ↓ PgUp PgDn are DataTable's own. No description on the bindings: a screen says these
keys once in Help through its HELP_SCROLL line (tui.screens.help.SCROLL_KEYS)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable

# Key -> DataTable action; a subclass's binding for a key replaces DataTable's for it.
ROW_HOME_END = [
    Binding("home", "scroll_top", show=False, id="row_table.first"),
    Binding("end", "scroll_bottom", show=False, id="row_table.last"),
]


class RowTable(DataTable):
    """DataTable with Home = the first row and End = the last row (the cursor moves there and the
    table scrolls to show it); every other key and argument as DataTable's."""

    BINDINGS = ROW_HOME_END
