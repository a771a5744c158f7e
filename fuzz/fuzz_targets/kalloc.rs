//! Fuzz target: random frame allocations and frees against a shadow of owned runs.
#![no_main]

use arbitrary::Arbitrary;
use kalloc::{Frame, FrameAllocator, Junk, PhysAddr, FRAME_SIZE};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

#[derive(Arbitrary, Debug)]
enum Action {
    One,
    Run {
        count: u8,
        align_log: u8,
    },
    Free {
        index: u8,
    },
    FreeHead {
        index: u8,
        k: u8,
    },
    FreeAny {
        frame: u16,
    },
    FreeMisaligned {
        frame: u16,
        offset: u16,
    },
    /// Writes into the start of one frame of an owned run, as a caller may: the bytes may look
    /// like the allocator's free-list node, which it must not trust.
    Scribble {
        index: u8,
        frame: u8,
        bytes: [u8; 24],
    },
    /// Forges a free-list node (of a small order, with wild links) in one frame of an owned
    /// run: data that claims to be a free block.
    Forge {
        index: u8,
        frame: u8,
        order: u8,
        next: u16,
    },
    /// Copies the start of any frame (a free one holds a real free-list node) into one frame of
    /// an owned run: stale data that looks right.
    CopyNode {
        from: u16,
        index: u8,
        frame: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Holes between up to three ranges, in frames.
    ranges: [(u8, u8); 3],
    junk: bool,
    actions: Vec<Action>,
}

const PHYS_BASE: u64 = 0x40_0000;

/// Owned runs: first frame -> (frames, fill byte), the fill byte None once written over.
type Owned = BTreeMap<u64, (usize, Option<u8>)>;

/// Picks a frame of an owned run (`keys` are the runs' first frames) to write over; the run's
/// contents are no longer checked.
fn scribbled_frame(owned: &mut Owned, keys: &[u64], index: u8, frame: u8) -> u64 {
    let s = keys[index as usize % keys.len()];
    let (n, _) = owned[&s];
    owned.insert(s, (n, None));
    s + frame as u64 % n as u64
}

fuzz_target!(|input: Input| {
    let frames_total = 1024usize;
    let mut ram = vec![0u8; (frames_total + 1) * FRAME_SIZE];
    let offset = (ram.as_mut_ptr() as usize).next_multiple_of(FRAME_SIZE) - PHYS_BASE as usize;
    let mut a = FrameAllocator::new(offset);
    if input.junk {
        a.set_junk(Junk::XV6);
    }
    // Up to three ranges with holes and unaligned edges.
    let mut at = 0u64;
    for (hole, len) in input.ranges {
        let start = at + hole as u64 * 1000;
        let end = (start + 4096 + len as u64 * 4000).min(frames_total as u64 * 4096);
        if start < end {
            // SAFETY: inside `ram`, disjoint from the other ranges, alive for the whole run.
            let _ = unsafe {
                a.add_range(
                    PhysAddr::new(PHYS_BASE + start),
                    PhysAddr::new(PHYS_BASE + end),
                )
            };
        }
        at = end;
    }
    let total = a.stats().total;
    let mut owned: Owned = BTreeMap::new();
    let mut seed = 0u8;
    let view = |a: &FrameAllocator, first: u64, n: usize| -> &'static mut [u8] {
        // SAFETY: frames inside `ram` (managed frames only), which outlives every use.
        unsafe {
            std::slice::from_raw_parts_mut(
                a.phys_to_virt(PhysAddr::new(first * 4096)),
                n * FRAME_SIZE,
            )
        }
    };
    for action in input.actions.into_iter().take(1000) {
        seed = seed.wrapping_add(1);
        let keys: Vec<u64> = owned.keys().copied().collect();
        match action {
            Action::One | Action::Run { .. } => {
                let (count, align) = match action {
                    Action::Run { count, align_log } => {
                        (count as usize % 70 + 1, 1usize << (align_log % 7))
                    }
                    _ => (1, 1),
                };
                match a.allocate_contiguous(count, align) {
                    Ok(f) => {
                        assert_eq!(f.number() % align as u64, 0);
                        for (&s, &(n, _)) in &owned {
                            assert!(
                                f.number() + count as u64 <= s || s + n as u64 <= f.number(),
                                "handed out twice"
                            );
                        }
                        view(&a, f.number(), count).fill(seed);
                        owned.insert(f.number(), (count, Some(seed)));
                    }
                    Err(_) => {
                        // Refused only if no aligned block of the size it needs is free: the
                        // free blocks are merged, and the caches are flushed when that helps.
                        let need = count.next_power_of_two().max(align) as u64;
                        let first = PHYS_BASE / 4096;
                        let free_block = (first.next_multiple_of(need)
                            ..first + frames_total as u64)
                            .step_by(need as usize)
                            .find(|&b| {
                                (b..b + need).all(|g| {
                                    let g = Frame::from_number(g).unwrap();
                                    a.contains(g) && a.is_free(g)
                                })
                            });
                        assert_eq!(
                            free_block, None,
                            "{count} frames at {align} refused with a free block of {need}"
                        );
                    }
                }
            }
            Action::Free { index } if !keys.is_empty() => {
                let s = keys[index as usize % keys.len()];
                let (n, b) = owned.remove(&s).unwrap();
                if let Some(b) = b {
                    assert!(
                        view(&a, s, n).iter().all(|&x| x == b),
                        "owned frames changed"
                    );
                }
                // SAFETY: frames we own.
                assert_eq!(
                    unsafe { a.free_contiguous(Frame::from_number(s).unwrap(), n) },
                    Ok(())
                );
                // SAFETY: refused without touching memory.
                assert!(unsafe { a.free(Frame::from_number(s).unwrap()) }.is_err());
            }
            Action::FreeHead { index, k } if !keys.is_empty() => {
                let s = keys[index as usize % keys.len()];
                let (n, b) = owned.remove(&s).unwrap();
                let k = (k as usize % n).max(1);
                // SAFETY: frames we own.
                assert_eq!(
                    unsafe { a.free_contiguous(Frame::from_number(s).unwrap(), k) },
                    Ok(())
                );
                if k < n {
                    owned.insert(s + k as u64, (n - k, b));
                }
            }
            Action::Scribble {
                index,
                frame,
                bytes,
            } if !keys.is_empty() => {
                let f = scribbled_frame(&mut owned, &keys, index, frame);
                view(&a, f, 1)[..bytes.len()].copy_from_slice(&bytes);
            }
            Action::Forge {
                index,
                frame,
                order,
                next,
            } if !keys.is_empty() => {
                let f = scribbled_frame(&mut owned, &keys, index, frame);
                let f = Frame::from_number(f).unwrap();
                // SAFETY: a frame we own.
                unsafe { a.forge_node(f, order as usize % 8, next as u64, u64::MAX) };
            }
            Action::CopyNode { from, index, frame } if !keys.is_empty() => {
                let from = PHYS_BASE / 4096 + from as u64 % frames_total as u64;
                let mut node = [0u8; 24];
                node.copy_from_slice(&view(&a, from, 1)[..24]);
                let f = scribbled_frame(&mut owned, &keys, index, frame);
                view(&a, f, 1)[..24].copy_from_slice(&node);
            }
            Action::FreeAny { frame } => {
                let f = Frame::containing(PhysAddr::new(PHYS_BASE + (frame as u64 % 1100) * 4096));
                let mine = owned
                    .iter()
                    .any(|(&s, &(n, _))| f.number() >= s && f.number() < s + n as u64);
                if !mine {
                    // SAFETY: refused: free or unmanaged.
                    assert!(
                        unsafe { a.free(f) }.is_err(),
                        "free of a frame nobody owns accepted"
                    );
                }
            }
            Action::FreeMisaligned { frame, offset } => {
                let off = offset as u64 % 4095 + 1;
                // SAFETY: refused before anything is touched.
                let r =
                    unsafe { a.free_addr(PhysAddr::new(PHYS_BASE + frame as u64 * 4096 + off)) };
                assert_eq!(r, Err(kalloc::FreeError::Misaligned));
            }
            _ => {}
        }
        a.check_invariants();
        let live: u64 = owned.values().map(|&(n, _)| n as u64).sum();
        assert_eq!(a.stats().free, total - live);
    }
    for (s, (n, _)) in std::mem::take(&mut owned) {
        // SAFETY: frames we own.
        assert_eq!(
            unsafe { a.free_contiguous(Frame::from_number(s).unwrap(), n) },
            Ok(())
        );
    }
    a.check_invariants();
    assert_eq!(a.stats().free, total);
    let mut n = 0;
    while a.allocate().is_ok() {
        n += 1;
    }
    assert_eq!(
        n, total,
        "not every frame allocatable after freeing everything"
    );
    drop(ram);
});
