//! Inserting many rows into a redb table through a cursor, one descent of
//! the tree per run of neighbouring keys instead of one per row (P2).
//!
//! A sync writes a chat's messages together, and in a new chat they all
//! fall into one gap between keys the table already holds (the chat's
//! range in `chat_messages`, its ids' range in `message_ids`). redb's
//! [`redb::CursorMut`] buffers the inserts of such a run and splices them
//! in at once, building full leaves and updating the parents once, where
//! `Table::insert` descends from the root, searches and edits a leaf per
//! row. What ends up in the table is the same either way; only the page
//! layout differs, which is redb's business.

use std::ops::Bound;

use redb::{CursorError, Key, Value};

use super::tables::DbResult;
use crate::storage::StoreResult;

/// Inserts `rows` into `table` with the outcome of `table.insert` for each,
/// in order: a key the table holds already gets the new value, and
/// `replaced(i, old)` is called with the value row `i` replaced (what
/// `insert` would have returned).
///
/// Any order of keys is correct (a row that does not follow its
/// predecessor's gap seeks again, and a key given twice replaces its first
/// value), but keys ascending in the table's order make the runs: one seek
/// per gap, then buffered inserts.
pub(super) fn insert_rows<'r, K, V>(
    table: &mut redb::Table<'_, K, V>,
    rows: &[(K::SelfType<'r>, V::SelfType<'r>)],
    mut replaced: impl FnMut(usize, V::SelfType<'_>) -> StoreResult<()>,
) -> StoreResult<()>
where
    K: Key + 'static,
    V: Value + 'static,
{
    let mut i = 0;
    while i < rows.len() {
        // The gap before the first key ≥ row i's: every key before the gap
        // is smaller, so the insert is refused only when the key after the
        // gap is row i's own.
        let mut cursor = table.lower_bound_mut(Bound::Included(&rows[i].0)).db()?;
        let (key, value) = &rows[i];
        match cursor.insert_before(key, value) {
            Ok(()) => {}
            Err(CursorError::UnorderedKey) => {
                {
                    let Some((_, old)) = cursor.remove_next().db()? else {
                        return Err(crate::storage::StoreError::Backend(
                            "a refused insert found no entry to replace".into(),
                        ));
                    };
                    replaced(i, old.value())?;
                }
                cursor.insert_before(key, value).db()?;
            }
            Err(e) => return Err(e).db(),
        }
        i += 1;
        // The rows that fit the same gap, buffered; the first that does not
        // ends the run (and seeks again).
        while i < rows.len() {
            let (key, value) = &rows[i];
            match cursor.insert_before(key, value) {
                Ok(()) => i += 1,
                Err(CursorError::UnorderedKey) => break,
                Err(e) => return Err(e).db(),
            }
        }
        cursor.close().db()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

    use super::*;

    const T: TableDefinition<(&str, u64), u64> = TableDefinition::new("t");

    /// A small deterministic generator (no dependency for one test).
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Whatever the keys (ascending runs, shuffled, some already stored,
    /// some given twice), the table ends up as with one `insert` per row,
    /// and the replaced values are those `insert` would have returned.
    #[test]
    fn rows_land_as_with_one_insert_each() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("t.redb")).unwrap();
        let mut model: BTreeMap<(String, u64), u64> = BTreeMap::new();
        let names = ["a", "b", "c"];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..24u64 {
            let n = (next(&mut seed) % 2000) as usize;
            let mut rows: Vec<(&str, u64, u64)> = (0..n)
                .map(|_| {
                    let r = next(&mut seed);
                    (
                        names[(r % 3) as usize],
                        (r >> 8) % 5000,
                        round * 10_000 + r % 100,
                    )
                })
                .collect();
            match round % 3 {
                0 => rows.sort_unstable(),
                1 => {
                    rows.sort_unstable();
                    rows.dedup_by_key(|r| (r.0, r.1));
                }
                _ => {}
            }
            let mut want_replaced = Vec::new();
            for (i, &(s, k, v)) in rows.iter().enumerate() {
                if let Some(old) = model.insert((s.to_owned(), k), v) {
                    want_replaced.push((i, old));
                }
            }
            let txn = db.begin_write().unwrap();
            let mut got_replaced = Vec::new();
            {
                let mut table = txn.open_table(T).unwrap();
                let rows: Vec<((&str, u64), u64)> =
                    rows.iter().map(|&(s, k, v)| ((s, k), v)).collect();
                insert_rows(&mut table, &rows, |i, old| {
                    got_replaced.push((i, old));
                    Ok(())
                })
                .unwrap();
            }
            txn.commit().unwrap();
            assert_eq!(got_replaced, want_replaced, "round {round}");
            let txn = db.begin_read().unwrap();
            let table = txn.open_table(T).unwrap();
            let stored: Vec<((String, u64), u64)> = table
                .iter()
                .unwrap()
                .map(|r| {
                    let (k, v) = r.unwrap();
                    let (s, n) = k.value();
                    ((s.to_owned(), n), v.value())
                })
                .collect();
            let want: Vec<((String, u64), u64)> = model.clone().into_iter().collect();
            assert_eq!(stored, want, "round {round}");
        }
    }
}
