//! Downsampling for drawing: a ten-hour run still draws ~1,500 points per series. Lines
//! keep their peaks with LTTB (Largest-Triangle-Three-Buckets); gaps in a series stay
//! gaps ([`segments`]); stacked rates are averaged over buckets ([`bucket_ranges`]).

/// The most points a plotted series keeps after downsampling.
pub const MAX_POINTS: usize = 1500;

/// Indices of the points Largest-Triangle-Three-Buckets keeps when reducing `points`
/// (sorted by x) to `threshold` points: always the first and the last, and in each bucket
/// between them the point forming the largest triangle with the previously kept point and
/// the average of the next bucket — peaks and dips survive, flat stretches thin out.
/// Returns every index when there are no more than `threshold` points.
pub fn lttb_indices(points: &[(f64, f64)], threshold: usize) -> Vec<usize> {
    let n = points.len();
    if threshold >= n || n <= 2 {
        return (0..n).collect();
    }
    if threshold < 3 {
        return if threshold == 0 {
            Vec::new()
        } else {
            vec![0, n - 1]
        };
    }
    let mut kept = Vec::with_capacity(threshold);
    kept.push(0);
    let every = (n - 2) as f64 / (threshold - 2) as f64;
    let mut a = 0usize;
    for i in 0..threshold - 2 {
        // The next bucket's average is the third corner of the triangle.
        let avg_start = ((i + 1) as f64 * every) as usize + 1;
        let avg_end = (((i + 2) as f64 * every) as usize + 1).min(n);
        let (mut avg_x, mut avg_y) = (0.0, 0.0);
        let avg_len = avg_end.saturating_sub(avg_start).max(1);
        for p in &points[avg_start.min(n - 1)..avg_end.max(avg_start.min(n - 1) + 1)] {
            avg_x += p.0;
            avg_y += p.1;
        }
        avg_x /= avg_len as f64;
        avg_y /= avg_len as f64;

        let start = (i as f64 * every) as usize + 1;
        let end = (((i + 1) as f64 * every) as usize + 1).min(n - 1);
        let (ax, ay) = points[a];
        let mut best = start;
        let mut best_area = -1.0;
        for (j, &(x, y)) in points.iter().enumerate().take(end).skip(start) {
            let area = ((ax - avg_x) * (y - ay) - (ax - x) * (avg_y - ay)).abs();
            if area > best_area {
                best_area = area;
                best = j;
            }
        }
        kept.push(best);
        a = best;
    }
    kept.push(n - 1);
    kept
}

/// `points` reduced to at most `threshold` points with LTTB (see [`lttb_indices`]).
pub fn lttb(points: &[(f64, f64)], threshold: usize) -> Vec<(f64, f64)> {
    lttb_indices(points, threshold)
        .into_iter()
        .map(|i| points[i])
        .collect()
}

/// Splits a series into drawable runs — a missing or non-finite value, or a jump in x
/// wider than `max_gap`, ends a run, so gaps show as gaps instead of being bridged or
/// printed as "NaN" — and downsamples the runs with LTTB to about `budget` points in all.
pub fn segments<I>(points: I, max_gap: Option<f64>, budget: usize) -> Vec<Vec<(f64, f64)>>
where
    I: IntoIterator<Item = (f64, Option<f64>)>,
{
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current: Vec<(f64, f64)> = Vec::new();
    for (x, y) in points {
        let y = y.filter(|y| y.is_finite());
        let gap = match (current.last(), max_gap) {
            (Some(&(last_x, _)), Some(max_gap)) => x - last_x > max_gap,
            _ => false,
        };
        if (y.is_none() || gap || !x.is_finite()) && !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
        if let (Some(y), true) = (y, x.is_finite()) {
            current.push((x, y));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    let total: usize = runs.iter().map(Vec::len).sum();
    if total <= budget {
        return runs;
    }
    if runs.len() > budget / 8 {
        // Gaps so many that they are narrower than a pixel or two: draw one bridged line
        // rather than thousands of fragments.
        let all: Vec<(f64, f64)> = runs.into_iter().flatten().collect();
        return vec![lttb(&all, budget)];
    }
    runs.into_iter()
        .map(|run| {
            let share = (budget as f64 * run.len() as f64 / total as f64).ceil() as usize;
            lttb(&run, share.max(3))
        })
        .collect()
}

/// Splits `n` items into at most `max` contiguous, non-empty ranges of near-equal length.
pub fn bucket_ranges(n: usize, max: usize) -> Vec<std::ops::Range<usize>> {
    if n == 0 {
        return Vec::new();
    }
    let k = n.min(max.max(1));
    (0..k)
        .map(|i| (i * n / k)..((i + 1) * n / k))
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(n: usize) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| (i as f64, ((i as f64) / 37.0).sin() * 100.0 + (i % 7) as f64))
            .collect()
    }

    #[test]
    fn lttb_keeps_first_and_last_and_reduces_to_n() {
        let pts = wave(36_000);
        for n in [3, 10, 1000, 1500] {
            let out = lttb(&pts, n);
            assert_eq!(out.len(), n);
            assert_eq!(out[0], pts[0]);
            assert_eq!(out[n - 1], pts[pts.len() - 1]);
            assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "x stays sorted");
        }
    }

    #[test]
    fn lttb_leaves_short_series_alone_and_keeps_a_spike() {
        let pts = wave(50);
        assert_eq!(lttb(&pts, 100), pts);
        assert_eq!(lttb(&pts, 50), pts);
        assert!(lttb(&[], 10).is_empty());
        assert_eq!(lttb(&pts, 2), vec![pts[0], pts[49]]);

        // One spike in a flat line survives a 100x reduction.
        let mut flat: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, 1.0)).collect();
        flat[4321].1 = 500.0;
        let out = lttb(&flat, 100);
        assert!(out.iter().any(|p| p.1 == 500.0));
    }

    #[test]
    fn segments_break_at_gaps_and_skip_non_finite() {
        let pts = vec![
            (0.0, Some(1.0)),
            (1.0, Some(2.0)),
            (2.0, None),
            (3.0, Some(f64::NAN)),
            (4.0, Some(3.0)),
            (5.0, Some(f64::INFINITY)),
            (6.0, Some(4.0)),
            (20.0, Some(5.0)),
        ];
        let runs = segments(pts, Some(1.5), 100);
        assert_eq!(
            runs,
            vec![
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(4.0, 3.0)],
                vec![(6.0, 4.0)],
                vec![(20.0, 5.0)]
            ]
        );

        let holey: Vec<(f64, Option<f64>)> = (0..36_000)
            .map(|i| (i as f64, (i % 2 == 0).then_some(1.0)))
            .collect();
        let runs = segments(holey, Some(1.5), MAX_POINTS);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].len(), MAX_POINTS);

        let long: Vec<(f64, Option<f64>)> = (0..144_000)
            .map(|i| (i as f64 * 0.25, Some((i % 100) as f64)))
            .collect();
        let runs = segments(long, Some(1.0), MAX_POINTS);
        let n: usize = runs.iter().map(Vec::len).sum();
        assert!(n <= MAX_POINTS + 3, "{n}");
    }

    #[test]
    fn buckets_cover_everything_once() {
        let b = bucket_ranges(36_000, MAX_POINTS);
        assert_eq!(b.len(), MAX_POINTS);
        assert_eq!(b[0].start, 0);
        assert_eq!(b[b.len() - 1].end, 36_000);
        assert!(b.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(bucket_ranges(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(bucket_ranges(2, 10), vec![0..1, 1..2]);
        assert!(bucket_ranges(0, 10).is_empty());
    }
}
