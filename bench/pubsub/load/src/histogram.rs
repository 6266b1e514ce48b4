//! A log-linear latency histogram in microseconds: 32 sub-buckets per power of two, so a
//! quantile is reported within about 3%.

const SUB: usize = 32;
const POWERS: usize = 32;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; SUB * POWERS],
            total: 0,
        }
    }

    fn index(micros: u64) -> usize {
        if micros < SUB as u64 {
            return micros as usize;
        }
        let power = 63 - micros.leading_zeros() as usize; // >= 5
        let shift = power - 5;
        let sub = ((micros >> shift) as usize) - SUB;
        ((power - 4) * SUB + sub).min(SUB * POWERS - 1)
    }

    fn upper_bound(index: usize) -> u64 {
        if index < SUB {
            return index as u64;
        }
        let power = index / SUB + 4;
        let sub = index % SUB;
        let shift = power - 5;
        (((SUB + sub) as u64) << shift) + (1 << shift) - 1
    }

    pub fn record(&mut self, micros: u64) {
        self.counts[Self::index(micros)] += 1;
        self.total += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// The value at quantile `q` (0..=1), in microseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::upper_bound(index);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_a_few_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0), (0.01, 1_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.04, "q{q}: {got} vs {want}");
        }
    }
}
