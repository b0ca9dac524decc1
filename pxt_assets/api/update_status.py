"""What a call that changes a table returns: Pixeltable's `UpdateStatus` (pixeltable/catalog/update_status.py,
0.7.x, Apache-2.0), with the same fields, properties and printed form, from `insert`, `add_column` and
`add_computed_column`.

Ours besides (what `InsertResult` had, so today's scripts keep working): `batch` (the batch, a partition
key, the call made), `run_id` (its Dagster run), `seconds`, and `num_errors`, the number of rows with an
error (`num_excs`, as Pixeltable, counts the cells with one: a row whose bad file fails a computed column
too counts once in `num_errors`, twice in `num_excs`). `InsertResult` is another name for the class.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.lib.pretty import RepresentationPrinter


@dataclass(frozen=True)
class RowCountStats:
    """
    Statistics about the counts of rows affected by a table operation.
    """

    ins_rows: int = 0  # rows inserted
    del_rows: int = 0  # rows deleted
    upd_rows: int = 0  # rows updated
    num_excs: int = 0  # total number of exceptions
    # TODO: disambiguate what this means: # of slots computed or # of columns computed?
    computed_values: int = 0  # number of computed values (e.g., computed columns) affected by the operation

    @property
    def num_rows(self) -> int:
        return self.ins_rows + self.del_rows + self.upd_rows

    def insert_to_update(self) -> 'RowCountStats':
        """
        Convert insert row count stats to update row count stats.
        This is used when an insert operation is treated as an update.
        """
        return RowCountStats(
            ins_rows=0,
            del_rows=self.del_rows,
            upd_rows=self.upd_rows + self.ins_rows,
            num_excs=self.num_excs,
            computed_values=self.computed_values,
        )

    def __add__(self, other: 'RowCountStats') -> 'RowCountStats':
        """
        Add the stats from two RowCountStats objects together.
        """
        return RowCountStats(
            ins_rows=self.ins_rows + other.ins_rows,
            del_rows=self.del_rows + other.del_rows,
            upd_rows=self.upd_rows + other.upd_rows,
            num_excs=self.num_excs + other.num_excs,
            computed_values=self.computed_values + other.computed_values,
        )


@dataclass(frozen=True)
class UpdateStatus:
    """
    Information about changes to table data or table schema
    """

    updated_cols: list[str] = field(default_factory=list)
    """Columns that were updated."""
    cols_with_excs: list[str] = field(default_factory=list)
    """Columns that encountered exceptions."""
    rows: list[dict[str, Any]] | None = None
    """New rows produced by the call, if requested."""

    # stats for the rows affected by the operation
    row_count_stats: RowCountStats = field(default_factory=RowCountStats)
    """Row count statistics for rows affected by this operation."""

    # stats for changes cascaded to other tables
    cascade_row_count_stats: RowCountStats = field(default_factory=RowCountStats)
    """Row count statistics for changes cascaded to other tables."""

    # -- ours -----------------------------------------------------------------------------------------------
    batch: str | None = None
    """The batch (partition key) the call made or computed; for several, the last."""
    run_id: str | None = None
    """The Dagster run that computed it."""
    num_errors: int = 0
    """Rows with an error in any column (what `InsertResult.num_errors` counted); see num_excs."""
    seconds: float = 0.0
    """How long the call took."""
    batches: tuple[str, ...] = ()
    """Every batch the call computed (add_computed_column: each existing batch)."""

    @property
    def num_rows(self) -> int:
        """Total number of rows affected (including cascaded changes)."""
        return self.row_count_stats.num_rows + self.cascade_row_count_stats.num_rows

    @property
    def num_excs(self) -> int:
        """Total number of exceptions encountered (including cascaded changes)."""
        return self.row_count_stats.num_excs + self.cascade_row_count_stats.num_excs

    @property
    def num_computed_values(self) -> int:
        """Total number of computed values affected (including cascaded changes)."""
        return self.row_count_stats.computed_values + self.cascade_row_count_stats.computed_values

    def insert_to_update(self) -> 'UpdateStatus':
        """
        Convert the update status from an insert operation to an update operation.
        This is used when an insert operation is treated as an update.
        """
        return UpdateStatus(
            updated_cols=self.updated_cols,
            cols_with_excs=self.cols_with_excs,
            row_count_stats=self.row_count_stats.insert_to_update(),
            cascade_row_count_stats=self.cascade_row_count_stats.insert_to_update(),
        )

    def to_cascade(self) -> 'UpdateStatus':
        """
        Convert the update status to a cascade update status.
        This is used when an operation cascades changes to other tables.
        """
        return UpdateStatus(
            updated_cols=self.updated_cols,
            cols_with_excs=self.cols_with_excs,
            rows=self.rows,
            row_count_stats=RowCountStats(),
            cascade_row_count_stats=self.cascade_row_count_stats + self.row_count_stats,
        )

    def __add__(self, other: 'UpdateStatus') -> UpdateStatus:
        """
        Add the update status from two UpdateStatus objects together.
        """
        combined_rows: list[dict[str, Any]] | None = None
        if self.rows is not None or other.rows is not None:
            combined_rows = (self.rows or []) + (other.rows or [])
        return UpdateStatus(
            updated_cols=list(dict.fromkeys(self.updated_cols + other.updated_cols)),
            cols_with_excs=list(dict.fromkeys(self.cols_with_excs + other.cols_with_excs)),
            rows=combined_rows,
            row_count_stats=self.row_count_stats + other.row_count_stats,
            cascade_row_count_stats=self.cascade_row_count_stats + other.cascade_row_count_stats,
            batch=other.batch or self.batch,
            run_id=other.run_id or self.run_id,
            num_errors=self.num_errors + other.num_errors,
            seconds=self.seconds + other.seconds,
            batches=tuple(dict.fromkeys(self.batches + other.batches)),
        )

    def insert_msg(self, start_ts: float | None = None) -> str:
        """
        Returns message describing the results of an insert operation.
        If start_ts is provided, also includes duration and throughput.
        """
        if self.num_excs == 0:
            cols_with_excs_str = ''
        else:
            cols_with_excs_str = (
                f' across {len(self.cols_with_excs)} column{"" if len(self.cols_with_excs) == 1 else "s"}'
            )
            cols_with_excs_str += f' ({", ".join(self.cols_with_excs)})'
        msg = (
            f'Inserted {self.num_rows} row{"" if self.num_rows == 1 else "s"} '
            f'with {self.num_excs} error{"" if self.num_excs == 1 else "s"}{cols_with_excs_str}'
        )
        if start_ts is not None and self.num_rows > 0:
            end_ts = time.perf_counter()
            duration = end_ts - start_ts
            msg += f' in {duration:.2f} s'
            if duration > 0:
                msg += f' ({self.num_rows / duration:.2f} rows/s)'
        return msg

    @classmethod
    def __cnt_str(cls, cnt: int, item: str) -> str:
        assert cnt > 0
        return f'{cnt} {item}{"" if cnt == 1 else "s"}'

    def _repr_pretty_(self, p: 'RepresentationPrinter', cycle: bool) -> None:
        messages = []
        # Combine row count stats and cascade row count stats
        stats = self.row_count_stats + self.cascade_row_count_stats
        if stats.ins_rows > 0:
            messages.append(f'{self.__cnt_str(stats.ins_rows, "row")} inserted')
        if stats.del_rows > 0:
            messages.append(f'{self.__cnt_str(stats.del_rows, "row")} deleted')
        if stats.upd_rows > 0:
            messages.append(f'{self.__cnt_str(stats.upd_rows, "row")} updated')
        if stats.computed_values > 0:
            messages.append(f'{self.__cnt_str(stats.computed_values, "value")} computed')
        if stats.num_excs > 0:
            messages.append(self.__cnt_str(stats.num_excs, 'exception'))
        p.text(', '.join(messages) + '.' if len(messages) > 0 else 'No rows affected.')

    @property
    def pxt_rows_updated(self) -> int:
        """
        Returns the number of Pixeltable rows that were updated as a result of the operation.
        """
        return (self.row_count_stats + self.cascade_row_count_stats).upd_rows

    # -- ours -----------------------------------------------------------------------------------------------
    def timed_msg(self, verb: str = 'Inserted') -> str:
        """What insert prints, as Pixeltable's insert does: `Inserted 2 rows with 1 error across 1 column (t.img) in
        0.50 s (4.00 rows/s)` (`verb`: a view's line says what it did)."""
        msg = self.insert_msg().replace('Inserted', verb, 1)
        if self.num_rows > 0:
            msg += f' in {self.seconds:.2f} s'
            if self.seconds > 0:
                msg += f' ({self.num_rows / self.seconds:.2f} rows/s)'
        return msg


#: the name insert's result had before it was Pixeltable's UpdateStatus
InsertResult = UpdateStatus
