//! Where a sample stands in a release's manifest.
//!
//! A release reads its cohort in patient order, for the locality of its
//! consent lookups (decision 0024), but numbers the manifest in the
//! project's own keyed order: a sample's position comes from the bits of its
//! project sample ID's digest that the ID does not print (decision 0030).
//! Positions of one project's manifests therefore say nothing about another
//! project's, or about pseudonym or genome-ID order. Handle resolution and
//! the manifest are paged by position, so their pages follow that order
//! too.

use std::collections::HashSet;

/// Positions lie in `1..=POSITION_SPAN`; `0` stays free to mean "before the
/// first" in a page cursor.
pub const POSITION_SPAN: i64 = 1 << 62;

/// The positions given so far in one release. Two samples whose order keys
/// meet (one chance in about 10^7 at a million samples) must still get
/// distinct positions: the later one takes the next free position.
#[derive(Debug, Default)]
pub struct ManifestPositions {
    taken: HashSet<i64>,
}

impl ManifestPositions {
    /// The position of the sample whose project order key is `order`.
    pub fn place(&mut self, order: u64) -> i64 {
        let span = POSITION_SPAN.unsigned_abs();
        let mut position = i64::try_from(order % span).unwrap_or(0) + 1;
        while !self.taken.insert(position) {
            position = position % POSITION_SPAN + 1;
        }
        position
    }

    pub fn len(&self) -> usize {
        self.taken.len()
    }

    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }
}

/// How many positions, on average, lie between neighbouring rows of a
/// manifest of `rows` rows whose positions are spread over the span: what
/// a page read sizes its windows by.
pub fn spacing(rows: i64) -> i64 {
    (POSITION_SPAN / rows.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_fall_in_the_span_and_never_zero() {
        let mut positions = ManifestPositions::default();
        assert_eq!(positions.place(0), 1);
        assert_eq!(positions.place(u64::MAX), POSITION_SPAN);
        let p = positions.place(12_345);
        assert_eq!(p, 12_346);
        assert!((1..=POSITION_SPAN).contains(&p));
    }

    #[test]
    fn keys_that_meet_get_the_next_free_positions() {
        let mut positions = ManifestPositions::default();
        assert_eq!(positions.place(41), 42);
        assert_eq!(positions.place(41), 43);
        assert_eq!(positions.place(42), 44, "43 is taken too");
        // The last position wraps to the first.
        assert_eq!(positions.place((POSITION_SPAN - 1) as u64), POSITION_SPAN);
        assert_eq!(positions.place((POSITION_SPAN - 1) as u64), 1);
        assert_eq!(positions.len(), 5);
    }

    #[test]
    fn the_same_key_in_another_release_gets_the_same_position() {
        let (mut a, mut b) = (ManifestPositions::default(), ManifestPositions::default());
        assert_eq!(a.place(7 << 40), b.place(7 << 40));
    }

    #[test]
    fn spacing_spreads_rows_over_the_span() {
        assert_eq!(spacing(1), POSITION_SPAN);
        assert_eq!(
            spacing(0),
            POSITION_SPAN,
            "an empty manifest is one row wide"
        );
        assert_eq!(spacing(4), POSITION_SPAN / 4);
        assert_eq!(spacing(i64::MAX), 1);
    }
}
