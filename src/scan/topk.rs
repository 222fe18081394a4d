//! A bounded top-k collector: keeps the k best `(score, rid)` pairs seen.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Heap entry ordered so that the *worst* entry is the greatest (the heap's top).
#[derive(Clone, Copy, Debug)]
struct Entry {
    score: f32,
    rid: u64,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Lower score is worse; on equal scores the higher row id is worse.
        other
            .score
            .total_cmp(&self.score)
            .then(self.rid.cmp(&other.rid))
    }
}

/// Keeps the k best `(score, rid)` pairs.
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
    threshold: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            // Grown as hits come: a large k costs memory only for the rows there are.
            heap: BinaryHeap::with_capacity(k.min(1024) + 1),
            threshold: if k == 0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            },
        }
    }

    /// Scores strictly below this cannot enter.
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    pub fn push(&mut self, score: f32, rid: u64) {
        if self.k == 0 {
            return;
        }
        // Kernels may produce -0.0 or +0.0 for the same dot product: both are one score.
        let score = score + 0.0;
        let e = Entry { score, rid };
        if self.heap.len() < self.k {
            self.heap.push(e);
        } else if let Some(worst) = self.heap.peek() {
            if e < *worst {
                self.heap.pop();
                self.heap.push(e);
            } else {
                return;
            }
        }
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(f32::NEG_INFINITY, |w| w.score);
        }
    }

    pub fn merge(&mut self, other: TopK) {
        for e in other.heap {
            self.push(e.score, e.rid);
        }
    }

    /// Best first.
    pub fn into_sorted(self) -> Vec<(f32, u64)> {
        let mut v = self.heap.into_sorted_vec();
        v.truncate(self.k);
        v.into_iter().map(|e| (e.score, e.rid)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keeps_the_k_best_with_ties_to_lower_ids(scores in proptest::collection::vec(-4i8..4, 0..200), k in 0usize..20) {
            let mut t = TopK::new(k);
            for (i, &s) in scores.iter().enumerate() {
                t.push(s as f32, i as u64);
            }
            let mut want: Vec<(f32, u64)> = scores.iter().enumerate().map(|(i, &s)| (s as f32, i as u64)).collect();
            want.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            want.truncate(k);
            prop_assert_eq!(t.into_sorted(), want);
        }
    }
}
