//! Splitting independent read work over the cores for one request.
//!
//! Architecture Invariant: only for reads; the work must not write or hold locks across
//! items. A slice smaller than two chunks runs on the calling thread.

use crate::store::StoreError;

/// Runs `work` over `items` in up to four scoped threads (chunks of at least `min_chunk`)
/// and returns the results in the order of the chunks.
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    min_chunk: usize,
    work: impl Fn(&[T]) -> Result<R, StoreError> + Sync,
) -> Vec<Result<R, StoreError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let chunk = items.len().div_ceil(workers).max(min_chunk.max(1));
    if items.len() <= chunk {
        return vec![work(items)];
    }
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Io("a parallel read worker panicked".into()))
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_chunk_order_and_small_inputs_stay_on_one_chunk() {
        let items: Vec<u32> = (0..10_000).collect();
        let parts = in_parallel(&items, 1000, |p| Ok(p.to_vec()));
        let flat: Vec<u32> = parts.into_iter().flat_map(|p| p.unwrap()).collect();
        assert_eq!(flat, items);
        assert_eq!(in_parallel(&items[..10], 1000, |p| Ok(p.len())).len(), 1);
        assert_eq!(
            in_parallel::<u32, usize>(&[], 1000, |p| Ok(p.len())).len(),
            1
        );
    }

    #[test]
    fn an_error_in_one_chunk_is_returned() {
        let items: Vec<u32> = (0..5000).collect();
        let parts = in_parallel(&items, 1000, |p| {
            if p.contains(&4999) {
                Err(StoreError::Io("boom".into()))
            } else {
                Ok(())
            }
        });
        assert!(parts.iter().any(|r| r.is_err()));
    }
}
