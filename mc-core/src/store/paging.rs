//! Cursor paging for store listings.

use uuid::Uuid;

/// The most items a store returns for one page, whatever was asked.
pub const MAX_PAGE_LIMIT: u32 = 500;

/// One page of a listing: items after `cursor` (exclusive), at most `limit` of them.
///
/// The cursor is the id of the last item of the previous page. Each listing documents its
/// order; ids are UUID v7, so id order is creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Continue after this id; `None` for the first page.
    pub cursor: Option<Uuid>,
    /// At most this many items, clamped to `1..=MAX_PAGE_LIMIT`.
    pub limit: u32,
}

impl Page {
    /// The first page of `limit` items.
    pub const fn first(limit: u32) -> Self {
        Self { cursor: None, limit }
    }

    /// The page of `limit` items after `cursor`.
    pub fn after(cursor: impl Into<Uuid>, limit: u32) -> Self {
        Self { cursor: Some(cursor.into()), limit }
    }

    /// The limit, clamped to what a store will return.
    pub fn effective_limit(&self) -> u32 {
        self.limit.clamp(1, MAX_PAGE_LIMIT)
    }

    /// How many rows a store should fetch: one more than the limit, to learn whether there
    /// is a next page.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.effective_limit()) + 1
    }
}

/// A page of results and the cursor for the next one.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Pass this as the next page's cursor; `None` when this was the last page.
    pub next_cursor: Option<Uuid>,
}

impl<T> Paged<T> {
    /// Builds a page from up to `page.fetch_limit()` rows: keeps `limit` of them and sets the
    /// next cursor from the last kept item when more rows were found.
    pub fn from_rows(mut rows: Vec<T>, page: Page, id_of: impl Fn(&T) -> Uuid) -> Self {
        let limit = page.effective_limit() as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if has_more { rows.last().map(id_of) } else { None };
        Self { items: rows, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_clamped() {
        assert_eq!(Page::first(0).effective_limit(), 1);
        assert_eq!(Page::first(10_000).effective_limit(), MAX_PAGE_LIMIT);
        assert_eq!(Page::first(20).fetch_limit(), 21);
    }

    #[test]
    fn next_cursor_only_when_more_rows() {
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
        let page = Paged::from_rows(ids.clone(), Page::first(3), |id| *id);
        assert_eq!(page.items, ids[..3]);
        assert_eq!(page.next_cursor, Some(ids[2]));
        let last = Paged::from_rows(ids[..3].to_vec(), Page::first(3), |id| *id);
        assert_eq!(last.next_cursor, None);
    }
}
