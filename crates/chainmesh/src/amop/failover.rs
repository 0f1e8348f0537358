//! Failover state: which candidates (holder nodes, or local subscriber sessions) one
//! delivery has tried, and the random choice of the next. Pure: the caller passes the
//! current candidates and a random number, so the choice is testable and a candidate that
//! left since the last try is simply no longer offered.

/// The candidates one delivery has tried, in order.
#[derive(Debug)]
pub(crate) struct Tried<T> {
    tried: Vec<T>,
}

impl<T> Default for Tried<T> {
    fn default() -> Self {
        Tried { tried: Vec::new() }
    }
}

impl<T: PartialEq + Copy> Tried<T> {
    /// Picks one of `current` not tried yet, using `random` to choose among them, and
    /// records it as tried. `None` when every current candidate has been tried.
    pub(crate) fn pick(&mut self, current: &[T], random: u32) -> Option<T> {
        let untried: Vec<T> = current
            .iter()
            .copied()
            .filter(|c| !self.tried.contains(c))
            .collect();
        let choice = *untried.get((random as usize).checked_rem(untried.len())?)?;
        self.tried.push(choice);
        Some(choice)
    }

    /// Whether nothing was ever tried (there never was a candidate).
    pub(crate) fn is_empty(&self) -> bool {
        self.tried.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_candidate_is_tried_once_then_none_is_left() {
        let mut t = Tried::default();
        let all = [10, 20, 30];
        let mut got: Vec<i32> = (0..3).filter_map(|r| t.pick(&all, r * 7)).collect();
        got.sort();
        assert_eq!(got, all);
        assert_eq!(t.pick(&all, 0), None);
        assert!(!t.is_empty());
    }

    #[test]
    fn the_random_number_chooses_among_the_untried() {
        let mut t = Tried::default();
        assert_eq!(t.pick(&[1, 2, 3], 1), Some(2));
        assert_eq!(t.pick(&[1, 2, 3], 1), Some(3), "2 is out, so index 1 is 3");
        assert_eq!(t.pick(&[1, 2, 3], 5), Some(1));
    }

    #[test]
    fn a_candidate_that_appears_later_is_offered_and_one_that_left_is_not() {
        let mut t = Tried::default();
        assert_eq!(t.pick(&[1, 2], 0), Some(1));
        assert_eq!(t.pick(&[3], 0), Some(3), "2 left, 3 came");
        assert_eq!(t.pick(&[1, 3], 0), None);
    }

    #[test]
    fn no_candidates_at_all_is_none_and_nothing_tried() {
        let mut t: Tried<u8> = Tried::default();
        assert_eq!(t.pick(&[], 3), None);
        assert!(t.is_empty());
    }
}
