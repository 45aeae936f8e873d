//! Records held until their timestamp is complete: what the window and model operators receive,
//! grouped by time, each group with the capability to emit at that time.

use std::collections::BTreeMap;

use timely::dataflow::operators::{Capability, InputCapability};

/// Records received per timestamp, each with a capability to emit at that time.
pub type Stash<D> = BTreeMap<u64, (Capability<u64>, Vec<D>)>;

/// Records in a vector for it to be taken over rather than copied.
const TAKE_OVER: usize = 4096;

/// Moves one stamp's containers (from `for_each_stamp`) into `stash` under their time; returns
/// how many records arrived.
pub fn stash_stamp<D>(
    stash: &mut Stash<D>,
    cap: InputCapability<u64>,
    data: std::slice::IterMut<'_, Vec<D>>,
) -> usize {
    stash_stamp_reusing(stash, &mut Vec::new(), cap, data)
}

/// [`stash_stamp`], a time new to `stash` starting from `spare` (an earlier time's emptied
/// vector, with its capacity: see [`keep_spare`]) instead of growing a vector from nothing.
pub fn stash_stamp_reusing<D>(
    stash: &mut Stash<D>,
    spare: &mut Vec<D>,
    cap: InputCapability<u64>,
    data: std::slice::IterMut<'_, Vec<D>>,
) -> usize {
    let Some(time) = cap.least().copied() else {
        return 0;
    };
    let entry = stash.entry(time).or_insert_with(|| {
        (
            cap.retain_least(0).expect("stamp has a least time"),
            std::mem::take(spare),
        )
    });
    let mut n = 0;
    for batch in data {
        n += batch.len();
        if entry.1.is_empty() && batch.len() >= TAKE_OVER {
            // The first records of a time, in a large vector (a source's whole run, when
            // nothing is exchanged): taken over, not copied. (Small ones, from an exchange, are
            // copied: their vectors go back to the channel for reuse, and taking them made the
            // senders allocate new ones, 8% more CPU.)
            std::mem::swap(&mut entry.1, batch);
        } else {
            entry.1.append(batch);
        }
    }
    n
}

/// Records a spare vector may hold room for (a whole file's run taken over is not kept).
const MAX_SPARE: usize = 1 << 16;

/// Keeps `done` (a time's records, processed) emptied as the next time's vector when it is
/// larger than `spare` (up to [`MAX_SPARE`]): at a steady rate, times then fill without
/// reallocating and copying.
pub fn keep_spare<D>(spare: &mut Vec<D>, mut done: Vec<D>) {
    if done.capacity() > spare.capacity() && done.capacity() <= MAX_SPARE {
        done.clear();
        *spare = done;
    }
}
